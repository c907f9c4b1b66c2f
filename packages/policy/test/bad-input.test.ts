/**
 * The bad-input corpus (test/fixtures/bad-input): each file is a realistic mistake, and
 * expected.yaml says exactly which issues it must produce. Loading must fail with a
 * ValidationError whose issues name file, line, column and field path, never with a crash or
 * a JavaScript message, and never load part of the input. Inputs too large or too odd to
 * commit (over the size limit, 10,000 levels deep, every kind of invalid UTF-8) are made here,
 * each with a time budget: a hostile file must be refused quickly, not after minutes.
 */
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { parse } from 'yaml'
import { ValidationError, type ValidationIssue } from '@flatnet/core'
import { decodeUtf8, loadObjects, SOURCE_LIMITS, type LoadedObjects, type LoadOptions } from '../src/index.js'
import { fixture } from './helpers.js'

interface ExpectedIssue {
  line: number
  column: number
  path: string
  /** A substring of the message. */
  message: string
}

interface Expectation {
  accept?: LoadOptions['accept']
  /** Empty: the file must load, holding no objects. */
  issues: ExpectedIssue[]
}

const MANIFEST = 'expected.yaml'
const TIME_BUDGET_MS = 2000

const manifest = parse(readFileSync(fixture('bad-input', MANIFEST), 'utf8')) as Record<string, Expectation>
const corpusFiles = readdirSync(fixture('bad-input')).filter((f) => f !== MANIFEST)

function readCorpus(name: string): Uint8Array {
  return readFileSync(fixture('bad-input', name))
}

/** The CLI's way from bytes to objects: strict UTF-8 first, then parsing and validation. */
function loadBytes(file: string, bytes: Uint8Array, options: LoadOptions = {}): LoadedObjects {
  const decoded = decodeUtf8(file, bytes)
  if (decoded.issue) throw new ValidationError([decoded.issue])
  return loadObjects([{ file, text: decoded.text as string }], options)
}

function objectCount(loaded: LoadedObjects): number {
  return loaded.policies.length + loaded.namespaces.length + loaded.endpoints.length
}

/** Runs `load`, which must throw a ValidationError and nothing else, and returns that error. */
function rejection(load: () => unknown): ValidationError {
  let loaded: unknown
  try {
    loaded = load()
  } catch (err) {
    assert.ok(err instanceof ValidationError, `expected a ValidationError, got ${err instanceof Error ? err.stack : String(err)}`)
    assert.equal(err.code, 'ERR_VALIDATION')
    assert.ok(err.issues.length > 0, 'a ValidationError must carry at least one issue')
    assertClearMessages(err)
    return err
  }
  assert.fail(`expected a ValidationError, but the input loaded: ${JSON.stringify(loaded)}`)
}

const STACK_FRAME = /(^|\n)\s*at\s.*(:\d+:\d+\)?|\(native\)|<anonymous>)/
const JS_INTERNALS = /\b(TypeError|RangeError|ReferenceError|SyntaxError)\b|Maximum call stack|Cannot read propert/

/** Messages are for people: no stack traces, no JavaScript internals, no unprinted values. */
function assertClearMessages(err: ValidationError): void {
  for (const issue of err.issues) {
    const where = `${issue.file}:${issue.line}:${issue.column} ${issue.path}: ${issue.message}`
    assert.ok(issue.message.trim().length > 0, `empty message at ${where}`)
    assert.doesNotMatch(issue.message, STACK_FRAME, `stack trace in ${where}`)
    assert.doesNotMatch(issue.message, JS_INTERNALS, `JavaScript internals in ${where}`)
    assert.ok(!issue.message.includes('undefined'), `"undefined" in ${where}`)
    assert.ok(!issue.message.includes('[object Object]'), `"[object Object]" in ${where}`)
    assert.ok(!issue.message.includes('NaN'), `"NaN" in ${where}`)
    assert.ok(Number.isInteger(issue.line) && Number.isInteger(issue.column), `non-integer position at ${where}`)
  }
  assert.doesNotMatch(err.message, STACK_FRAME)
}

/** Issues compared exactly on file, line, column and path, and on a substring of the message. */
function assertIssues(actual: readonly ValidationIssue[], file: string, expected: readonly ExpectedIssue[]): void {
  const where = (i: { line: number; column: number; path: string }): string => `${i.line}:${i.column} ${i.path}`
  assert.deepEqual(
    actual.map((i) => ({ file: i.file, at: where(i) })),
    expected.map((e) => ({ file, at: where(e) })),
    `issues reported:\n${actual.map((i) => `  ${where(i)}: ${i.message}`).join('\n')}`,
  )
  expected.forEach((e, n) => {
    const message = actual[n]?.message ?? ''
    assert.ok(message.includes(e.message), `issue ${n} at ${where(e)}: "${message}" does not contain "${e.message}"`)
  })
}

function timed<T>(budgetMs: number, run: () => T): T {
  const start = performance.now()
  const result = run()
  const elapsed = performance.now() - start
  assert.ok(elapsed < budgetMs, `took ${elapsed.toFixed(0)} ms; the budget is ${budgetMs} ms`)
  return result
}

/** Generated input must be refused fast, with one issue saying why. */
function assertRefusedFast(file: string, text: string, expected: ExpectedIssue): void {
  const err = timed(TIME_BUDGET_MS, () => rejection(() => loadObjects([{ file, text }])))
  assertIssues(err.issues, file, [expected])
}

describe('bad-input corpus', () => {
  it('has 50 or more files, each listed in expected.yaml, and no entry without a file', () => {
    assert.ok(corpusFiles.length >= 50, `only ${corpusFiles.length} files`)
    assert.deepEqual([...corpusFiles].sort(), Object.keys(manifest).sort())
  })

  for (const name of Object.keys(manifest).sort()) {
    const expectation = manifest[name] as Expectation
    const options: LoadOptions = expectation.accept ? { accept: expectation.accept } : {}
    if (expectation.issues.length === 0) {
      it(`${name} loads, with no objects`, () => {
        assert.equal(objectCount(loadBytes(name, readCorpus(name), options)), 0)
      })
      continue
    }
    it(`${name} is refused with ${expectation.issues.length === 1 ? 'its issue' : `its ${expectation.issues.length} issues`}`, () => {
      const err = rejection(() => loadBytes(name, readCorpus(name), options))
      assertIssues(err.issues, name, expectation.issues)
    })
  }
})

describe('all or nothing', () => {
  const name = 'multi-doc-second-bad.yaml'
  const text = readFileSync(fixture('bad-input', name), 'utf8')
  const [goodDocument] = text.split(/^---$/m)

  it('the first document of multi-doc-second-bad.yaml is valid on its own', () => {
    const loaded = loadObjects([{ file: name, text: goodDocument as string }])
    assert.equal(loaded.policies.length, 1)
  })

  it('the whole file loads nothing, and only the second document is blamed', () => {
    const err = rejection(() => loadObjects([{ file: name, text }]))
    const separatorLine = text.split('\n').indexOf('---') + 1
    assert.ok(err.issues.every((i) => i.line > separatorLine), JSON.stringify(err.issues))
  })

  it('a valid file loaded with a bad one loads nothing, and the valid file is not blamed', () => {
    const err = rejection(() => loadObjects([{ file: 'good.yaml', text: goodDocument as string }, { file: 'bad.yaml', text }]))
    assert.ok(err.issues.every((i) => i.file === 'bad.yaml'), JSON.stringify(err.issues))
  })

  it('loading the whole corpus at once reports every problem of every file', () => {
    const sources = corpusFiles
      .filter((f) => !manifest[f]?.accept && decodeUtf8(f, readCorpus(f)).text !== undefined)
      .map((f) => ({ file: f, text: decodeUtf8(f, readCorpus(f)).text as string }))
    const err = rejection(() => loadObjects(sources))
    const reported = new Set(err.issues.map((i) => `${i.file}:${i.line}:${i.column} ${i.path}`))
    for (const { file } of sources) {
      for (const e of manifest[file]?.issues ?? []) {
        assert.ok(reported.has(`${file}:${e.line}:${e.column} ${e.path}`), `${file}:${e.line}:${e.column} ${e.path} not reported`)
      }
    }
  })
})

describe('generated hostile input', () => {
  const nestedTooDeep = (line = 1, column = 1): ExpectedIssue => ({ line, column, path: '', message: `nested more than ${SOURCE_LIMITS.maxDepth} levels deep` })

  it('a file over 16 MiB is refused before decoding', () => {
    const bytes = new Uint8Array(SOURCE_LIMITS.maxFileBytes + 1).fill(0x20)
    const err = timed(TIME_BUDGET_MS, () => rejection(() => loadBytes('huge.yaml', bytes)))
    assertIssues(err.issues, 'huge.yaml', [{ line: 0, column: 0, path: '', message: 'file is too large' }])
  })

  it('text over 16 MiB is refused before parsing', () => {
    const text = `apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  annotations:\n    blob: "${'x'.repeat(SOURCE_LIMITS.maxFileBytes)}"\n`
    assertRefusedFast('huge.yaml', text, { line: 0, column: 0, path: '', message: 'the limit is 16777216 bytes (16.0 MiB)' })
  })

  it('text over 16 MiB only in UTF-8 bytes (multi-byte characters) is refused too', () => {
    // 6 MiB of "é" is 6 Mi characters but 12 MiB of UTF-8; 9 MiB of them is 18 MiB.
    const text = `# ${'é'.repeat(9 * 1024 * 1024)}\n`
    assert.ok(text.length < SOURCE_LIMITS.maxFileBytes)
    assertRefusedFast('wide.yaml', text, { line: 0, column: 0, path: '', message: 'file is too large' })
  })

  it('10,000 nested flow lists', () => {
    assertRefusedFast('deep-lists.yaml', '['.repeat(10_000) + ']'.repeat(10_000), nestedTooDeep())
  })

  it('10,000 nested flow maps', () => {
    assertRefusedFast('deep-maps.yaml', '{a: '.repeat(10_000) + '1' + '}'.repeat(10_000), nestedTooDeep())
  })

  it('10,000 nested JSON objects', () => {
    assertRefusedFast('deep.json', '{"a":'.repeat(10_000) + '1' + '}'.repeat(10_000), nestedTooDeep())
  })

  it('1,000 nested block maps and block lists', () => {
    const maps = Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i)}a:`).join('\n') + ' 1\n'
    assertRefusedFast('deep-block-maps.yaml', maps, nestedTooDeep())
    const lists = Array.from({ length: 1000 }, (_, i) => `${' '.repeat(i)}-`).join('\n') + ' 1\n'
    assertRefusedFast('deep-block-lists.yaml', lists, nestedTooDeep())
  })

  it('deep nesting inside a real manifest, after a comment, is reported at the document', () => {
    const text = `# note\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\nspec: ${'['.repeat(10_000)}${']'.repeat(10_000)}\n`
    assertRefusedFast('deep-spec.yaml', text, nestedTooDeep(2, 1))
  })

  it('one level over the depth limit is refused; at the limit it is just not an object', () => {
    const nest = (n: number): string => '['.repeat(n) + ']'.repeat(n)
    assertRefusedFast('limit.yaml', nest(SOURCE_LIMITS.maxDepth + 1), nestedTooDeep())
    const err = rejection(() => loadObjects([{ file: 'limit.yaml', text: nest(SOURCE_LIMITS.maxDepth) }]))
    assertIssues(err.issues, 'limit.yaml', [{ line: 1, column: 1, path: '', message: 'must be an object with apiVersion and kind, got a list' }])
  })

  it('a billion-laughs alias bomb of 20 levels', () => {
    let text = 'l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for (let i = 1; i < 20; i++) text += `l${i}: &l${i} [${Array.from({ length: 10 }, () => `*l${i - 1}`).join(',')}]\n`
    assertRefusedFast('bomb.yaml', text, { line: 1, column: 1, path: '', message: 'alias bomb' })
  })

  it('one large anchor repeated many times', () => {
    const text = `big: &big [${Array.from({ length: 10_000 }, (_, i) => i).join(',')}]\nmany: [${Array.from({ length: 5000 }, () => '*big').join(',')}]\n`
    assertRefusedFast('repeat.yaml', text, { line: 1, column: 1, path: '', message: 'alias bomb' })
  })

  it('a few aliases in a real manifest are fine', () => {
    const text = [
      'apiVersion: networking.k8s.io/v1',
      'kind: NetworkPolicy',
      'metadata:',
      '  name: web',
      '  namespace: prod',
      '  labels: &web {app: web}',
      'spec:',
      '  podSelector: {matchLabels: *web}',
      '  ingress:',
      '    - from: [{podSelector: {matchLabels: *web}}]',
      '',
    ].join('\n')
    assert.equal(loadObjects([{ file: 'aliases.yaml', text }]).policies.length, 1)
  })

  // Each row: bytes after `prefix`, how many of them are good, and where the first bad one is.
  const prefix = 'apiVersion: v1\nkind: Namespace\nmetadata:\n  name: café-'
  const prefixBytes = new TextEncoder().encode(prefix)
  const badBytes: { what: string; bytes: number[]; good: number; line: number; column: number }[] = [
    { what: 'a Latin-1 byte', bytes: [0xe9, 0x0a], good: 0, line: 4, column: 14 },
    { what: 'a lone continuation byte', bytes: [0x80], good: 0, line: 4, column: 14 },
    { what: 'an overlong encoding of "/"', bytes: [0xc0, 0xaf], good: 0, line: 4, column: 14 },
    { what: 'an overlong three-byte sequence', bytes: [0xe0, 0x80, 0xaf], good: 0, line: 4, column: 14 },
    { what: 'a UTF-16 surrogate', bytes: [0xed, 0xa0, 0x80], good: 0, line: 4, column: 14 },
    { what: 'a code point above U+10FFFF', bytes: [0xf4, 0x90, 0x80, 0x80], good: 0, line: 4, column: 14 },
    { what: 'a sequence cut off by the end of the file', bytes: [0x61, 0xe2, 0x82], good: 1, line: 4, column: 15 },
    { what: 'byte 0xff at the start of a line', bytes: [0x0a, 0xff], good: 1, line: 5, column: 1 },
  ]
  for (const { what, bytes, good, line, column } of badBytes) {
    it(`non-UTF-8: ${what}`, () => {
      const all = new Uint8Array([...prefixBytes, ...bytes])
      const offset = prefixBytes.length + good
      const byte = (bytes[good] as number).toString(16)
      const err = timed(TIME_BUDGET_MS, () => rejection(() => loadBytes('latin1.yaml', all)))
      assertIssues(err.issues, 'latin1.yaml', [{ line, column, path: '', message: `file is not valid UTF-8 (byte 0x${byte} at offset ${offset})` }])
    })
  }

  it('a UTF-8 byte order mark is not a problem', () => {
    const bytes = new Uint8Array([0xef, 0xbb, 0xbf, ...new TextEncoder().encode('apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n')])
    assert.equal(loadBytes('bom.yaml', bytes).namespaces.length, 1)
  })
})

describe('what the API server accepts still loads', () => {
  it('two containers of one Pod may name a port alike', () => {
    const text = [
      'apiVersion: v1',
      'kind: Pod',
      'metadata: {name: web-0, namespace: prod}',
      'spec:',
      '  containers:',
      '    - {name: web, ports: [{name: metrics, containerPort: 9100}]}',
      '    - {name: sidecar, ports: [{name: metrics, containerPort: 9200}]}',
      'status: {podIP: 10.0.0.5}',
      '',
    ].join('\n')
    const [pod] = loadObjects([{ file: 'pod.yaml', text }]).endpoints
    assert.deepEqual(pod?.namedPorts.map((p) => p.port), [9100, 9200])
  })

  it('a ClusterNetworkPolicy with the status the cluster wrote, and an empty rule name', () => {
    const text = [
      'apiVersion: policy.networking.k8s.io/v1alpha2',
      'kind: ClusterNetworkPolicy',
      'metadata: {name: isolate, resourceVersion: "42"}',
      'spec:',
      '  tier: Admin',
      '  priority: 0',
      '  subject: {namespaces: {}}',
      '  ingress: [{name: "", action: Deny, from: [{namespaces: {}}]}]',
      'status:',
      '  conditions: [{type: Ready, status: "True", reason: Applied, message: "", lastTransitionTime: "2025-01-01T00:00:00Z"}]',
      '',
    ].join('\n')
    assert.equal(loadObjects([{ file: 'cnp.yaml', text }]).policies.length, 1)
  })

  it('a CIDR with host bits set, and null where a field may be left out', () => {
    const text = [
      'apiVersion: networking.k8s.io/v1',
      'kind: NetworkPolicy',
      'metadata: {name: web, namespace: null}',
      'spec:',
      '  podSelector: null',
      '  ingress: [{from: [{ipBlock: {cidr: 10.1.2.3/8, except: null}}], ports: null}]',
      '',
    ].join('\n')
    assert.equal(loadObjects([{ file: 'np.yaml', text }]).policies.length, 1)
  })
})
