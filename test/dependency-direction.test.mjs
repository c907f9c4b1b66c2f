// Dependencies point one way: core <- policy <- store <- mesh; core <- wireguard; all <- agent <- lab <- cli; cni uses
// core and the agent's client only. core and policy are pure: no I/O modules, no node: builtins.
// Checked on package.json and on every import in the sources.
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'

const root = new URL('..', import.meta.url).pathname
const packagesDir = join(root, 'packages')

/** Which workspace packages each package may depend on. */
const ALLOWED = {
  core: [],
  policy: ['core'],
  store: ['core', 'policy'],
  wireguard: ['core'],
  mesh: ['core', 'policy', 'store'],
  k8s: ['core', 'policy', 'store'],
  agent: ['core', 'policy', 'store', 'wireguard', 'mesh'],
  lab: ['core', 'policy', 'store', 'agent'],
  cni: ['core', 'agent'],
  cli: ['core', 'policy', 'store', 'wireguard', 'mesh', 'agent', 'lab', 'k8s', 'cni'],
}
/** Third-party modules the pure packages may use (parsing only). */
const PURE_THIRD_PARTY = { core: [], policy: ['yaml', 'js-yaml'] }

function sourceFiles(dir) {
  if (!existsSync(dir)) return []
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  )
}

function importsOf(file) {
  const text = readFileSync(file, 'utf8')
  return [...text.matchAll(/(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)].map((m) => m[1] ?? m[2])
}

const packages = readdirSync(packagesDir).filter((p) => existsSync(join(packagesDir, p, 'package.json')))

describe('dependency direction', () => {
  it('knows every package', () => {
    for (const p of packages) assert.ok(p in ALLOWED, `packages/${p} has no entry in the dependency table`)
  })

  for (const p of packages) {
    it(`packages/${p} depends only on what it may`, () => {
      const pkg = JSON.parse(readFileSync(join(packagesDir, p, 'package.json'), 'utf8'))
      const deps = Object.keys({ ...pkg.dependencies, ...pkg.peerDependencies })
      for (const d of deps.filter((d) => d.startsWith('@flatnet/'))) {
        assert.ok(ALLOWED[p].includes(d.slice('@flatnet/'.length)), `${p} must not depend on ${d}`)
      }
      for (const file of sourceFiles(join(packagesDir, p, 'src'))) {
        for (const spec of importsOf(file)) {
          if (spec.startsWith('.')) continue
          if (spec.startsWith('@flatnet/')) {
            assert.ok(ALLOWED[p].includes(spec.slice('@flatnet/'.length).split('/')[0]), `${file} imports ${spec}`)
          } else if (p in PURE_THIRD_PARTY) {
            assert.ok(PURE_THIRD_PARTY[p].includes(spec), `${file} imports ${spec}, but ${p} is pure (no I/O, no node: builtins)`)
          }
        }
      }
    })
  }

  it('catches a forbidden import (the check itself works)', () => {
    assert.deepEqual(importsOf(join(root, 'test', 'fixtures', 'dependency-direction', 'impure.ts')), ['node:fs', '../x.js', 'ioredis'])
  })
})
