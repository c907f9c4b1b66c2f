/**
 * PolicySnapshot: an immutable, indexed view of policies and endpoints at one moment, and the
 * evaluation of a flow against it.
 *
 *   flow (src, dst, port, protocol)
 *     egress of src:  Admin CNPs (priority order) -> NetworkPolicies of src's namespace -> Baseline CNPs -> allow
 *     ingress of dst: Admin CNPs (priority order) -> NetworkPolicies of dst's namespace -> Baseline CNPs -> allow
 *     allowed = egress allowed AND ingress allowed
 *
 * Each endpoint record lists, in evaluation order, exactly the NetworkPolicies that select it,
 * and each namespace record the ClusterNetworkPolicies whose subject covers the namespace, so a
 * lookup never scans policies that cannot apply. Cluster policies are kept per namespace, not
 * per endpoint, because their subjects are usually broad: an edit to one then rebuilds a
 * namespace record per covered namespace instead of every endpoint record in the cluster.
 * Records are rebuilt by the compiler when something that affects them changes; everything
 * else is shared.
 */
import { endpointKey, formatIp, InvalidArgumentError, parseIp, UnknownEndpointError, type Cidr, type Endpoint, type IpAddress, type Labels, type NamedPort, type Protocol } from '@flatnet/core'
import type { Direction } from './model.js'
import { ipInBlock, type CompiledClusterPolicy, type CompiledNetworkPolicy, type CompiledPeer, type CompiledPort, type CompiledRule, type DirectionVerdict } from './compiled-policy.js'
import type { PersistentMap } from './persistent-map.js'

export interface NamespaceRecord {
  readonly index: number
  readonly name: string
  readonly labels: Labels
  /** True when a Namespace object declared it; false when only referenced. */
  readonly declared: boolean
  /** NetworkPolicies of this namespace, by name. */
  readonly policies: readonly CompiledNetworkPolicy[]
  /** Keys of the endpoints in this namespace. */
  readonly endpoints: readonly string[]
  /**
   * ClusterNetworkPolicies whose subject namespaces include this one, in evaluation order. A
   * policy with a pods subject is listed too; its pod selector is applied at lookup.
   */
  readonly adminPolicies: readonly CompiledClusterPolicy[]
  readonly baselinePolicies: readonly CompiledClusterPolicy[]
}

export interface EndpointRecord {
  readonly key: string
  readonly endpoint: Endpoint
  /** The endpoint's addresses (equal to `endpoint.ips`), kept with the record for lookups. */
  readonly ips: readonly IpAddress[]
  readonly nsIndex: number
  readonly labels: Labels
  readonly namedPorts: ReadonlyMap<string, readonly NamedPort[]>
  /**
   * NetworkPolicies selecting this endpoint that isolate it, per direction, by name. Endpoints
   * with equal lists may share one array.
   */
  readonly ingressPolicies: readonly CompiledNetworkPolicy[]
  readonly egressPolicies: readonly CompiledNetworkPolicy[]
  /** The rules of those policies, in order, flattened: what a lookup walks. */
  readonly ingressRules: readonly CompiledRule[]
  readonly egressRules: readonly CompiledRule[]
  /** The verdict when the policies isolate and no rule allows; undefined when nothing isolates. */
  readonly ingressDenial: DirectionVerdict | undefined
  readonly egressDenial: DirectionVerdict | undefined
}

/** One side of a flow: an endpoint (with the IP it uses, if known) or an outside IP. */
export interface FlowPeer {
  readonly record?: EndpointRecord | undefined
  readonly ip?: IpAddress | undefined
  /** As the user wrote it. */
  readonly ref: string
}

export interface Verdict {
  readonly allowed: boolean
  readonly egress: DirectionVerdict
  readonly ingress: DirectionVerdict
  /** The direction that decided: the denying one, or for an allowed flow the most specific. */
  readonly decidedBy: DirectionVerdict
}

const UNGOVERNED: Record<Direction, DirectionVerdict> = {
  egress: Object.freeze({ direction: 'egress', allowed: true, tier: 'Default', reason: 'the source is not a flatnet endpoint; nothing governs its egress' }),
  ingress: Object.freeze({ direction: 'ingress', allowed: true, tier: 'Default', reason: 'the destination is not a flatnet endpoint; nothing governs its ingress' }),
}
const DEFAULT_ALLOW: Record<Direction, DirectionVerdict> = {
  egress: Object.freeze({ direction: 'egress', allowed: true, tier: 'Default', reason: 'no policy isolates the source for egress' }),
  ingress: Object.freeze({ direction: 'ingress', allowed: true, tier: 'Default', reason: 'no policy isolates the destination for ingress' }),
}

export class PolicySnapshot {
  constructor(
    /** Bumped by every compiler commit. */
    readonly generation: number,
    readonly namespaces: readonly NamespaceRecord[],
    readonly namespaceIndex: ReadonlyMap<string, number>,
    readonly endpoints: PersistentMap<EndpointRecord>,
    /** Formatted IP -> endpoint key. */
    readonly ipIndex: PersistentMap<string>,
    readonly networkPolicies: PersistentMap<CompiledNetworkPolicy>,
    /** In evaluation order (priority, name); Admin and Baseline mixed. */
    readonly clusterPolicies: readonly CompiledClusterPolicy[],
  ) {
    Object.freeze(this)
  }

  endpoint(key: string): EndpointRecord | undefined {
    return this.endpoints.get(key)
  }

  namespace(name: string): NamespaceRecord | undefined {
    const i = this.namespaceIndex.get(name)
    return i === undefined ? undefined : this.namespaces[i]
  }

  /** Resolves `namespace/name` or an IP address (an endpoint's IP resolves to the endpoint). */
  resolve(ref: string): FlowPeer {
    if (ref.includes('/')) {
      const record = this.endpoints.get(ref)
      if (!record) throw new UnknownEndpointError(ref)
      return { record, ref }
    }
    const ip = parseIp(ref)
    if (!ip) throw new InvalidArgumentError(`"${ref}" is neither namespace/name nor an IP address`)
    const key = this.ipIndex.get(formatIp(ip))
    return { record: key === undefined ? undefined : this.endpoints.get(key), ip, ref }
  }

  evaluate(src: FlowPeer, dst: FlowPeer, port: number, protocol: Protocol): Verdict {
    // With neither address given, the source's first address is not enough: a dual-stack
    // source talking to a single-stack destination uses the family the destination has.
    const srcIp = src.ip ?? pickIp(src.record, dst.ip ?? sharedFamilyIp(src.record, dst.record))
    const dstIp = dst.ip ?? pickIp(dst.record, srcIp)
    const egress = src.record ? this.decide('egress', src.record, dst.record, dstIp, dst.record, port, protocol) : UNGOVERNED.egress
    const ingress = dst.record ? this.decide('ingress', dst.record, src.record, srcIp, dst.record, port, protocol) : UNGOVERNED.ingress
    let decidedBy: DirectionVerdict
    if (!egress.allowed) decidedBy = egress
    else if (!ingress.allowed) decidedBy = ingress
    else decidedBy = ingress.tier !== 'Default' || egress.tier === 'Default' ? ingress : egress
    return { allowed: egress.allowed && ingress.allowed, egress, ingress, decidedBy }
  }

  /** Evaluates by reference strings; convenient for the CLI and tests. */
  evaluateRefs(from: string, to: string, port: number, protocol: Protocol): Verdict {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`port must be an integer from 1 to 65535, got ${port}`)
    return this.evaluate(this.resolve(from), this.resolve(to), port, protocol)
  }

  /**
   * One direction at its subject: `subject` is the endpoint whose policies apply, `peer` the
   * other side, `dstRecord` the destination (whose named ports named-port rules refer to).
   */
  private decide(
    direction: Direction,
    subject: EndpointRecord,
    peer: EndpointRecord | undefined,
    peerIp: IpAddress | undefined,
    dstRecord: EndpointRecord | undefined,
    port: number,
    protocol: Protocol,
  ): DirectionVerdict {
    const ns = this.namespaces[subject.nsIndex] as NamespaceRecord
    const admin = this.firstClusterMatch(ns.adminPolicies, subject, direction, peer, peerIp, dstRecord, port, protocol)
    if (admin && admin.action !== 'Pass') return admin.verdict
    const policies = direction === 'ingress' ? subject.ingressPolicies : subject.egressPolicies
    if (policies.length > 0) {
      const rules = direction === 'ingress' ? subject.ingressRules : subject.egressRules
      for (let j = 0; j < rules.length; j++) {
        const rule = rules[j] as CompiledRule
        if (this.ruleMatches(rule, subject.nsIndex, peer, peerIp, dstRecord, port, protocol)) return rule.verdict
      }
      return (direction === 'ingress' ? subject.ingressDenial : subject.egressDenial) ?? isolationDenial(direction, policies)
    }
    const baseline = this.firstClusterMatch(ns.baselinePolicies, subject, direction, peer, peerIp, dstRecord, port, protocol)
    if (baseline) return baseline.verdict
    return DEFAULT_ALLOW[direction]
  }

  private firstClusterMatch(
    policies: readonly CompiledClusterPolicy[],
    subject: EndpointRecord,
    direction: Direction,
    peer: EndpointRecord | undefined,
    peerIp: IpAddress | undefined,
    dstRecord: EndpointRecord | undefined,
    port: number,
    protocol: Protocol,
  ): { action: string; verdict: DirectionVerdict } | undefined {
    for (let i = 0; i < policies.length; i++) {
      const policy = policies[i] as CompiledClusterPolicy
      if (policy.subjectPods !== undefined && !policy.subjectPods.matches(subject.labels)) continue
      const rules = policy.rules[direction]
      for (let j = 0; j < rules.length; j++) {
        const rule = rules[j]!
        if (this.ruleMatches(rule, -1, peer, peerIp, dstRecord, port, protocol)) return rule
      }
    }
    return undefined
  }

  private ruleMatches(
    rule: CompiledRule,
    policyNsIndex: number,
    peer: EndpointRecord | undefined,
    peerIp: IpAddress | undefined,
    dstRecord: EndpointRecord | undefined,
    port: number,
    protocol: Protocol,
  ): boolean {
    if (rule.ports !== undefined && rule.ports.length > 0 && !portsMatch(rule.ports, dstRecord, port, protocol)) return false
    const peers = rule.peers
    if (peers.length === 0) return true
    for (let i = 0; i < peers.length; i++) {
      if (this.peerMatches(peers[i] as CompiledPeer, policyNsIndex, peer, peerIp)) return true
    }
    return false
  }

  private peerMatches(p: CompiledPeer, policyNsIndex: number, peer: EndpointRecord | undefined, peerIp: IpAddress | undefined): boolean {
    switch (p.type) {
      case 'selector': {
        if (!peer) return false
        if (p.namespaces === undefined) {
          if (peer.nsIndex !== policyNsIndex) return false
        } else if (!p.namespaces.matchesAll && !p.namespaces.matches((this.namespaces[peer.nsIndex] as NamespaceRecord).labels)) return false
        return p.pods === undefined || p.pods.matches(peer.labels)
      }
      case 'ipBlock':
        return peerIp !== undefined && ipInBlock(peerIp, p.cidr, p.except)
      case 'networks':
        if (peerIp === undefined) return false
        for (let i = 0; i < p.cidrs.length; i++) if (ipInBlock(peerIp, p.cidrs[i]!, NO_CIDRS)) return true
        return false
    }
  }
}

const NO_CIDRS: readonly Cidr[] = []

// A denial depends only on the list of isolating policies, which records share, so it is built
// once per list rather than once per lookup (most lookups in a default-deny cluster are denials).
// The compiler stores it on the record, sparing the lookup this map.
const DENIALS: Record<Direction, WeakMap<readonly CompiledNetworkPolicy[], DirectionVerdict>> = { ingress: new WeakMap(), egress: new WeakMap() }

export function isolationDenial(direction: Direction, policies: readonly CompiledNetworkPolicy[]): DirectionVerdict {
  const known = DENIALS[direction].get(policies)
  if (known) return known
  const names = policies.map((p) => p.key)
  const verdict: DirectionVerdict = Object.freeze({
    direction,
    allowed: false,
    tier: 'NetworkPolicy' as const,
    policyKind: 'NetworkPolicy' as const,
    policy: names[0],
    reason: `${direction === 'ingress' ? 'the destination' : 'the source'} is isolated for ${direction} by NetworkPolic${names.length === 1 ? 'y' : 'ies'} ${names.join(', ')} and no rule allows this flow`,
    isolatedBy: Object.freeze(names),
  })
  DENIALS[direction].set(policies, verdict)
  return verdict
}

function portsMatch(ports: readonly CompiledPort[], dst: EndpointRecord | undefined, port: number, protocol: Protocol): boolean {
  for (let i = 0; i < ports.length; i++) {
    const p = ports[i] as CompiledPort
    if (p.protocol !== undefined && p.protocol !== protocol) continue
    if (p.name === undefined) {
      if (port >= p.from && port <= p.to) return true
      continue
    }
    // A named port means the destination's port of that name and protocol.
    const named = dst?.namedPorts.get(p.name)
    if (!named) continue
    for (let j = 0; j < named.length; j++) {
      const n = named[j] as NamedPort
      if (n.port === port && n.protocol === protocol && (p.protocol === undefined || n.protocol === p.protocol)) return true
    }
  }
  return false
}

/** The first address of `a` whose family `b` also has, if any. Plain loops: this is on the lookup path. */
function sharedFamilyIp(a: EndpointRecord | undefined, b: EndpointRecord | undefined): IpAddress | undefined {
  if (!a || !b) return undefined
  const ours = a.ips
  const theirs = b.ips
  for (let i = 0; i < ours.length; i++) {
    const ip = ours[i] as IpAddress
    for (let j = 0; j < theirs.length; j++) if ((theirs[j] as IpAddress).family === ip.family) return ip
  }
  return undefined
}

/** The address an endpoint uses towards `other`: same family as the other side when possible. */
function pickIp(record: EndpointRecord | undefined, other: IpAddress | undefined): IpAddress | undefined {
  if (!record) return undefined
  const ips = record.ips
  if (other) for (let i = 0; i < ips.length; i++) if ((ips[i] as IpAddress).family === other.family) return ips[i]
  return ips[0]
}

export function describeEndpoint(r: EndpointRecord): string {
  return `${r.endpoint.kind} ${endpointKey(r.endpoint)}`
}
