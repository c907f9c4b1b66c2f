/**
 * Strict, position-aware reading of one document: every check that fails records an issue
 * with file, line, column and field path, and reading goes on so that one run reports every
 * problem of a file, not only the first.
 */
import type { ValidationIssue } from '@flatnet/core'
import { formatPath, type PathSegment, type SourceDocument } from './source.js'

export type Path = readonly PathSegment[]

/** What a value is, for "must be X, got Y": scalars are shown, so `got a string ("80")` explains itself. */
export function typeName(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'a list'
  if (typeof value === 'object') return 'an object'
  if (typeof value === 'string') return `a string (${quoted(value)})`
  if (typeof value === 'number' || typeof value === 'boolean') return `a ${typeof value} (${String(value)})`
  return `a ${typeof value}`
}

const MISSING = 'required field is missing'

/** A value quoted for a message; a 300-character name would drown the reason it is wrong. */
export function quoted(text: string): string {
  return text.length > 70 ? `${JSON.stringify(`${text.slice(0, 60)}...`)} (${text.length} characters)` : JSON.stringify(text)
}

export class FieldReader {
  constructor(
    readonly doc: SourceDocument,
    readonly issues: ValidationIssue[],
  ) {}

  fail(path: Path, message: string, at: 'key' | 'value' = 'value'): undefined {
    this.issues.push({ ...this.doc.locate(path, at), path: formatPath(path), message })
    return undefined
  }

  /**
   * An object whose keys must all be in `fields`; `required` keys must be present. `hints`
   * explain unknown fields that are a known confusion (e.g. `to` in an ingress rule) better
   * than a spelling suggestion can.
   */
  object(
    value: unknown,
    path: Path,
    fields: readonly string[],
    required: readonly string[] = [],
    hints: Readonly<Record<string, string>> = {},
  ): Record<string, unknown> | undefined {
    if (value === undefined) return this.fail(path, MISSING)
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return this.fail(path, `must be an object, got ${typeName(value)}`)
    }
    const record = value as Record<string, unknown>
    for (const key of Object.keys(record)) {
      if (!fields.includes(key)) {
        const hint = Object.hasOwn(hints, key) ? `: ${hints[key]}` : suggest(key, fields)
        this.fail([...path, key], `unknown field "${key}"${hint}`, 'key')
      }
    }
    for (const key of required) {
      if (record[key] === undefined || record[key] === null) this.fail([...path, key], MISSING)
    }
    return record
  }

  string(value: unknown, path: Path, opts: { allowEmpty?: boolean; maxLength?: number } = {}): string | undefined {
    if (value === undefined) return this.fail(path, MISSING)
    if (typeof value !== 'string') return this.fail(path, `must be a string, got ${typeName(value)}`)
    if (!opts.allowEmpty && value.length === 0) return this.fail(path, 'must not be empty')
    if (opts.maxLength !== undefined && value.length > opts.maxLength) {
      return this.fail(path, `must be no more than ${opts.maxLength} characters`)
    }
    return value
  }

  oneOf<T extends string>(value: unknown, path: Path, allowed: readonly T[]): T | undefined {
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      return this.fail(path, `must be one of ${allowed.map((a) => `"${a}"`).join(', ')}, got ${JSON.stringify(value) ?? 'nothing'}`)
    }
    return value as T
  }

  int(value: unknown, path: Path, min: number, max: number): number | undefined {
    if (value === undefined) return this.fail(path, MISSING)
    if (typeof value !== 'number' || !Number.isInteger(value)) return this.fail(path, `must be an integer, got ${typeName(value)}`)
    if (value < min || value > max) return this.fail(path, `must be between ${min} and ${max}, got ${value}`)
    return value
  }

  array(value: unknown, path: Path, opts: { min?: number; max?: number } = {}): unknown[] | undefined {
    if (value === undefined) return this.fail(path, MISSING)
    if (!Array.isArray(value)) return this.fail(path, `must be a list, got ${typeName(value)}`)
    if (opts.min !== undefined && value.length < opts.min) {
      return this.fail(path, `must have at least ${opts.min} item${opts.min === 1 ? '' : 's'}`)
    }
    if (opts.max !== undefined && value.length > opts.max) return this.fail(path, `must have at most ${opts.max} items`)
    return value
  }

  /** A map of strings to strings, each key and value checked by the given functions. */
  stringMap(
    value: unknown,
    path: Path,
    checkKey: (k: string) => string | undefined,
    checkValue: (v: string) => string | undefined,
  ): Record<string, string> | undefined {
    if (value === undefined) return this.fail(path, MISSING)
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      return this.fail(path, `must be a map of strings, got ${typeName(value)}`)
    }
    const out: Record<string, string> = {}
    let ok = true
    for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
      const badKey = checkKey(k)
      if (badKey) {
        this.fail([...path, k], `invalid key ${quoted(k)}: ${badKey}`, 'key')
        ok = false
        continue
      }
      if (typeof v !== 'string') {
        // `version: 1.0` is a number to YAML; the fix is quoting, so say so.
        const quote = typeof v === 'number' || typeof v === 'boolean' ? '; put the value in quotes' : ''
        this.fail([...path, k], `must be a string, got ${typeName(v)}${quote}`)
        ok = false
        continue
      }
      const badValue = checkValue(v)
      if (badValue) {
        this.fail([...path, k], `invalid value ${quoted(v)}: ${badValue}`)
        ok = false
        continue
      }
      out[k] = v
    }
    return ok ? out : undefined
  }
}

/** ", did you mean "x"?" for a near miss (edit distance <= 2, or case only). */
function suggest(key: string, fields: readonly string[]): string {
  let best: string | undefined
  let bestDistance = 3
  for (const f of fields) {
    const d = f.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key, f)
    if (d < bestDistance) {
      best = f
      bestDistance = d
    }
  }
  return best ? `; did you mean "${best}"?` : ''
}

function editDistance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 2) return 3
  const row = Array.from({ length: b.length + 1 }, (_, i) => i)
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0] as number
    row[0] = i
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j] as number
      row[j] = Math.min((row[j] as number) + 1, (row[j - 1] as number) + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1))
      prev = tmp
    }
  }
  return row[b.length] as number
}
