/**
 * Flows and their results: the public shapes of `flatnet policy eval` (one JSON flow per
 * line in, one JSON result per line out) and of `flatnet policy test` expectation files.
 *
 *   in:  {"from":"x/a","to":"y/b","port":80,"protocol":"TCP"}
 *   out: {"from":"x/a","to":"y/b","port":80,"protocol":"TCP","allowed":false,
 *         "direction":"ingress","tier":"NetworkPolicy","policyKind":"NetworkPolicy","policy":"y/deny-all","rule":null,
 *         "egress":{"allowed":true,"tier":"Default","policyKind":null,"policy":null,"rule":null,"reason":"..."},
 *         "ingress":{"allowed":false,"tier":"NetworkPolicy","policyKind":"NetworkPolicy","policy":"y/deny-all","rule":null,"reason":"..."}}
 *
 * Fields of the input line that flatnet does not know are passed through unchanged.
 */
import { isProtocol, ValidationError, type Protocol, type ValidationIssue } from '@flatnet/core'
import type { DirectionVerdict, VerdictTier } from './compiled-policy.js'
import { FieldReader, type Path } from './field-reader.js'
import type { Verdict } from './snapshot.js'
import { parseSource } from './source.js'

export interface Flow {
  /** `namespace/name` of a Pod or HostEndpoint, or an IP address. */
  readonly from: string
  readonly to: string
  readonly port: number
  readonly protocol: Protocol
}

export interface DirectionResult {
  readonly allowed: boolean
  readonly tier: VerdictTier
  readonly policyKind: 'NetworkPolicy' | 'ClusterNetworkPolicy' | null
  readonly policy: string | null
  readonly rule: number | null
  readonly reason: string
}

export interface FlowResult extends Flow {
  readonly allowed: boolean
  /** The deciding direction (see Verdict.decidedBy) and what decided it. */
  readonly direction: 'egress' | 'ingress'
  readonly tier: VerdictTier
  readonly policyKind: 'NetworkPolicy' | 'ClusterNetworkPolicy' | null
  readonly policy: string | null
  readonly rule: number | null
  readonly egress: DirectionResult
  readonly ingress: DirectionResult
  readonly [extra: string]: unknown
}

function directionResult(v: DirectionVerdict): DirectionResult {
  return { allowed: v.allowed, tier: v.tier, policyKind: v.policyKind ?? null, policy: v.policy ?? null, rule: v.rule ?? null, reason: v.reason }
}

export function flowResult(input: Flow & Record<string, unknown>, verdict: Verdict): FlowResult {
  const d = verdict.decidedBy
  return {
    ...input,
    allowed: verdict.allowed,
    direction: d.direction,
    tier: d.tier,
    policyKind: d.policyKind ?? null,
    policy: d.policy ?? null,
    rule: d.rule ?? null,
    egress: directionResult(verdict.egress),
    ingress: directionResult(verdict.ingress),
  }
}

/** `x/a -> y/b:80/TCP`, `10.0.0.1 -> y/b:53/UDP`, `x/a -> y/b:80` (TCP). */
export function parseFlowShorthand(text: string): Flow | string {
  const m = /^\s*(\S+)\s*->\s*(\S+?):(\d+)(?:\/([A-Za-z]+))?\s*$/.exec(text)
  if (!m) return `"${text}" is not a flow; write "FROM -> TO:PORT/PROTOCOL", e.g. "x/a -> y/b:80/TCP"`
  const port = Number(m[3])
  const protocol = (m[4] ?? 'TCP').toUpperCase()
  if (port < 1 || port > 65535) return `port must be from 1 to 65535, got ${port}`
  if (!isProtocol(protocol)) return `protocol must be TCP, UDP or SCTP, got "${m[4]}"`
  return { from: m[1] as string, to: m[2] as string, port, protocol }
}

/** `80/TCP`, `53/udp`, `80` (TCP). */
export function parsePortProtocol(text: string): { port: number; protocol: Protocol } | string {
  const m = /^(\d+)(?:\/([A-Za-z]+))?$/.exec(text.trim())
  if (!m) return `"${text}" is not a port; write PORT or PORT/PROTOCOL, e.g. 80/TCP`
  const port = Number(m[1])
  const protocol = (m[2] ?? 'TCP').toUpperCase()
  if (port < 1 || port > 65535) return `port must be from 1 to 65535, got ${port}`
  if (!isProtocol(protocol)) return `protocol must be TCP, UDP or SCTP, got "${m[2]}"`
  return { port, protocol }
}

function readFlowObject(r: FieldReader, value: unknown, path: Path, passThrough: boolean): (Flow & Record<string, unknown>) | undefined {
  if (typeof value === 'string') {
    const flow = parseFlowShorthand(value)
    return typeof flow === 'string' ? r.fail(path, flow) : { ...flow }
  }
  const known = ['from', 'to', 'port', 'protocol']
  const o = passThrough
    ? (value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : r.fail(path, 'must be a JSON object'))
    : r.object(value, path, known, ['from', 'to', 'port'])
  if (!o) return undefined
  const before = r.issues.length
  for (const k of ['from', 'to', 'port'] as const) if (o[k] === undefined) r.fail([...path, k], 'required field is missing')
  const from = o.from === undefined ? undefined : r.string(o.from, [...path, 'from'])
  const to = o.to === undefined ? undefined : r.string(o.to, [...path, 'to'])
  const port = o.port === undefined ? undefined : r.int(o.port, [...path, 'port'], 1, 65535)
  const protocolText = o.protocol === undefined ? 'TCP' : typeof o.protocol === 'string' ? o.protocol.toUpperCase() : o.protocol
  const protocol = r.oneOf(protocolText, [...path, 'protocol'], ['TCP', 'UDP', 'SCTP'] as const)
  if (r.issues.length > before || from === undefined || to === undefined || port === undefined || !protocol) return undefined
  return { ...o, from, to, port, protocol }
}

/** One JSON flow a line; blank lines and lines starting with # are skipped. */
export function parseFlowLines(file: string, text: string): (Flow & Record<string, unknown>)[] {
  const issues: ValidationIssue[] = []
  const flows: (Flow & Record<string, unknown>)[] = []
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '' || line.trim().startsWith('#')) return
    let value: unknown
    try {
      value = JSON.parse(line)
    } catch (err) {
      issues.push({ file, line: i + 1, column: 1, path: '', message: `not valid JSON: ${(err as Error).message}` })
      return
    }
    const doc = { file, index: i, value, locate: () => ({ file, line: i + 1, column: 1 }) }
    const flow = readFlowObject(new FieldReader(doc, issues), value, [], true)
    if (flow) flows.push(flow)
  })
  if (issues.length > 0) throw new ValidationError(issues)
  return flows
}

export interface FlowExpectation {
  readonly expect: 'allow' | 'deny'
  readonly flow: Flow
  readonly line: number
}

/**
 * A tests file: `allow:` and `deny:` lists of flows, each an object {from, to, port, protocol}
 * or the shorthand "FROM -> TO:PORT/PROTOCOL". Several YAML documents may be given.
 */
export function parseFlowExpectations(file: string, text: string): FlowExpectation[] {
  const parsed = parseSource(file, text)
  const issues: ValidationIssue[] = [...parsed.issues]
  const out: FlowExpectation[] = []
  for (const doc of parsed.documents) {
    const r = new FieldReader(doc, issues)
    const o = r.object(doc.value, [], ['allow', 'deny'])
    if (!o) continue
    for (const expect of ['allow', 'deny'] as const) {
      if (o[expect] == null) continue
      r.array(o[expect], [expect])?.forEach((item, i) => {
        const flow = readFlowObject(r, item, [expect, i], false)
        if (flow) out.push({ expect, flow: { from: flow.from, to: flow.to, port: flow.port, protocol: flow.protocol }, line: doc.locate([expect, i]).line })
      })
    }
  }
  if (issues.length > 0) throw new ValidationError(issues)
  return out
}
