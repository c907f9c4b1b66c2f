/** The fast parser must read every input it accepts exactly as the full parser does. */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import { fastParseSource, parseSource } from '../src/index.js'
import { fixture, repoRoot } from './helpers.js'

function yamlFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? yamlFiles(join(dir, e.name)) : /\.(ya?ml|json)$/.test(e.name) ? [join(dir, e.name)] : []))
}

it('gives the same documents as the full parser for every example and fixture it accepts', () => {
  let compared = 0
  for (const file of [...yamlFiles(join(repoRoot(), 'examples')), ...yamlFiles(fixture('bad-input')), fixture('conformance', 'netpol-cases.yaml')]) {
    const text = readFileSync(file, 'utf8')
    const fast = fastParseSource(file, text)
    if (!fast) continue
    const full = parseSource(file, text)
    if (full.issues.length > 0) continue // the full parser refuses it: loadObjects then reports that
    assert.deepEqual(
      fast.map((d) => d.value),
      full.documents.map((d) => d.value),
      file,
    )
    compared++
  }
  assert.ok(compared > 50, `compared ${compared} files`)
})

it('leaves anchors, aliases, tags and merge keys to the full parser', () => {
  for (const text of ['a: &x 1\nb: *x\n', 'a: !!str 1\n', 'a:\n  <<: {b: 1}\n', '- &a [1]\n']) assert.equal(fastParseSource('t.yaml', text), undefined, text)
})
