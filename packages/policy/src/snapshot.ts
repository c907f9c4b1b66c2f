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
 *
 * A lookup at cluster scale is bound by memory more than by computation: it reaches two random
 * endpoint records out of many, and the policy state of random namespaces. So a record carries
 * in its own fields what a lookup needs of the endpoint (namespace index, first address per
 * family as numbers, shared label and port maps), the rules it walks are rule programs (one
 * Int32Array per list; see `ruleProgram`), a namespace record holds its cluster rules as such
 * programs and its labels as namespace-selector bits, and the walk allocates nothing but the
 * Verdict it returns (`allows()` not even that).
 */
import { endpointKey, formatIp, InvalidArgumentError, parseIp, UnknownEndpointError, type Endpoint, type IpAddress, type Labels, type NamedPort, type Protocol } from '@flatnet/core'
import type { Direction } from './model.js'
import { EMPTY_PROGRAM, PEER_ADDRESSES, PEER_OWN_NAMESPACE, PROTOCOL_CODE, type ClusterRuleWalk, type CompiledClusterPolicy, type CompiledClusterRule, type CompiledNetworkPolicy, type CompiledRule, type DirectionVerdict } from './compiled-policy.js'
import type { PersistentMap } from './persistent-map.js'
import type { Selector } from './selector.js'

export interface NamespaceRecord {
  // (The compiler puts the fields a lookup reads, namespaceBits and the walks, first.)
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
  /** Which namespace selectors match `labels`: see SelectorCache.namespaceBits. */
  readonly namespaceBits: Int32Array
  /** The rules of `adminPolicies` and `baselinePolicies` per direction, flattened: what a lookup walks. */
  readonly adminIngress: ClusterRuleWalk
  readonly adminEgress: ClusterRuleWalk
  readonly baselineIngress: ClusterRuleWalk
  readonly baselineEgress: ClusterRuleWalk
}

export interface EndpointRecord {
  // The fields a lookup reads come first, so that they share the record's first cache lines.
  readonly nsIndex: number
  /** Which address families the endpoint has: bit `1 << family` set for each (16: IPv4, 64: IPv6). */
  readonly families: number
  /** The family of the first address (`ips[0]`); 0 when the endpoint has none. */
  readonly firstFamily: 0 | 4 | 6
  /** The first IPv4 address as an int32 (`words[0] | 0`); 0 when there is none (see `families`). */
  readonly ip4: number
  /** The first IPv6 address, if any. */
  readonly ip6: IpAddress | undefined
  readonly labels: Labels
  readonly namedPorts: ReadonlyMap<string, readonly NamedPort[]>
  /**
   * NetworkPolicies selecting this endpoint that isolate it, per direction, by name. Endpoints
   * with equal lists may share one array.
   */
  readonly ingressPolicies: readonly CompiledNetworkPolicy[]
  readonly egressPolicies: readonly CompiledNetworkPolicy[]
  /** The rules of those policies, in order, flattened. */
  readonly ingressRules: readonly CompiledRule[]
  readonly egressRules: readonly CompiledRule[]
  /** The same rules as rule programs (see `ruleProgram`): what a lookup walks. A match's index is one into the rules. */
  readonly ingressProgram: Int32Array
  readonly egressProgram: Int32Array
  /** The rules' verdicts, in the same order (one memory access nearer than through the rules). */
  readonly ingressVerdicts: readonly DirectionVerdict[]
  readonly egressVerdicts: readonly DirectionVerdict[]
  /** The verdict when the policies isolate and no rule allows; undefined exactly when nothing isolates. */
  readonly ingressDenial: DirectionVerdict | undefined
  readonly egressDenial: DirectionVerdict | undefined
  readonly key: string
  readonly endpoint: Endpoint
  /** The endpoint's addresses (equal to `endpoint.ips`). */
  readonly ips: readonly IpAddress[]
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

const UNGOVERNED_EGRESS: DirectionVerdict = Object.freeze({ direction: 'egress', allowed: true, tier: 'Default', reason: 'the source is not a flatnet endpoint; nothing governs its egress' })
const UNGOVERNED_INGRESS: DirectionVerdict = Object.freeze({ direction: 'ingress', allowed: true, tier: 'Default', reason: 'the destination is not a flatnet endpoint; nothing governs its ingress' })
const DEFAULT_ALLOW_EGRESS: DirectionVerdict = Object.freeze({ direction: 'egress', allowed: true, tier: 'Default', reason: 'no policy isolates the source for egress' })
const DEFAULT_ALLOW_INGRESS: DirectionVerdict = Object.freeze({ direction: 'ingress', allowed: true, tier: 'Default', reason: 'no policy isolates the destination for ingress' })

/** Whether a direction verdict is of the Default tier, without reading it (they are these four). */
function isDefault(v: DirectionVerdict): boolean {
  return v === DEFAULT_ALLOW_INGRESS || v === DEFAULT_ALLOW_EGRESS || v === UNGOVERNED_INGRESS || v === UNGOVERNED_EGRESS
}

/**
 * Whether the verdict the last `decide()` call returned allows. Read right after the call, so
 * that a lookup need not load the verdict object: at cluster scale a rule's verdict is seldom
 * in the CPU caches, and loading two per lookup was a measurable part of its cost.
 */
let decidedAllowed = false

/** The result of the last `lookup()` (lookups are synchronous, so one suffices; no allocation per lookup). */
const last: { egress: DirectionVerdict; ingress: DirectionVerdict; egressAllowed: boolean; ingressAllowed: boolean } = {
  egress: DEFAULT_ALLOW_EGRESS,
  ingress: DEFAULT_ALLOW_INGRESS,
  egressAllowed: true,
  ingressAllowed: true,
}

/** The bits of no namespace (for an outside peer): knows no slot. */
const NO_BITS = new Int32Array(1)

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
    /** The selectors and port names rule programs refer to, by id (append-only, shared with later snapshots). */
    private readonly selectors: readonly Selector[] = [],
    private readonly portNames: readonly string[] = [],
    private readonly namespaceSelectors: readonly Selector[] = [],
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
    this.lookup(src, dst, port, protocol, false)
    const { egress, ingress, egressAllowed, ingressAllowed } = last
    let decidedBy: DirectionVerdict
    if (!egressAllowed) decidedBy = egress
    else if (!ingressAllowed) decidedBy = ingress
    else decidedBy = !isDefault(ingress) || isDefault(egress) ? ingress : egress
    return { allowed: egressAllowed && ingressAllowed, egress, ingress, decidedBy }
  }

  /**
   * Whether the flow is allowed: `evaluate(...).allowed`, without building the Verdict, and the
   * ingress side is skipped when egress already denies. For callers that need only the answer.
   */
  allows(src: FlowPeer, dst: FlowPeer, port: number, protocol: Protocol): boolean {
    this.lookup(src, dst, port, protocol, true)
    return last.egressAllowed && last.ingressAllowed
  }

  /** Evaluates by reference strings; convenient for the CLI and tests. */
  evaluateRefs(from: string, to: string, port: number, protocol: Protocol): Verdict {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`port must be an integer from 1 to 65535, got ${port}`)
    return this.evaluate(this.resolve(from), this.resolve(to), port, protocol)
  }

  /**
   * Decides both directions of a flow into `last`; with `stopOnDenial`, ingress is not decided
   * (and counts as allowed) when egress denies.
   */
  private lookup(src: FlowPeer, dst: FlowPeer, port: number, protocol: Protocol, stopOnDenial: boolean): void {
    const s = src.record
    const d = dst.record
    // What each side reads of its record and namespace, loaded up front. At cluster scale these
    // are mostly cache misses; loads issued together overlap, where loads issued only when the
    // walk reaches them (the ingress side after all of the egress side) would be paid in turn.
    const sNs = s !== undefined ? (this.namespaces[s.nsIndex] as NamespaceRecord) : undefined
    const dNs = d !== undefined ? (this.namespaces[d.nsIndex] as NamespaceRecord) : undefined
    const sBits = sNs !== undefined ? sNs.namespaceBits : NO_BITS
    const dBits = dNs !== undefined ? dNs.namespaceBits : NO_BITS
    const egressProgram = s !== undefined ? s.egressProgram : EMPTY_PROGRAM
    const ingressProgram = d !== undefined ? d.ingressProgram : EMPTY_PROGRAM
    const sKnown = sBits[0] as number
    const dKnown = dBits[0] as number
    const egressCount = egressProgram[0] as number
    const ingressCount = ingressProgram[0] as number

    const proto = PROTOCOL_CODE[protocol]
    const srcFamily = sourceFamily(src, dst)
    const dstFamily = destinationFamily(dst, srcFamily)
    if (s === undefined || sNs === undefined) {
      last.egress = UNGOVERNED_EGRESS
      last.egressAllowed = true
    } else {
      const ip = dst.ip
      const v4 = ip !== undefined ? ip.words[0] | 0 : d !== undefined ? d.ip4 : 0
      const v6 = ip !== undefined ? ip : d?.ip6
      last.egress = this.decide(sNs.adminEgress, egressProgram, egressCount, s.egressVerdicts, s.egressDenial, sNs.baselineEgress, DEFAULT_ALLOW_EGRESS, s, d, dBits, dKnown, dstFamily, v4, v6, d, port, protocol, proto)
      last.egressAllowed = decidedAllowed
    }
    if (d === undefined || dNs === undefined || (stopOnDenial && !last.egressAllowed)) {
      last.ingress = UNGOVERNED_INGRESS
      last.ingressAllowed = true
    } else {
      const ip = src.ip
      const v4 = ip !== undefined ? ip.words[0] | 0 : s !== undefined ? s.ip4 : 0
      const v6 = ip !== undefined ? ip : s?.ip6
      last.ingress = this.decide(dNs.adminIngress, ingressProgram, ingressCount, d.ingressVerdicts, d.ingressDenial, dNs.baselineIngress, DEFAULT_ALLOW_INGRESS, d, s, sBits, sKnown, srcFamily, v4, v6, d, port, protocol, proto)
      last.ingressAllowed = decidedAllowed
    }
  }

  /**
   * One direction at its subject: Admin tier, then the subject's NetworkPolicies (`program`,
   * with `verdicts` per rule and `denial` when they isolate), then Baseline tier, then
   * `otherwise`. Sets `decidedAllowed`.
   */
  private decide(
    admin: ClusterRuleWalk,
    program: Int32Array,
    programCount: number,
    verdicts: readonly DirectionVerdict[],
    denial: DirectionVerdict | undefined,
    baseline: ClusterRuleWalk,
    otherwise: DirectionVerdict,
    subject: EndpointRecord,
    peer: EndpointRecord | undefined,
    peerBits: Int32Array,
    peerKnown: number,
    family: number,
    v4: number,
    v6: IpAddress | undefined,
    dstRecord: EndpointRecord | undefined,
    port: number,
    protocol: Protocol,
    proto: number,
  ): DirectionVerdict {
    if (admin.rules.length > 0) {
      const r = this.firstMatch(admin.program, admin.program[0] as number, subject, peer, peerBits, peerKnown, family, v4, v6, dstRecord, port, protocol, proto)
      const rule = r >= 0 ? (admin.rules[r] as CompiledClusterRule) : undefined
      // A Pass goes on to the NetworkPolicies, skipping the rest of the Admin tier.
      if (rule !== undefined && rule.action !== 'Pass') {
        decidedAllowed = rule.action === 'Accept'
        return rule.verdict
      }
    }
    if (denial !== undefined) {
      const r = this.firstMatch(program, programCount, subject, peer, peerBits, peerKnown, family, v4, v6, dstRecord, port, protocol, proto)
      decidedAllowed = r >= 0
      return r >= 0 ? (verdicts[r] as DirectionVerdict) : denial
    }
    if (baseline.rules.length > 0) {
      const r = this.firstMatch(baseline.program, baseline.program[0] as number, subject, peer, peerBits, peerKnown, family, v4, v6, dstRecord, port, protocol, proto)
      if (r >= 0) {
        const rule = baseline.rules[r] as CompiledClusterRule
        decidedAllowed = rule.action === 'Accept'
        return rule.verdict
      }
    }
    decidedAllowed = true
    return otherwise
  }

  /**
   * The index of the first rule of a rule program that matches the flow, or -1. `subject` is
   * the endpoint whose rules these are, `peer` the other side's record if it is an endpoint,
   * (`family`, `v4`, `v6`) the other side's address (family 0: none), `dstRecord` the
   * destination (whose named ports named-port rules refer to).
   */
  private firstMatch(
    code: Int32Array,
    count: number,
    subject: EndpointRecord,
    peer: EndpointRecord | undefined,
    peerBits: Int32Array,
    peerKnown: number,
    family: number,
    v4: number,
    v6: IpAddress | undefined,
    dstRecord: EndpointRecord | undefined,
    port: number,
    protocol: Protocol,
    /** `protocol`'s PROTOCOL_CODE. */
    proto: number,
  ): number {
    let lastSubject = -1
    let lastSelected = true
    let at = 1
    for (let r = 0; r < count; r++) {
      const next = at + (code[at] as number)
      const subjectPods = code[at + 1] as number
      if (subjectPods >= 0) {
        // Consecutive rules of one policy share its selector: test it once.
        if (subjectPods !== lastSubject) {
          lastSubject = subjectPods
          lastSelected = (this.selectors[subjectPods] as Selector).matches(subject.labels)
        }
        if (!lastSelected) {
          at = next
          continue
        }
      }
      let i = at + 2
      const ports = code[i] as number
      i++
      if (ports > 0) {
        const end = i + 4 * ports
        for (; i < end; i += 4) {
          const p = code[i] as number
          if (p !== 0 && p !== proto) continue
          const name = code[i + 3] as number
          if (name < 0) {
            if (port >= (code[i + 1] as number) && port <= (code[i + 2] as number)) break
          } else if (dstRecord !== undefined && namedPortIs(dstRecord, this.portNames[name] as string, port, protocol)) break
        }
        if (i === end) {
          at = next
          continue
        }
        i = end
      }
      const peers = code[i] as number
      i++
      if (peers === 0) return r
      for (let k = 0; k < peers; k++) {
        const kind = code[i] as number
        if (kind === PEER_ADDRESSES) {
          if (addressMatches(code, i + 2, family, v4, v6)) return r
        } else if (peer !== undefined) {
          let pods: number
          if (kind === PEER_OWN_NAMESPACE) {
            pods = code[i + 2] as number
            if (peer.nsIndex !== subject.nsIndex) {
              i += code[i + 1] as number
              continue
            }
          } else {
            const slot = code[i + 2] as number
            pods = code[i + 3] as number
            if (slot >= 0 && (slot < peerKnown ? (((peerBits[1 + (slot >> 5)] as number) >>> (slot & 31)) & 1) === 0 : !this.inNamespaces(slot, peer))) {
              i += code[i + 1] as number
              continue
            }
          }
          if (pods < 0 || (this.selectors[pods] as Selector).matches(peer.labels)) return r
        }
        i += code[i + 1] as number
      }
      at = next
    }
    return -1
  }

  /** Whether namespace selector `slot`, newer than the bits of the peer's namespace record, matches that namespace. */
  private inNamespaces(slot: number, peer: EndpointRecord): boolean {
    return (this.namespaceSelectors[slot] as Selector).matches((this.namespaces[peer.nsIndex] as NamespaceRecord).labels)
  }
}

/** Whether the destination's port named `name` for `protocol` is `port`. */
function namedPortIs(dst: EndpointRecord, name: string, port: number, protocol: Protocol): boolean {
  const named = dst.namedPorts.get(name)
  if (named === undefined) return false
  for (let j = 0; j < named.length; j++) {
    const n = named[j] as NamedPort
    if (n.port === port && n.protocol === protocol) return true
  }
  return false
}

/** A PEER_ADDRESSES entry of a rule program, from its `in4` field at `at`, against an address. */
function addressMatches(code: Int32Array, at: number, family: number, v4: number, v6: IpAddress | undefined): boolean {
  const in4 = code[at] as number
  const out4 = code[at + 1] as number
  let i = at + 4
  if (family === 4) {
    const end = i + 2 * in4
    for (; i < end; i += 2) if ((v4 & (code[i + 1] as number)) === code[i]) break
    if (i === end) return false
    const stop = end + 2 * out4
    for (i = end; i < stop; i += 2) if ((v4 & (code[i + 1] as number)) === code[i]) return false
    return true
  }
  if (family !== 6 || v6 === undefined) return false
  const in6 = code[at + 2] as number
  const out6 = code[at + 3] as number
  const w = v6.words
  const start = i + 2 * (in4 + out4)
  const end = start + 8 * in6
  for (i = start; i < end; i += 8) if (in6Block(code, i, w)) break
  if (i === end) return false
  const stop = end + 8 * out6
  for (i = end; i < stop; i += 8) if (in6Block(code, i, w)) return false
  return true
}

function in6Block(code: Int32Array, at: number, w: readonly number[]): boolean {
  for (let k = 0; k < 4; k++) {
    const mask = code[at + 4 + k] as number
    if (((w[k] as number) & mask) !== code[at + k]) return false
  }
  return true
}

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

/**
 * The family of the address a flow comes from. The source's own address when given; else, with
 * the destination's address given, the source's address of that family; else, with neither
 * given, the family of the source's first address that the destination has too (a dual-stack
 * source talking to a single-stack destination uses the family the destination has); else the
 * source's first address. 0: no address.
 */
function sourceFamily(src: FlowPeer, dst: FlowPeer): number {
  if (src.ip !== undefined) return src.ip.family
  const a = src.record
  if (a === undefined) return 0
  const want = dst.ip !== undefined ? dst.ip.family : dst.record !== undefined ? sharedFamily(a, dst.record) : 0
  return want !== 0 && (a.families & (1 << want)) !== 0 ? want : a.firstFamily
}

/** The family of the address a flow goes to: the given one, else the destination's of the source's family, else its first. */
function destinationFamily(dst: FlowPeer, srcFamily: number): number {
  if (dst.ip !== undefined) return dst.ip.family
  const b = dst.record
  if (b === undefined) return 0
  return srcFamily !== 0 && (b.families & (1 << srcFamily)) !== 0 ? srcFamily : b.firstFamily
}

/** The family of `a`'s first address whose family `b` also has; 0 if none. */
function sharedFamily(a: EndpointRecord, b: EndpointRecord): number {
  const first = a.firstFamily
  if (first === 0) return 0
  if ((b.families & (1 << first)) !== 0) return first
  const other = first === 4 ? 6 : 4
  return (a.families & b.families & (1 << other)) !== 0 ? other : 0
}

export function describeEndpoint(r: EndpointRecord): string {
  return `${r.endpoint.kind} ${endpointKey(r.endpoint)}`
}
