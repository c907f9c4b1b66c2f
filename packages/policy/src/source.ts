/**
 * Turns the text of a YAML or JSON file into documents that remember where each field came
 * from, so that every validation error can name file, line, column and field path.
 *
 * Pure: the caller reads the bytes; this module only decodes and parses them.
 */
import { LineCounter, isAlias, isCollection, isMap, isPair, isScalar, isSeq, parseAllDocuments, visit, type Document, type Node, type YAMLError } from 'yaml'
import jsyaml from 'js-yaml'
import type { SourcePosition, ValidationIssue } from '@flatnet/core'

export type PathSegment = string | number

/** Input limits: a file larger or deeper than this is refused with a clear error. */
export const SOURCE_LIMITS = Object.freeze({
  maxFileBytes: 16 * 1024 * 1024,
  maxDepth: 64,
  maxAliasCount: 100,
  maxDocumentsPerFile: 100_000,
})

export interface SourceDocument {
  readonly file: string
  /** 0-based index of the document in its file. */
  readonly index: number
  /** The plain JavaScript value of the document. */
  readonly value: unknown
  /** Position of the field at `path` (or of its nearest existing parent). */
  locate(path: readonly PathSegment[], at?: 'key' | 'value'): SourcePosition
}

export interface ParsedSource {
  readonly documents: readonly SourceDocument[]
  readonly issues: readonly ValidationIssue[]
}

/**
 * `spec.ingress[0].ports[1].endPort`. Map keys that are not plain words (label keys such as
 * `app.kubernetes.io/name`) are quoted in brackets, or their dots would read as nesting.
 */
export function formatPath(path: readonly PathSegment[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else if (!/^[A-Za-z0-9_-]+$/.test(seg)) out += `[${JSON.stringify(seg)}]`
    else out += out === '' ? seg : `.${seg}`
  }
  return out
}

function tooLarge(file: string, bytes: number): ValidationIssue {
  const mib = (n: number): string => `${(n / (1024 * 1024)).toFixed(1)} MiB`
  return {
    file,
    line: 0,
    column: 0,
    path: '',
    message: `file is too large: ${bytes} bytes (${mib(bytes)}); the limit is ${SOURCE_LIMITS.maxFileBytes} bytes (${mib(SOURCE_LIMITS.maxFileBytes)})`,
  }
}

/** UTF-8 length of `text` without encoding it: the size limit must not cost a copy of the file. */
function utf8Length(text: string): number {
  let n = text.length
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (c >= 0x800 && (c < 0xd800 || c > 0xdfff)) n += 2
    else if (c >= 0x80 && c < 0x800) n += 1
    // A surrogate pair is two code units and four bytes: two more bytes in all, one per unit.
    else if (c >= 0xd800 && c <= 0xdfff) n += 1
  }
  return n
}

function nestedTooDeep(file: string, pos: SourcePosition): ValidationIssue {
  return { ...pos, file, path: '', message: `document is nested more than ${SOURCE_LIMITS.maxDepth} levels deep` }
}

/** Decodes bytes as strict UTF-8; returns an issue when they are not. */
export function decodeUtf8(file: string, bytes: Uint8Array): { text?: string; issue?: ValidationIssue } {
  if (bytes.byteLength > SOURCE_LIMITS.maxFileBytes) return { issue: tooLarge(file, bytes.byteLength) }
  try {
    return { text: new TextDecoder('utf-8', { fatal: true }).decode(bytes) }
  } catch {
    const at = firstInvalidUtf8(bytes)
    let line = 1
    let column = 1
    for (let i = 0; i < at; i++) {
      if (bytes[i] === 0x0a) {
        line++
        column = 1
      } else if (((bytes[i] as number) & 0xc0) !== 0x80) column++
    }
    const byte = bytes[at] ?? 0
    return { issue: { file, line, column, path: '', message: `file is not valid UTF-8 (byte 0x${byte.toString(16)} at offset ${at})` } }
  }
}

/** Offset of the first byte that does not start or continue a well-formed UTF-8 sequence. */
function firstInvalidUtf8(bytes: Uint8Array): number {
  let i = 0
  while (i < bytes.length) {
    const b = bytes[i] as number
    let need: number
    let min: number
    if (b < 0x80) {
      i++
      continue
    } else if (b >= 0xc2 && b <= 0xdf) {
      need = 1
      min = 0x80
    } else if (b >= 0xe0 && b <= 0xef) {
      need = 2
      min = 0x800
    } else if (b >= 0xf0 && b <= 0xf4) {
      need = 3
      min = 0x10000
    } else return i
    let cp = b & (0x3f >> need)
    for (let k = 1; k <= need; k++) {
      const c = bytes[i + k]
      if (c === undefined || (c & 0xc0) !== 0x80) return i
      cp = (cp << 6) | (c & 0x3f)
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i
    i += need + 1
  }
  return bytes.length
}

function tooDeep(value: unknown, limit: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number]
    if (v === null || typeof v !== 'object') continue
    if (depth >= limit) return true
    for (const child of Array.isArray(v) ? v : Object.values(v)) stack.push([child, depth + 1])
  }
  return false
}

/**
 * The parser's first error, made more useful where it can be: a repeated key is named (the
 * parser does not), and an unclosed quote, `{` or `[` is reported where it opens rather
 * than at the end of the file, where the parser noticed.
 */
function yamlIssue(doc: Document.Parsed, error: YAMLError, posAt: (offset: number) => SourcePosition): ValidationIssue {
  const message = error.message.split('\n')[0] ?? ''
  const issue = (offset: number, text: string): ValidationIssue => ({ ...posAt(offset), path: '', message: `invalid YAML: ${text}` })
  if (error.code === 'DUPLICATE_KEY') {
    const key = findNode(doc, (n) => isScalar(n) && n.range?.[0] === error.pos[0])
    return isScalar(key) ? issue(error.pos[0], `key ${JSON.stringify(String(key.value))} appears twice in the same map`) : issue(error.pos[0], message)
  }
  if (error.code === 'MISSING_CHAR' && /quote/.test(message)) {
    const open = findNode(doc, (n) => isScalar(n) && (n.type === 'QUOTE_DOUBLE' || n.type === 'QUOTE_SINGLE') && n.range?.[1] === error.pos[0])
    const at = open?.range?.[0]
    if (at !== undefined) return issue(at, 'this quoted string is never closed (the closing quote is missing)')
  }
  const unclosed = error.code === 'MISSING_CHAR' ? /^Flow (map|sequence) must end with a (.)/.exec(message) : null
  if (unclosed) {
    const open = findNode(doc, (n) => isCollection(n) && n.flow === true && n.range?.[1] === error.pos[0])
    const at = open?.range?.[0]
    if (at !== undefined) return issue(at, `this flow ${unclosed[1]} is never closed (a ${unclosed[2]} is missing)`)
  }
  return issue(error.pos[0], message)
}

function findNode(doc: Document.Parsed, test: (node: Node) => boolean): Node | undefined {
  let found: Node | undefined
  visit(doc, (_, node) => {
    if (!test(node as Node)) return undefined
    found = node as Node
    return visit.BREAK
  })
  return found
}

/** Why a parsed document could not become a value: an alias bomb, or an alias without anchor. */
function toJsIssue(doc: Document.Parsed, err: Error, start: SourcePosition, posAt: (offset: number) => SourcePosition): ValidationIssue {
  if (/excessive alias count/i.test(err.message)) {
    return {
      ...start,
      path: '',
      message: `YAML aliases are expanded too many times (the limit is ${SOURCE_LIMITS.maxAliasCount} per document); this looks like an alias bomb`,
    }
  }
  const unresolved = /^Unresolved alias.*: (.*)$/.exec(err.message)?.[1]
  if (unresolved !== undefined) {
    const at = findNode(doc, (n) => isAlias(n) && n.source === unresolved)?.range?.[0]
    const pos = at === undefined ? start : posAt(at)
    return { ...pos, path: '', message: `invalid YAML: alias *${unresolved} has no anchor &${unresolved} before it` }
  }
  return { ...start, path: '', message: `cannot load document: ${err.message}` }
}

/** Parses all YAML (or JSON) documents of one file. Empty documents are skipped. */
export function parseSource(file: string, text: string): ParsedSource {
  const lineCounter = new LineCounter()
  const issues: ValidationIssue[] = []
  const documents: SourceDocument[] = []
  const posAt = (offset: number): SourcePosition => {
    const { line, col } = lineCounter.linePos(offset)
    return { file, line, column: col }
  }
  // Checked before parsing: the parser's time and memory grow with the text.
  const bytes = text.length > SOURCE_LIMITS.maxFileBytes / 3 ? utf8Length(text) : 0
  if (bytes > SOURCE_LIMITS.maxFileBytes) return { documents, issues: [tooLarge(file, bytes)] }
  let parsed
  try {
    parsed = parseAllDocuments(text, { lineCounter, prettyErrors: false, uniqueKeys: true, version: '1.2', strict: true })
  } catch (err) {
    // The parser recurses per nesting level; only absurd nesting exhausts the stack.
    if (err instanceof RangeError) return { documents, issues: [nestedTooDeep(file, { file, line: 1, column: 1 })] }
    return { documents, issues: [{ file, line: 0, column: 0, path: '', message: `cannot parse: ${(err as Error).message}` }] }
  }
  const docs = Array.isArray(parsed) ? parsed : [parsed]
  if (docs.length > SOURCE_LIMITS.maxDocumentsPerFile) {
    return { documents, issues: [{ file, line: 0, column: 0, path: '', message: `more than ${SOURCE_LIMITS.maxDocumentsPerFile} documents` }] }
  }
  docs.forEach((doc, index) => {
    // Where the document's content starts (after `---` and comments): a stable place for
    // problems of the whole document.
    const start = posAt(doc.contents?.range?.[0] ?? doc.range[0])
    const firstError = doc.errors[0]
    if (firstError) {
      // The composer reports its own stack overflow as RESOURCE_EXHAUSTION; where exactly it
      // gave up depends on the stack left, so point at the document instead.
      if (firstError.code === 'RESOURCE_EXHAUSTION') return void issues.push(nestedTooDeep(file, start))
      issues.push(yamlIssue(doc, firstError, posAt))
      return
    }
    if (doc.contents === null) return
    let value: unknown
    try {
      value = doc.toJS({ maxAliasCount: SOURCE_LIMITS.maxAliasCount })
    } catch (err) {
      if (err instanceof RangeError) return void issues.push(nestedTooDeep(file, start))
      issues.push(toJsIssue(doc, err as Error, start, posAt))
      return
    }
    if (value === null || value === undefined) return
    if (tooDeep(value, SOURCE_LIMITS.maxDepth)) return void issues.push(nestedTooDeep(file, start))
    const root = doc.contents as Node
    documents.push({
      file,
      index,
      value,
      locate(path, at = 'value') {
        let node: unknown = root
        let best: number | undefined = root.range?.[0]
        for (let i = 0; i < path.length; i++) {
          const seg = path[i]
          if (isMap(node)) {
            const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg))
            if (!pair) break
            const key = pair.key as Node
            const isLast = i === path.length - 1
            if (isLast && at === 'key') {
              best = key.range?.[0] ?? best
              break
            }
            best = (pair.value as Node | null)?.range?.[0] ?? key.range?.[0] ?? best
            node = pair.value
          } else if (isSeq(node) && typeof seg === 'number') {
            const item = node.items[seg] as Node | undefined
            if (!item) break
            best = item.range?.[0] ?? best
            node = item
          } else break
        }
        return best === undefined ? { file, line: 0, column: 0 } : posAt(best)
      },
    })
  })
  return { documents, issues }
}

/**
 * The fast way in: js-yaml's core schema builds plain values about ten times faster than the
 * position-tracking parser, which dominates the cost of a large apply. It is used only for
 * inputs it reads the same way and that cannot blow up: no anchors, aliases, tags or merge
 * keys, within the size limit. Positions are unknown here, so a caller that finds any problem
 * must parse again with parseSource() to report where.
 */
const NEEDS_FULL_PARSER = /(^|[\s[{,:-])[&*!]|<</m

export function fastParseSource(file: string, text: string): SourceDocument[] | undefined {
  // Anything near the size limit takes the full path, which measures it in UTF-8 bytes.
  if (text.length > SOURCE_LIMITS.maxFileBytes / 3 || NEEDS_FULL_PARSER.test(text)) return undefined
  let values: unknown[]
  try {
    values = jsyaml.loadAll(text, undefined, { schema: jsyaml.CORE_SCHEMA, filename: file })
  } catch {
    return undefined
  }
  if (values.length > SOURCE_LIMITS.maxDocumentsPerFile) return undefined
  const documents: SourceDocument[] = []
  values.forEach((value, index) => {
    if (value === null || value === undefined) return
    documents.push({ file, index, value, locate: () => ({ file, line: 0, column: 0 }) })
  })
  // Too deep for the fast path is too deep at all, but let the full parser say so with a position.
  return documents.some((d) => tooDeep(d.value, SOURCE_LIMITS.maxDepth)) ? undefined : documents
}
