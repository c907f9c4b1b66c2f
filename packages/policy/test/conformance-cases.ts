/**
 * The 42 upstream NetworkPolicy cases (test/fixtures/conformance/netpol-cases.yaml) as data:
 * the model (namespaces x/y/z, pods a/b/c, ports, protocols), each case's steps of actions, and
 * the expected verdict of every cell. Shared by the engine's conformance test and the lab's,
 * which runs the same cases with real packets (exported as `@flatnet/policy/testing`).
 */
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import type { Protocol } from '@flatnet/core'
import { fixture } from './helpers.js'

export interface ConformanceModel {
  readonly namespaces: Record<string, Record<string, string>>
  readonly pods: Record<string, Record<string, string>>
  readonly ports: number[]
  readonly protocols: Protocol[]
}

export interface ConformanceExpect {
  readonly default: 'allow' | 'deny'
  readonly rules: ({ allow: string } | { deny: string })[]
}

/** One action of a step: `{create: policy}`, `{update: policy}`, `{delete: {namespace, name}}`, `{setNamespaceLabels: ...}`, `{setPodLabels: ...}`. */
export type ConformanceAction = Record<string, Record<string, unknown>>

export interface ConformanceStep {
  readonly actions: ConformanceAction[]
  readonly expect: ConformanceExpect
}

export interface ConformanceCase {
  readonly id: string
  readonly name: string
  readonly policies?: unknown[]
  readonly steps?: ConformanceStep[]
  readonly expect?: ConformanceExpect
}

export interface ConformanceData {
  readonly model: ConformanceModel
  readonly cases: ConformanceCase[]
  readonly namespaces: string[]
  readonly pods: string[]
}

export function loadConformanceCases(file = fixture('conformance', 'netpol-cases.yaml')): ConformanceData {
  const data = parse(readFileSync(file, 'utf8'), { maxAliasCount: -1 }) as { model: ConformanceModel; cases: ConformanceCase[] }
  return { ...data, namespaces: Object.keys(data.model.namespaces), pods: Object.keys(data.model.pods) }
}

/** A case without steps is one step that creates its policies. */
export function stepsOf(c: ConformanceCase): ConformanceStep[] {
  if (c.steps) return c.steps
  return [{ actions: (c.policies ?? []).map((p) => ({ create: p as Record<string, unknown> })), expect: c.expect as ConformanceExpect }]
}

/** The /4 network holding `ip`, as the `{{net4:ns/pod}}` placeholder means. */
function net4(ip: string): string {
  const first = Number(ip.split('.')[0]) & 0xf0
  return `${first}.0.0.0/4`
}

/** Fills `{{host:ns/pod}}` (the pod's /32) and `{{net4:ns/pod}}` with addresses from `ipOf`. */
export function fillPlaceholders<T>(value: T, ipOf: (ns: string, pod: string) => string): T {
  const text = JSON.stringify(value).replace(/\{\{(host|net4):([a-z]+)\/([a-z]+)\}\}/g, (_, kind: string, ns: string, pod: string) =>
    kind === 'host' ? `${ipOf(ns, pod)}/32` : net4(ipOf(ns, pod)),
  )
  return JSON.parse(text) as T
}

function matchPart(data: ConformanceData, pattern: string, ns: string, pod: string): boolean {
  if (pattern === '*' || pattern === '*/*') return true
  if (pattern.includes('/')) {
    const [pns, ppod] = pattern.split('/')
    return (pns === '*' || pns === ns) && (ppod === '*' || ppod === pod)
  }
  return data.namespaces.includes(pattern) ? pattern === ns : pattern === pod
}

/** Whether the truth table of `expect` allows one cell. */
export function expectedVerdict(data: ConformanceData, expect: ConformanceExpect, src: readonly [string, string], dst: readonly [string, string], port: number, protocol: string): boolean {
  let verdict = expect.default === 'allow'
  for (const rule of expect.rules) {
    const allow = 'allow' in rule
    const pattern = allow ? rule.allow : (rule as { deny: string }).deny
    const [flow, portProto = '*/*'] = pattern.split(':')
    const [s, d] = (flow as string).split('->') as [string, string]
    const [pp, pr] = portProto.split('/') as [string, string]
    if (!matchPart(data, s, src[0], src[1]) || !matchPart(data, d, dst[0], dst[1])) continue
    if (pp !== '*' && Number(pp) !== port) continue
    if (pr !== '*' && pr !== protocol) continue
    verdict = allow
  }
  return verdict
}
