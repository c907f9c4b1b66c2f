/**
 * The environment and the command-line flags as configuration layers. Both set single-valued
 * fields only (see fields.ts); each problem names the variable or flag it came from.
 */
import type { ValidationIssue } from '@flatnet/core'
import { AGENT_CONFIG_FIELDS, checkFieldValue, flagKey, parseFieldText, type ConfigField } from './fields.js'
import type { PathSegment } from '@flatnet/policy'
import { issueAt, namedLayer, namedOrigin, type ConfigLayer } from './layer.js'

/**
 * The options object `flatnet agent` hands over: flag values keyed as commander keys them
 * (`--wg-port` -> `wgPort`). Strings are parsed as in the environment; numbers, booleans and
 * (for list fields) arrays of strings are taken as they are. Only flags the user gave may be
 * present: a default filled in by the argument parser would override the file.
 */
export type AgentConfigFlags = Readonly<Record<string, string | number | boolean | readonly string[] | undefined>>

export type Environment = Readonly<Record<string, string | undefined>>

export interface OverrideLayerResult {
  readonly layer: ConfigLayer
  readonly issues: readonly ValidationIssue[]
}

const envName = (field: ConfigField): string => `environment variable ${field.env}`
const flagName = (field: ConfigField): string => `flag --${field.flag}`

export function readEnvironment(env: Environment): OverrideLayerResult {
  const values = new Map<string, unknown>()
  const issues: ValidationIssue[] = []
  const byPath = new Map<string, ConfigField>()
  for (const field of AGENT_CONFIG_FIELDS) {
    if (field.env === undefined) continue
    const text = env[field.env]
    if (text === undefined) continue
    byPath.set(field.path, field)
    const value = fromText(field, text, (sub, message) => issues.push(issueAt(namedOrigin(envName(field), field.path, sub), message)))
    if (value !== undefined) values.set(field.path, value)
  }
  return { layer: namedLayer(values, (path) => envName(byPath.get(path) as ConfigField)), issues }
}

export function readFlags(flags: AgentConfigFlags): OverrideLayerResult {
  const values = new Map<string, unknown>()
  const issues: ValidationIssue[] = []
  const byKey = new Map(AGENT_CONFIG_FIELDS.filter((f) => f.flag !== undefined).map((f) => [flagKey(f.flag as string), f]))
  const byPath = new Map<string, ConfigField>()
  for (const [key, raw] of Object.entries(flags)) {
    if (raw === undefined) continue
    const field = byKey.get(key)
    if (!field) {
      const shown = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`
      issues.push({ file: `flag ${shown}`, line: 0, column: 0, path: '', message: 'is not an option of the agent' })
      continue
    }
    byPath.set(field.path, field)
    const report = (sub: readonly PathSegment[], message: string): void => void issues.push(issueAt(namedOrigin(flagName(field), field.path, sub), message))
    let value: unknown
    if (typeof raw === 'string') value = fromText(field, raw, report)
    else if (Array.isArray(raw)) {
      // A repeated flag: each occurrence may itself hold a comma-separated list.
      if (field.kind !== 'list') report([], 'was given more than once; it takes one value')
      else value = fromText(field, raw.join(','), report)
    } else {
      const problems = checkFieldValue(field, raw)
      for (const p of problems) report(p.sub, p.message)
      if (problems.length === 0) value = raw
    }
    if (value !== undefined) values.set(field.path, value)
  }
  return { layer: namedLayer(values, (path) => flagName(byPath.get(path) as ConfigField)), issues }
}

function fromText(field: ConfigField, text: string, report: (sub: readonly PathSegment[], message: string) => void): unknown {
  const parsed = parseFieldText(field, text)
  if ('problem' in parsed) return void report([], parsed.problem)
  const problems = checkFieldValue(field, parsed.value)
  for (const p of problems) report(p.sub, p.message)
  return problems.length === 0 ? parsed.value : undefined
}
