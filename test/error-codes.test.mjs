// Every error code flatnet defines (each `readonly code = 'ERR_...'` or `...ErrorClass('ERR_...'` in the sources) is
// documented in docs/errors.md, and the doc lists no code that does not exist.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { it } from 'node:test'
import { ERROR_CODES } from '../packages/core/dist/src/index.js'

const root = new URL('..', import.meta.url).pathname
// Where a code is defined: a class field `readonly code = 'ERR_...'`, or the call of an error-class
// factory named `...ErrorClass('ERR_...', ...)` (e.g. cniErrorClass in packages/cni/src/cni-errors.ts).
const CODE_DEFINITION = /(?:readonly code = |ErrorClass\()'(ERR_[A-Z_]+)'/g

function sources(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === 'node_modules' || e.name === 'dist' ? [] : sources(join(dir, e.name))) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

function definedCodes() {
  const codes = new Set()
  for (const pkg of readdirSync(join(root, 'packages'))) {
    let files = []
    try {
      files = sources(join(root, 'packages', pkg, 'src'))
    } catch {
      continue
    }
    for (const f of files) for (const m of readFileSync(f, 'utf8').matchAll(CODE_DEFINITION)) codes.add(m[1])
  }
  return [...codes].sort()
}

it('docs/errors.md lists exactly the error codes the code defines', () => {
  const doc = readFileSync(join(root, 'docs', 'errors.md'), 'utf8')
  const documented = [...doc.matchAll(/^\|\s*`(ERR_[A-Z_]+)`/gm)].map((m) => m[1]).sort()
  assert.deepEqual(documented, definedCodes())
})

it('core lists every code it defines', () => {
  const core = sources(join(root, 'packages', 'core', 'src')).flatMap((f) => [...readFileSync(f, 'utf8').matchAll(CODE_DEFINITION)].map((m) => m[1]))
  assert.deepEqual([...ERROR_CODES].sort(), core.sort())
})
