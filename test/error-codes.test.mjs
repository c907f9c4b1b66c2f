// Every error code flatnet defines is documented in docs/errors.md, and the doc lists no code
// that does not exist.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { it } from 'node:test'
import { ERROR_CODES } from '../packages/core/dist/src/index.js'

it('docs/errors.md lists exactly the error codes the code defines', () => {
  const doc = readFileSync(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const documented = [...doc.matchAll(/^\|\s*`(ERR_[A-Z_]+)`/gm)].map((m) => m[1]).sort()
  assert.deepEqual(documented, [...ERROR_CODES].sort())
})
