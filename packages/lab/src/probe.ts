/**
 * `flatnet lab probe`: real connections between lab endpoints. For each flow the source
 * endpoint's daemon connects (TCP: connect and read the destination's answer line; UDP: one
 * datagram and its answer) with a timeout of 1 s, and the result is one line in the shape of
 * `flatnet policy eval` with `allowed` measured. Flows run concurrently (bounded), so denied
 * flows cost one timeout together, not one each.
 */
import { endpointKey, formatIp, InvalidArgumentError, parseIp, UnknownEndpointError } from '@flatnet/core'
import { flowResult, type DirectionResult, type Flow, type Verdict } from '@flatnet/policy'
import { mapLimit } from './command.js'
import { DaemonClient } from './daemon-client.js'
import type { ProbeOutcome } from './daemon/protocol.js'
import { DEFAULT_LAB_STATE_DIR, LabNotFoundError, readLabState, type EndpointRecord } from './state.js'

export const PROBE_DEFAULTS = Object.freeze({
  timeoutMs: 1000,
  /** Flows in flight at once, over all sources. */
  concurrency: 64,
})

export interface LabProbeOptions {
  readonly stateDir?: string | undefined
  /** Flows as `policy eval` reads them (parseFlowLines); without: the full matrix (fullMatrix). */
  readonly flows?: readonly (Flow & Record<string, unknown>)[] | undefined
  readonly concurrency?: number | undefined
  readonly timeoutMs?: number | undefined
  /**
   * The policy verdict of a flow (e.g. from the live store's PolicySnapshot). When given, the
   * result carries the verdict's direction, tier, policy and rule, and `expected`; without it
   * those fields are null.
   */
  readonly evaluate?: ((flow: Flow) => Verdict) | undefined
}

/** What was measured. */
export interface ProbeMeasurement {
  /** `answered` when the destination answered; `wrong-endpoint` when someone else did. */
  readonly result: ProbeOutcome | 'wrong-endpoint'
  /** The addresses used. */
  readonly source: string
  readonly destination: string
  readonly ms: number
  /** The answer line, e.g. `y/b 80/TCP`. */
  readonly reply?: string | undefined
  readonly detail?: string | undefined
}

/** One line of `lab probe --output json`: the `policy eval` shape, `allowed` measured. */
export interface LabProbeResult extends Flow {
  readonly allowed: boolean
  readonly direction: 'egress' | 'ingress' | null
  readonly tier: string | null
  readonly policyKind: 'NetworkPolicy' | 'ClusterNetworkPolicy' | null
  readonly policy: string | null
  readonly rule: number | null
  readonly egress: DirectionResult | null
  readonly ingress: DirectionResult | null
  /** The policy verdict, when `evaluate` was given. */
  readonly expected?: boolean | undefined
  readonly probe: ProbeMeasurement
  readonly [extra: string]: unknown
}

/**
 * Every endpoint that serves ports, to every such endpoint (itself included), on each declared
 * port and protocol, in state order. Endpoints serving nothing (e.g. hosts in the netpol-3x3
 * example) are left out both ways; name them in --flows to probe from them.
 */
export function fullMatrix(endpoints: readonly EndpointRecord[]): (Flow & Record<string, unknown>)[] {
  const serving = endpoints.filter((e) => e.ports.length > 0)
  const flows: (Flow & Record<string, unknown>)[] = []
  for (const src of serving) {
    for (const dst of serving) {
      for (const p of dst.ports) flows.push({ from: src.key, to: dst.key, port: p.port, protocol: p.protocol })
    }
  }
  return flows
}

interface Resolved {
  readonly flow: Flow & Record<string, unknown>
  readonly source: EndpointRecord
  readonly sourceIp: string
  readonly destination: EndpointRecord | undefined
  readonly destinationIp: string
}

const family = (ip: string): number => parseIp(ip)?.family ?? 0

function resolveFlows(endpoints: readonly EndpointRecord[], flows: readonly (Flow & Record<string, unknown>)[]): Resolved[] {
  const byKey = new Map(endpoints.map((e) => [e.key, e]))
  const byIp = new Map(endpoints.flatMap((e) => e.addresses.map((a) => [a, e] as const)))
  const find = (ref: string): { endpoint?: EndpointRecord | undefined; ip?: string | undefined } => {
    if (ref.includes('/')) {
      const endpoint = byKey.get(ref)
      if (!endpoint) throw new UnknownEndpointError(ref)
      return { endpoint }
    }
    const ip = parseIp(ref)
    if (!ip) throw new InvalidArgumentError(`"${ref}" is neither namespace/name nor an IP address`)
    const text = formatIp(ip)
    return { endpoint: byIp.get(text), ip: text }
  }
  return flows.map((flow) => {
    const shown = `${flow.from} -> ${flow.to}:${flow.port}/${flow.protocol}`
    if (flow.protocol !== 'TCP' && flow.protocol !== 'UDP') throw new InvalidArgumentError(`${shown}: the lab probes TCP and UDP only`)
    const src = find(flow.from)
    if (!src.endpoint) throw new InvalidArgumentError(`${shown}: the source must be a lab endpoint (namespace/name or one of its addresses)`)
    const dst = find(flow.to)
    const sourceAddresses = src.endpoint.addresses
    const destinationIp = dst.ip ?? dst.endpoint?.addresses.find((a) => sourceAddresses.some((s) => family(s) === family(a)))
    if (destinationIp === undefined) throw new InvalidArgumentError(`${shown}: ${src.endpoint.key} and ${flow.to} share no address family`)
    const sourceIp = sourceAddresses.find((s) => family(s) === family(destinationIp))
    if (sourceIp === undefined) throw new InvalidArgumentError(`${shown}: ${src.endpoint.key} has no IPv${family(destinationIp)} address`)
    return { flow, source: src.endpoint, sourceIp, destination: dst.endpoint, destinationIp }
  })
}

function resultLine(r: Resolved, measured: ProbeMeasurement, allowed: boolean, evaluate: LabProbeOptions['evaluate']): LabProbeResult {
  if (evaluate) {
    const verdict = evaluate({ from: r.flow.from, to: r.flow.to, port: r.flow.port, protocol: r.flow.protocol })
    return { ...flowResult(r.flow, verdict), allowed, expected: verdict.allowed, probe: measured }
  }
  return { ...r.flow, allowed, direction: null, tier: null, policyKind: null, policy: null, rule: null, egress: null, ingress: null, probe: measured }
}

/** Probes `flows` (or the full matrix) in the lab in `stateDir`; results in input order. */
export async function probeLab(options: LabProbeOptions = {}): Promise<LabProbeResult[]> {
  const stateDir = options.stateDir ?? DEFAULT_LAB_STATE_DIR
  const state = readLabState(stateDir)
  if (!state) throw new LabNotFoundError(stateDir)
  const timeoutMs = options.timeoutMs ?? PROBE_DEFAULTS.timeoutMs
  const flows = options.flows ?? fullMatrix(state.endpoints)
  const resolved = resolveFlows(state.endpoints, flows)
  const clients = new Map<string, Promise<DaemonClient>>()
  const clientOf = (ep: EndpointRecord): Promise<DaemonClient> => {
    let c = clients.get(ep.key)
    if (!c) {
      c = DaemonClient.connect(ep.key, ep.socket)
      clients.set(ep.key, c)
    }
    return c
  }
  try {
    return await mapLimit(resolved, options.concurrency ?? PROBE_DEFAULTS.concurrency, async (r) => {
      const client = await clientOf(r.source)
      const reply = await client.probe({ ip: r.destinationIp, port: r.flow.port, protocol: r.flow.protocol as 'TCP' | 'UDP', timeoutMs })
      // The answer names who answered: a reply from another endpoint means the lab misroutes.
      const expectedPrefix = r.destination ? `${endpointKey(r.destination)} ${r.flow.port}/${r.flow.protocol}` : undefined
      const rightOne = reply.ok && (expectedPrefix === undefined || reply.reply === expectedPrefix)
      const measured: ProbeMeasurement = {
        result: reply.ok && !rightOne ? 'wrong-endpoint' : reply.result,
        source: r.sourceIp,
        destination: r.destinationIp,
        ms: Math.round(reply.ms * 10) / 10,
        reply: reply.reply,
        detail: reply.detail,
      }
      return resultLine(r, measured, rightOne, options.evaluate)
    })
  } finally {
    for (const c of clients.values()) void c.then((client) => client.close()).catch(() => undefined)
  }
}

