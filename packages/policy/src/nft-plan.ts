/**
 * What flatnet's nftables table has to do, as plain data: which chains, which rules in which
 * order, which address sets. `nft-ruleset.ts` only spells this plan out as `nft -f` text, so the
 * semantics live here and can be checked without a kernel.
 *
 * The plan gives every local endpoint one chain per direction, holding exactly the rules
 * `PolicySnapshot.evaluate` would walk for it, in the same order:
 *
 *   <ep>-egress / <ep>-ingress:
 *     [host endpoints] failsafe and protected ports        -> allow
 *     Admin tier, by priority, rules as written             -> Accept: allow, Deny: drop, Pass: goto <chain>-np
 *   <ep>-<dir>-np (same chain when no Pass rule exists):
 *     isolated:     NetworkPolicy rules -> allow; else drop
 *     not isolated: Baseline tier -> Accept: allow, Deny: drop; else the default allow
 *
 * "allow" is `return` in an egress chain (the destination's ingress chain may still have to
 * run when it is local too) and `accept` in an ingress chain, which always runs last.
 *
 * A failsafe entry limited to a CIDR becomes its own rule, matched like an ipBlock peer: an
 * address set of that CIDR's family, against the source (inbound) or destination (outbound).
 *
 * Peers become address sets: the addresses of every endpoint a selector matches (the whole
 * cluster, not only local ones), CIDRs minus their exceptions as intervals. A named port is
 * looked up on the destination: for ingress that is the local endpoint itself, so it becomes a
 * plain port; for egress it becomes a set of `destination . protocol . port` triples.
 *
 * Pure: no I/O. The plan depends only on the snapshot's content and the input, never on the
 * order in which the snapshot was built.
 */
import { cidrContains, formatCidr, formatIp, InvalidArgumentError, parseCidr, type Cidr, type IpAddress, type IpFamily, type Protocol } from '@flatnet/core'
import type { CompiledClusterPolicy, CompiledPeer, CompiledRule, DirectionVerdict, VerdictTier } from './compiled-policy.js'
import type { ClusterRuleAction, Direction } from './model.js'
import type { EndpointRecord, PolicySnapshot } from './snapshot.js'

// ---------------------------------------------------------------------------------------------
// Input

/** An endpoint whose traffic this node enforces. */
export interface NftLocalEndpoint {
  /** `namespace/name`, as in the snapshot. */
  readonly key: string
  /** `host`: the node's own addresses (input/output hooks), with failsafe ports. */
  readonly kind: 'workload' | 'host'
  /** The host side of a workload's veth: packets entering here must carry the workload's own source address. */
  readonly hostInterface?: string | undefined
}

export interface NftPortSpec {
  readonly protocol: 'tcp' | 'udp'
  readonly port: number
  /**
   * Limits the entry to peers in this CIDR (IPv4 or IPv6, no host bits): sources for inbound,
   * destinations for outbound. Absent: any address of either family.
   */
  readonly cidr?: string | undefined
}

export interface NftFailsafe {
  /** Always allowed into host endpoints. */
  readonly inbound: readonly NftPortSpec[]
  /** Always allowed out of host endpoints. */
  readonly outbound: readonly NftPortSpec[]
}

export interface NftRulesetInput {
  /** Name of the `inet` table flatnet owns (default `flatnet`). */
  readonly table?: string | undefined
  readonly localEndpoints: readonly NftLocalEndpoint[]
  /** Default: NFT_DEFAULTS.failsafe. Pass empty lists to turn the optional failsafe ports off. */
  readonly failsafe?: Partial<NftFailsafe> | undefined
  /** Always allowed for host endpoints, whatever the failsafe setting: the agent's own traffic. */
  readonly protectedPorts?: { readonly overlayUdpPort?: number | undefined; readonly meshTcpPort?: number | undefined } | undefined
  /** Starts every log prefix, so that log records of several agents (or tables) can be told apart. */
  readonly logPrefixTag?: string | undefined
  /** The NFLOG group the rules log to (`log group N`). */
  readonly logGroup?: number | undefined
}

/** Calico's choice, trimmed to what a flatnet host needs: SSH in, DHCP both ways, DNS out. */
export const NFT_DEFAULTS = Object.freeze({
  table: 'flatnet',
  logPrefixTag: 'flatnet',
  logGroup: 17,
  failsafe: Object.freeze({
    inbound: Object.freeze([Object.freeze({ protocol: 'tcp', port: 22 }), Object.freeze({ protocol: 'udp', port: 68 })]) as readonly NftPortSpec[],
    outbound: Object.freeze([
      Object.freeze({ protocol: 'tcp', port: 53 }),
      Object.freeze({ protocol: 'udp', port: 53 }),
      Object.freeze({ protocol: 'udp', port: 67 }),
    ]) as readonly NftPortSpec[],
  }),
})

/** A failsafe entry as checked: the CIDR parsed, undefined for any address. */
interface FailsafeEntry {
  readonly protocol: 'tcp' | 'udp'
  readonly port: number
  readonly cidr: Cidr | undefined
}

interface NormalizedInput {
  readonly table: string
  readonly localEndpoints: readonly NftLocalEndpoint[]
  readonly failsafe: { readonly inbound: readonly FailsafeEntry[]; readonly outbound: readonly FailsafeEntry[] }
  readonly overlayUdpPort: number | undefined
  readonly meshTcpPort: number | undefined
  readonly logPrefixTag: string
  readonly logGroup: number
}

const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,31}$/
const PREFIX_TAG = /^[A-Za-z0-9_.-]{1,32}$/
// Interface names are at most 15 bytes; quotes, spaces and slashes are refused so the name can
// be written into the ruleset as it is.
const INTERFACE_NAME = /^[A-Za-z0-9_.@:+-]{1,15}$/

function checkPort(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new InvalidArgumentError(`${field} must be an integer from 1 to 65535, got ${JSON.stringify(value)}`)
  }
  return value
}

/**
 * A failsafe CIDR. One with host bits set is refused rather than widened to its network: the
 * entry would open the port to more addresses than were written.
 */
function checkCidr(value: unknown, field: string): Cidr {
  const parsed = typeof value === 'string' ? parseCidr(value) : undefined
  if (!parsed) throw new InvalidArgumentError(`${field} must be an IPv4 or IPv6 CIDR (e.g. 10.0.0.0/8 or fd00::/64), got ${JSON.stringify(value)}`)
  if (parsed.hostBitsSet) throw new InvalidArgumentError(`${field} ${JSON.stringify(value)} has host bits set: did you mean ${formatCidr(parsed)}?`)
  return { family: parsed.family, network: parsed.network, prefix: parsed.prefix }
}

function checkPorts(list: readonly NftPortSpec[], field: string): readonly FailsafeEntry[] {
  return list.map((p, i) => {
    if (p.protocol !== 'tcp' && p.protocol !== 'udp') throw new InvalidArgumentError(`${field}[${i}].protocol must be "tcp" or "udp", got ${JSON.stringify(p.protocol)}`)
    const port = checkPort(p.port, `${field}[${i}].port`)
    return { protocol: p.protocol, port, cidr: p.cidr === undefined ? undefined : checkCidr(p.cidr, `${field}[${i}].cidr`) }
  })
}

/** Fills in the defaults and refuses what cannot be written into a ruleset safely. */
export function normalizeNftInput(input: NftRulesetInput): NormalizedInput {
  const table = input.table ?? NFT_DEFAULTS.table
  if (!TABLE_NAME.test(table)) throw new InvalidArgumentError(`table "${table}" must be a letter followed by up to 31 letters, digits, '_' or '-'`)
  const logPrefixTag = input.logPrefixTag ?? NFT_DEFAULTS.logPrefixTag
  if (!PREFIX_TAG.test(logPrefixTag)) throw new InvalidArgumentError(`logPrefixTag "${logPrefixTag}" must be 1 to 32 letters, digits, '_', '.' or '-'`)
  const logGroup = input.logGroup ?? NFT_DEFAULTS.logGroup
  if (!Number.isInteger(logGroup) || logGroup < 0 || logGroup > 65535) throw new InvalidArgumentError(`logGroup must be an integer from 0 to 65535, got ${logGroup}`)
  const seen = new Set<string>()
  const localEndpoints = input.localEndpoints.map((e, i) => {
    const field = `localEndpoints[${i}]`
    if (typeof e.key !== 'string' || !/^[^/\s]+\/[^/\s]+$/.test(e.key)) throw new InvalidArgumentError(`${field}.key must be "namespace/name", got ${JSON.stringify(e.key)}`)
    if (seen.has(e.key)) throw new InvalidArgumentError(`${field}.key "${e.key}" is listed twice`)
    seen.add(e.key)
    if (e.kind !== 'workload' && e.kind !== 'host') throw new InvalidArgumentError(`${field}.kind must be "workload" or "host", got ${JSON.stringify(e.kind)}`)
    if (e.hostInterface !== undefined && (typeof e.hostInterface !== 'string' || !INTERFACE_NAME.test(e.hostInterface))) {
      throw new InvalidArgumentError(`${field}.hostInterface must be an interface name (1 to 15 of letters, digits, '_', '.', '@', ':', '+', '-'), got ${JSON.stringify(e.hostInterface)}`)
    }
    if (e.hostInterface !== undefined && e.kind === 'host') throw new InvalidArgumentError(`${field}.hostInterface is only for workloads; "${e.key}" is a host endpoint`)
    return { key: e.key, kind: e.kind, hostInterface: e.hostInterface }
  })
  localEndpoints.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  const pp = input.protectedPorts ?? {}
  return {
    table,
    localEndpoints,
    failsafe: {
      inbound: checkPorts(input.failsafe?.inbound ?? NFT_DEFAULTS.failsafe.inbound, 'failsafe.inbound'),
      outbound: checkPorts(input.failsafe?.outbound ?? NFT_DEFAULTS.failsafe.outbound, 'failsafe.outbound'),
    },
    overlayUdpPort: pp.overlayUdpPort === undefined ? undefined : checkPort(pp.overlayUdpPort, 'protectedPorts.overlayUdpPort'),
    meshTcpPort: pp.meshTcpPort === undefined ? undefined : checkPort(pp.meshTcpPort, 'protectedPorts.meshTcpPort'),
    logPrefixTag,
    logGroup,
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses as integers, for interval arithmetic (CIDR minus exceptions, unions).

/** An inclusive range of addresses of one family. */
export interface AddressRange {
  readonly lo: bigint
  readonly hi: bigint
}

export const familyBits = (family: IpFamily): number => (family === 4 ? 32 : 128)

export function addressValue(ip: IpAddress): bigint {
  if (ip.family === 4) return BigInt(ip.words[0])
  return (BigInt(ip.words[0]) << 96n) | (BigInt(ip.words[1]) << 64n) | (BigInt(ip.words[2]) << 32n) | BigInt(ip.words[3])
}

export function addressFromValue(family: IpFamily, v: bigint): IpAddress {
  if (family === 4) return { family, words: [Number(v), 0, 0, 0] }
  const w = (shift: bigint): number => Number((v >> shift) & 0xffffffffn)
  return { family, words: [w(96n), w(64n), w(32n), w(0n)] }
}

function cidrRange(cidr: { readonly family: IpFamily; readonly network: IpAddress; readonly prefix: number }): AddressRange {
  const lo = addressValue(cidr.network)
  return { lo, hi: lo + (1n << BigInt(familyBits(cidr.family) - cidr.prefix)) - 1n }
}

function subtract(ranges: readonly AddressRange[], cut: AddressRange): AddressRange[] {
  const out: AddressRange[] = []
  for (const r of ranges) {
    if (cut.hi < r.lo || cut.lo > r.hi) {
      out.push(r)
      continue
    }
    if (r.lo < cut.lo) out.push({ lo: r.lo, hi: cut.lo - 1n })
    if (r.hi > cut.hi) out.push({ lo: cut.hi + 1n, hi: r.hi })
  }
  return out
}

/** Sorted, with overlapping and adjacent ranges merged: nft refuses overlapping interval elements. */
export function mergeRanges(ranges: readonly AddressRange[]): AddressRange[] {
  const sorted = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0))
  const out: AddressRange[] = []
  for (const r of sorted) {
    const last = out[out.length - 1]
    if (last && r.lo <= last.hi + 1n) {
      if (r.hi > last.hi) out[out.length - 1] = { lo: last.lo, hi: r.hi }
    } else out.push(r)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// The plan

/** Protocol and an inclusive destination (or source) port range. */
export interface PortRange {
  readonly protocol: Protocol
  readonly from: number
  readonly to: number
}

/** What a rule matches; every field present must hold. */
export interface PlanMatch {
  /** The rule only sees packets of this family (implied by the address fields). */
  readonly family?: IpFamily | undefined
  /** The peer's address (source for ingress, destination for egress) is in this address set. */
  readonly peer?: { readonly field: 'saddr' | 'daddr'; readonly set: string } | undefined
  /** Protocol and destination port are in one of these ranges. */
  readonly ports?: readonly PortRange[] | undefined
  /** Protocol and source port are in one of these ranges. */
  readonly sourcePorts?: readonly PortRange[] | undefined
  /** Destination address, protocol and destination port form an element of this set. */
  readonly destinationPorts?: string | undefined
  /** Anti-spoofing: entered through this interface ... */
  readonly inInterface?: string | undefined
  /** ... with a source address outside these ranges (undefined: any address of `family`). */
  readonly sourceNotIn?: readonly AddressRange[] | undefined
}

export type PlanVerdict = { readonly kind: 'accept' | 'return' | 'drop' } | { readonly kind: 'goto'; readonly chain: string }

export interface PlanRule {
  /** Undefined for a rule that only moves on to another chain: it decides nothing, so it has no counter or log. */
  readonly id: string | undefined
  readonly match: PlanMatch
  readonly verdict: PlanVerdict
}

export interface PlanChain {
  readonly name: string
  readonly comment: string
  readonly rules: readonly PlanRule[]
}

export interface AddressSet {
  readonly name: string
  readonly family: IpFamily
  readonly ranges: readonly AddressRange[]
  readonly comment: string
}

export interface DestinationPortElement {
  readonly address: bigint
  readonly protocol: Protocol
  readonly port: number
}

export interface DestinationPortSet {
  readonly name: string
  readonly family: IpFamily
  readonly elements: readonly DestinationPortElement[]
  readonly comment: string
}

export type NftRuleTier = VerdictTier | 'Failsafe' | 'AntiSpoofing' | 'Conntrack'

/** What one rule id stands for: the attribution of every packet its counter and log record count. */
export interface NftRuleInfo {
  readonly id: string
  readonly tier: NftRuleTier
  /** `allow` (accept or return), `deny` (drop), `pass` (on to the NetworkPolicy tier). */
  readonly action: 'allow' | 'deny' | 'pass'
  readonly direction?: Direction | undefined
  /** The local endpoint whose chain holds the rule. */
  readonly endpoint?: string | undefined
  readonly policyKind?: 'NetworkPolicy' | 'ClusterNetworkPolicy' | undefined
  /** `namespace/name` for a NetworkPolicy, `name` for a ClusterNetworkPolicy. */
  readonly policy?: string | undefined
  /** 0-based index in the policy's ingress or egress list. */
  readonly rule?: number | undefined
  readonly ruleName?: string | undefined
  readonly clusterAction?: ClusterRuleAction | undefined
  /** For an isolation drop: the NetworkPolicies that isolate the endpoint in this direction. */
  readonly isolatedBy?: readonly string[] | undefined
  readonly description: string
}

export interface DispatchEntry {
  readonly address: bigint
  readonly chain: string
}

export interface NftPlan {
  readonly table: string
  readonly logPrefixTag: string
  readonly logGroup: number
  readonly addressSets: readonly AddressSet[]
  readonly destinationPortSets: readonly DestinationPortSet[]
  /** Local endpoint addresses -> their chains, per direction and family. */
  readonly dispatch: { readonly [D in Direction]: { readonly [F in IpFamily]: readonly DispatchEntry[] } }
  /** Rules of the prerouting chain, before connection tracking. */
  readonly antiSpoofing: readonly PlanRule[]
  /** Rule id of the `ct state invalid drop` rules. */
  readonly invalidId: string
  readonly chains: readonly PlanChain[]
  readonly rules: Readonly<Record<string, NftRuleInfo>>
  /** Local endpoints the snapshot does not hold (yet): nothing is enforced for them. */
  readonly skipped: readonly string[]
}

const ANY_PORT_FROM = 0
const ANY_PORT_TO = 65535
const LINK_LOCAL_V6: AddressRange = { lo: 0xfe80n << 112n, hi: (0xfe80n << 112n) + (1n << 118n) - 1n }
const UNSPECIFIED_V6: AddressRange = { lo: 0n, hi: 0n }
const FAMILIES: readonly IpFamily[] = [4, 6]

/** Endpoint addresses the snapshot attributes to their endpoint (an address listed twice belongs to one). */
interface OwnedAddress {
  readonly record: EndpointRecord
  readonly ip: IpAddress
  readonly value: bigint
}

function ownedAddresses(snapshot: PolicySnapshot, record: EndpointRecord): OwnedAddress[] {
  const out: OwnedAddress[] = []
  for (const ip of record.ips) if (snapshot.resolve(formatIp(ip)).record === record) out.push({ record, ip, value: addressValue(ip) })
  return out
}

function compareKeys(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function mergePorts(ports: readonly PortRange[]): PortRange[] {
  const out: PortRange[] = []
  const sorted = [...ports].sort((a, b) => compareKeys(a.protocol, b.protocol) || a.from - b.from || a.to - b.to)
  for (const p of sorted) {
    const last = out[out.length - 1]
    if (last && last.protocol === p.protocol && p.from <= last.to + 1) {
      if (p.to > last.to) out[out.length - 1] = { protocol: p.protocol, from: last.from, to: p.to }
    } else out.push(p)
  }
  return out
}

const toRange = (p: { protocol: 'tcp' | 'udp'; port: number }): PortRange => ({ protocol: p.protocol === 'tcp' ? 'TCP' : 'UDP', from: p.port, to: p.port })

/** Failsafe entries with the same CIDR (or none) share one rule; the unlimited ones come first, then by family and address. */
function failsafeGroups(entries: readonly FailsafeEntry[]): { cidr: Cidr | undefined; ports: PortRange[] }[] {
  const groups = new Map<string, { cidr: Cidr | undefined; ports: PortRange[] }>()
  for (const e of entries) {
    const key = e.cidr === undefined ? '' : formatCidr(e.cidr)
    let g = groups.get(key)
    if (!g) groups.set(key, (g = { cidr: e.cidr, ports: [] }))
    g.ports.push(toRange(e))
  }
  const order = (c: Cidr | undefined): [number, bigint, number] => (c === undefined ? [0, 0n, 0] : [c.family, addressValue(c.network), c.prefix])
  return [...groups.values()]
    .map((g) => ({ cidr: g.cidr, ports: mergePorts(g.ports) }))
    .sort((a, b) => {
      const [fa, va, pa] = order(a.cidr)
      const [fb, vb, pb] = order(b.cidr)
      return fa - fb || (va < vb ? -1 : va > vb ? 1 : 0) || pa - pb
    })
}

/** Builds the plan; see the file comment. */
export function planNftRuleset(snapshot: PolicySnapshot, rawInput: NftRulesetInput): NftPlan {
  return new Planner(snapshot, normalizeNftInput(rawInput)).plan()
}

class Planner {
  private nextId = 1
  private readonly rules: Record<string, NftRuleInfo> = {}
  private readonly addressSets: AddressSet[] = []
  private readonly addressSetByContent = new Map<string, string>()
  private readonly portSets: DestinationPortSet[] = []
  private readonly portSetByContent = new Map<string, string>()
  private readonly chains: PlanChain[] = []
  /** Every endpoint address of the cluster, by namespace index (for selector peers). */
  private readonly addressesByNamespace = new Map<number, OwnedAddress[]>()
  private readonly peerCache = new Map<readonly CompiledPeer[], Map<number, Record<IpFamily, AddressRange[]>>>()

  constructor(
    private readonly snapshot: PolicySnapshot,
    private readonly input: NormalizedInput,
  ) {}

  plan(): NftPlan {
    const invalidId = this.newRule({ tier: 'Conntrack', action: 'deny', description: 'packet conntrack considers invalid' })
    const dispatch = { egress: { 4: [] as DispatchEntry[], 6: [] as DispatchEntry[] }, ingress: { 4: [] as DispatchEntry[], 6: [] as DispatchEntry[] } }
    const antiSpoofing: PlanRule[] = []
    const skipped: string[] = []
    this.input.localEndpoints.forEach((local, n) => {
      const record = this.snapshot.endpoint(local.key)
      if (!record) {
        skipped.push(local.key)
        return
      }
      const base = `ep${n + 1}`
      const owned = ownedAddresses(this.snapshot, record)
      for (const direction of ['egress', 'ingress'] as const) {
        const chain = `${base}-${direction}`
        this.endpointChains(local, record, direction, chain)
        for (const a of owned) dispatch[direction][a.ip.family].push({ address: a.value, chain })
      }
      if (local.hostInterface !== undefined) antiSpoofing.push(...this.antiSpoofRules(local, record, owned))
    })
    for (const d of [dispatch.egress, dispatch.ingress]) for (const f of FAMILIES) d[f].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0))
    return {
      table: this.input.table,
      logPrefixTag: this.input.logPrefixTag,
      logGroup: this.input.logGroup,
      addressSets: this.addressSets,
      destinationPortSets: this.portSets,
      dispatch,
      antiSpoofing,
      invalidId,
      chains: this.chains,
      rules: this.rules,
      skipped,
    }
  }

  private newRule(info: Omit<NftRuleInfo, 'id'>): string {
    const id = String(this.nextId++)
    this.rules[id] = Object.freeze({ id, ...info })
    return id
  }

  private antiSpoofRules(local: NftLocalEndpoint, record: EndpointRecord, owned: readonly OwnedAddress[]): PlanRule[] {
    const id = this.newRule({
      tier: 'AntiSpoofing',
      action: 'deny',
      direction: 'egress',
      endpoint: local.key,
      description: `packet from ${local.hostInterface} whose source is not an address of ${local.key}`,
    })
    return FAMILIES.map((family): PlanRule => {
      const own = owned.filter((a) => a.ip.family === family).map((a) => ({ lo: a.value, hi: a.value }))
      // IPv6 neighbour discovery and duplicate address detection use link-local and unspecified sources.
      const allowed = family === 6 ? mergeRanges([...own, LINK_LOCAL_V6, UNSPECIFIED_V6]) : own
      return { id, match: { family, inInterface: local.hostInterface, sourceNotIn: allowed.length > 0 ? allowed : undefined }, verdict: { kind: 'drop' } }
    })
  }

  private endpointChains(local: NftLocalEndpoint, record: EndpointRecord, direction: Direction, name: string): void {
    const allow: PlanVerdict = { kind: direction === 'egress' ? 'return' : 'accept' }
    const rules: PlanRule[] = []
    const ctx = { local, record, direction }
    if (local.kind === 'host') rules.push(...this.hostExemptions(local, direction, allow))

    const ns = this.snapshot.namespaces[record.nsIndex]!
    const inTier = (tier: 'Admin' | 'Baseline'): CompiledClusterPolicy[] =>
      this.snapshot.clusterPolicies.filter(
        (p) =>
          p.tier === tier &&
          (p.subjectNamespaces.matchesAll || p.subjectNamespaces.matches(ns.labels)) &&
          (p.subjectPods === undefined || p.subjectPods.matches(record.labels)),
      )
    const admin = inTier('Admin')
    const passes = admin.some((p) => p.rules[direction].some((r) => r.action === 'Pass'))
    const npChain = passes ? `${name}-np` : name
    for (const p of admin) {
      for (const r of p.rules[direction]) {
        const verdict: PlanVerdict = r.action === 'Accept' ? allow : r.action === 'Deny' ? { kind: 'drop' } : { kind: 'goto', chain: npChain }
        rules.push(...this.ruleVariants(ctx, r, -1, verdict, this.clusterInfo(ctx, r.action, r.verdict)))
      }
    }
    let rest = rules
    if (passes) {
      rules.push({ id: undefined, match: {}, verdict: { kind: 'goto', chain: npChain } })
      this.chains.push({ name, comment: `${direction} of ${local.key}: ${local.kind === 'host' ? 'failsafe and ' : ''}Admin tier`, rules })
      rest = []
    }
    const isolating = direction === 'ingress' ? record.ingressPolicies : record.egressPolicies
    if (isolating.length > 0) {
      for (const p of isolating) {
        // A NetworkPolicy isolating an endpoint is in the endpoint's namespace.
        for (const r of p.rules[direction]) {
          const info = { ...this.directionInfo(ctx, r.verdict), action: 'allow' as const }
          rest.push(...this.ruleVariants(ctx, r, record.nsIndex, allow, info))
        }
      }
      const names = isolating.map((p) => p.key)
      const id = this.newRule({
        tier: 'NetworkPolicy',
        action: 'deny',
        direction,
        endpoint: local.key,
        policyKind: 'NetworkPolicy',
        policy: names[0],
        isolatedBy: names,
        description: `${local.key} is isolated for ${direction} by ${names.join(', ')} and no rule allows the flow`,
      })
      rest.push({ id, match: {}, verdict: { kind: 'drop' } })
    } else {
      for (const p of inTier('Baseline')) {
        for (const r of p.rules[direction]) {
          const verdict: PlanVerdict = r.action === 'Accept' ? allow : { kind: 'drop' }
          rest.push(...this.ruleVariants(ctx, r, -1, verdict, this.clusterInfo(ctx, r.action, r.verdict)))
        }
      }
      const id = this.newRule({
        tier: 'Default',
        action: 'allow',
        direction,
        endpoint: local.key,
        description: `no policy isolates ${local.key} for ${direction}`,
      })
      rest.push({ id, match: {}, verdict: allow })
    }
    const what = passes ? 'NetworkPolicy and Baseline tiers' : local.kind === 'host' ? 'failsafe and policies' : 'policies'
    this.chains.push({ name: npChain, comment: `${direction} of ${local.key}: ${what}`, rules: rest })
  }

  private hostExemptions(local: NftLocalEndpoint, direction: Direction, allow: PlanVerdict): PlanRule[] {
    const out: PlanRule[] = []
    const fs = direction === 'ingress' ? this.input.failsafe.inbound : this.input.failsafe.outbound
    const which = direction === 'ingress' ? 'inbound' : 'outbound'
    for (const { cidr, ports } of failsafeGroups(fs)) {
      const id = this.newRule({
        tier: 'Failsafe',
        action: 'allow',
        direction,
        endpoint: local.key,
        description: `failsafe ${which} port of host endpoint ${local.key}${cidr === undefined ? '' : ` ${direction === 'ingress' ? 'from' : 'to'} ${formatCidr(cidr)}`}`,
      })
      if (cidr === undefined) {
        out.push({ id, match: { ports }, verdict: allow })
        continue
      }
      // The set's family is the rule's: an IPv4 CIDR never matches an IPv6 packet, nor the other way round.
      const set = this.addressSet(cidr.family, [cidrRange(cidr)], `failsafe ${which} ${formatCidr(cidr)}`)
      out.push({ id, match: { family: cidr.family, peer: { field: direction === 'ingress' ? 'saddr' : 'daddr', set }, ports }, verdict: allow })
    }
    const { overlayUdpPort: overlay, meshTcpPort: mesh } = this.input
    const dports: PortRange[] = []
    if (overlay !== undefined) dports.push({ protocol: 'UDP', from: overlay, to: overlay })
    if (mesh !== undefined) dports.push({ protocol: 'TCP', from: mesh, to: mesh })
    if (dports.length > 0) {
      const id = this.newRule({
        tier: 'Failsafe',
        action: 'allow',
        direction,
        endpoint: local.key,
        description: `flatnet's own overlay${overlay === undefined ? '' : ` (udp ${overlay})`} and mesh${mesh === undefined ? '' : ` (tcp ${mesh})`} traffic of ${local.key}`,
      })
      out.push({ id, match: { ports: mergePorts(dports) }, verdict: allow })
      // WireGuard sends from its listening port to whatever port a peer listens on.
      if (direction === 'egress' && overlay !== undefined) out.push({ id, match: { sourcePorts: [{ protocol: 'UDP', from: overlay, to: overlay }] }, verdict: allow })
    }
    return out
  }

  private directionInfo(ctx: { local: NftLocalEndpoint; direction: Direction }, v: DirectionVerdict): Omit<NftRuleInfo, 'id' | 'action'> {
    return {
      tier: v.tier,
      direction: ctx.direction,
      endpoint: ctx.local.key,
      policyKind: v.policyKind,
      policy: v.policy,
      rule: v.rule,
      ruleName: v.ruleName,
      clusterAction: v.action,
      description: `${v.reason} (${ctx.direction} of ${ctx.local.key})`,
    }
  }

  private clusterInfo(ctx: { local: NftLocalEndpoint; direction: Direction }, action: ClusterRuleAction, v: DirectionVerdict): Omit<NftRuleInfo, 'id'> {
    return { ...this.directionInfo(ctx, v), action: action === 'Accept' ? 'allow' : action === 'Deny' ? 'deny' : 'pass' }
  }

  /**
   * The nft rules one policy rule becomes at one endpoint: one per address family its peers
   * have, and for egress with named ports one more per family for the destination-port set.
   * A rule that can match nothing (no such peers, no such named port) becomes none.
   */
  private ruleVariants(
    ctx: { local: NftLocalEndpoint; record: EndpointRecord; direction: Direction },
    rule: CompiledRule,
    policyNsIndex: number,
    verdict: PlanVerdict,
    info: Omit<NftRuleInfo, 'id'>,
  ): PlanRule[] {
    const { direction, record } = ctx
    let ports: PortRange[] | undefined
    const namedForEgress: { name: string; protocol: Protocol | undefined }[] = []
    if (rule.ports !== undefined && rule.ports.length > 0) {
      const numeric: PortRange[] = []
      for (const p of rule.ports) {
        if (p.name === undefined) {
          const full = p.from <= 1 && p.to >= 65535
          const range = (protocol: Protocol): PortRange => ({ protocol, from: full ? ANY_PORT_FROM : p.from, to: full ? ANY_PORT_TO : p.to })
          if (p.protocol === undefined) numeric.push(range('TCP'), range('UDP'), range('SCTP'))
          else numeric.push(range(p.protocol))
        } else if (direction === 'ingress') {
          // The destination is this endpoint: its named port is a plain port here.
          for (const n of record.namedPorts.get(p.name) ?? []) if (p.protocol === undefined || n.protocol === p.protocol) numeric.push({ protocol: n.protocol, from: n.port, to: n.port })
        } else namedForEgress.push({ name: p.name, protocol: p.protocol })
      }
      ports = mergePorts(numeric)
    }
    const peerField: 'saddr' | 'daddr' = direction === 'ingress' ? 'saddr' : 'daddr'
    const peerRanges = rule.peers.length > 0 ? this.peerRanges(rule.peers, policyNsIndex) : undefined
    const out: Omit<PlanRule, 'id'>[] = []
    const numericUsable = ports === undefined || ports.length > 0
    const comment = this.describeRule(info)
    for (const family of peerRanges ? FAMILIES : [undefined]) {
      const ranges = peerRanges && family !== undefined ? peerRanges[family] : undefined
      if (ranges !== undefined && ranges.length === 0) continue
      const named = namedForEgress.length === 0 ? [] : (family === undefined ? FAMILIES : [family]).map((f) => ({ f, elements: this.destinationPortElements(f, namedForEgress) }))
      const usable = named.filter((n) => n.elements.length > 0)
      if (!numericUsable && usable.length === 0) continue
      const peer = ranges !== undefined && family !== undefined ? { field: peerField, set: this.addressSet(family, ranges, comment) } : undefined
      if (numericUsable) out.push({ match: { family, peer, ports }, verdict })
      for (const n of usable) out.push({ match: { family: n.f, peer, destinationPorts: this.destinationPortSet(n.f, n.elements, comment) }, verdict })
    }
    if (out.length === 0) return []
    const id = this.newRule(info)
    return out.map((r) => ({ id, ...r }))
  }

  private describeRule(info: Omit<NftRuleInfo, 'id'>): string {
    const rule = info.rule === undefined ? '' : ` ${info.direction}[${info.rule}]`
    return `${info.policy ?? info.tier}${rule}`
  }

  private addressSet(family: IpFamily, ranges: readonly AddressRange[], comment: string): string {
    const content = `${family} ${ranges.map((r) => `${r.lo}-${r.hi}`).join(',')}`
    const known = this.addressSetByContent.get(content)
    if (known) return known
    const name = `peers${this.addressSets.length + 1}-v${family}`
    this.addressSets.push({ name, family, ranges, comment })
    this.addressSetByContent.set(content, name)
    return name
  }

  /** The `address . protocol . port` triples of every endpoint having one of these named ports, sorted. */
  private destinationPortElements(family: IpFamily, named: readonly { name: string; protocol: Protocol | undefined }[]): DestinationPortElement[] {
    const elements = new Map<string, DestinationPortElement>()
    for (const ns of this.snapshot.namespaces) {
      for (const a of this.namespaceAddresses(ns.index)) {
        if (a.ip.family !== family) continue
        for (const want of named) {
          for (const n of a.record.namedPorts.get(want.name) ?? []) {
            if (want.protocol === undefined || n.protocol === want.protocol) elements.set(`${a.value}.${n.protocol}.${n.port}`, { address: a.value, protocol: n.protocol, port: n.port })
          }
        }
      }
    }
    return [...elements.values()].sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0) || compareKeys(a.protocol, b.protocol) || a.port - b.port)
  }

  private destinationPortSet(family: IpFamily, elements: readonly DestinationPortElement[], comment: string): string {
    const content = `${family} ${elements.map((e) => `${e.address}.${e.protocol}.${e.port}`).join(',')}`
    const known = this.portSetByContent.get(content)
    if (known) return known
    const name = `dports${this.portSets.length + 1}-v${family}`
    this.portSets.push({ name, family, elements, comment: `named ports of destinations: ${comment}` })
    this.portSetByContent.set(content, name)
    return name
  }

  private namespaceAddresses(nsIndex: number): OwnedAddress[] {
    let list = this.addressesByNamespace.get(nsIndex)
    if (!list) {
      list = []
      for (const key of this.snapshot.namespaces[nsIndex]?.endpoints ?? []) {
        const record = this.snapshot.endpoint(key)
        if (record) list.push(...ownedAddresses(this.snapshot, record))
      }
      this.addressesByNamespace.set(nsIndex, list)
    }
    return list
  }

  /** The addresses a rule's peers match, per family, merged. Peers are ORed, so one set holds them all. */
  private peerRanges(peers: readonly CompiledPeer[], policyNsIndex: number): Record<IpFamily, AddressRange[]> {
    let byNs = this.peerCache.get(peers)
    if (!byNs) this.peerCache.set(peers, (byNs = new Map()))
    const known = byNs.get(policyNsIndex)
    if (known) return known
    const ranges: Record<IpFamily, AddressRange[]> = { 4: [], 6: [] }
    for (const p of peers) {
      switch (p.type) {
        case 'selector':
          for (const ns of this.snapshot.namespaces) {
            if (p.namespaces === undefined ? ns.index !== policyNsIndex : !p.namespaces.matchesAll && !p.namespaces.matches(ns.labels)) continue
            for (const a of this.namespaceAddresses(ns.index)) if (p.pods === undefined || p.pods.matches(a.record.labels)) ranges[a.ip.family].push({ lo: a.value, hi: a.value })
          }
          break
        case 'ipBlock': {
          let rs = [cidrRange(p.cidr)]
          for (const e of p.except) if (e.family === p.cidr.family) rs = subtract(rs, cidrRange(e))
          ranges[p.cidr.family].push(...rs)
          break
        }
        case 'networks':
          for (const c of p.cidrs) ranges[c.family].push(cidrRange(c))
          break
      }
    }
    const merged = { 4: mergeRanges(ranges[4]), 6: mergeRanges(ranges[6]) }
    byNs.set(policyNsIndex, merged)
    return merged
  }
}

// ---------------------------------------------------------------------------------------------
// The verdict the table enforces for a flow, for work that must agree with it (cutting
// conntrack entries after a change).

export interface EnforcedFlow {
  readonly src: IpAddress
  readonly dst: IpAddress
  readonly protocol: Protocol
  readonly srcPort: number
  readonly dstPort: number
}

export interface EnforcedVerdict {
  readonly allowed: boolean
  /** The source's egress verdict, when the source is a local endpoint (else not enforced here). */
  readonly egress?: DirectionVerdict | undefined
  /** The destination's ingress verdict, when the destination is a local endpoint. */
  readonly ingress?: DirectionVerdict | undefined
  /** Why policy does not apply: `not-local`, `loopback`, or a failsafe/protected port. */
  readonly exempt?: string | undefined
}

/**
 * A judge of flows as the table built from the same snapshot and input treats them:
 * `PolicySnapshot.evaluate` for the directions enforced on this node, after the exemptions
 * the table makes (host-to-host traffic over loopback, failsafe and protected ports).
 */
export function enforcedVerdicts(snapshot: PolicySnapshot, rawInput: NftRulesetInput): (flow: EnforcedFlow) => EnforcedVerdict {
  const input = normalizeNftInput(rawInput)
  const local = new Map<string, NftLocalEndpoint>()
  for (const e of input.localEndpoints) {
    const record = snapshot.endpoint(e.key)
    if (record) for (const a of ownedAddresses(snapshot, record)) local.set(formatIp(a.ip), e)
  }
  const entries = (list: readonly FailsafeEntry[]): { range: PortRange; cidr: Cidr | undefined }[] => list.map((e) => ({ range: toRange(e), cidr: e.cidr }))
  const inbound = entries(input.failsafe.inbound)
  const outbound = entries(input.failsafe.outbound)
  const { overlayUdpPort: overlay, meshTcpPort: mesh } = input
  // `peer` is the source for inbound entries and the destination for outbound ones, as in the table.
  const hit = (list: ReturnType<typeof entries>, protocol: Protocol, port: number, peer: IpAddress): boolean =>
    list.some(({ range: r, cidr }) => r.protocol === protocol && port >= r.from && port <= r.to && (cidr === undefined || cidrContains(cidr, peer)))
  const protectedDst = (f: EnforcedFlow): boolean => (f.protocol === 'UDP' && f.dstPort === overlay) || (f.protocol === 'TCP' && f.dstPort === mesh)
  return (f) => {
    const srcText = formatIp(f.src)
    const dstText = formatIp(f.dst)
    const src = local.get(srcText)
    const dst = local.get(dstText)
    if (!src && !dst) return { allowed: true, exempt: 'not-local' }
    if (src?.kind === 'host' && dst?.kind === 'host') return { allowed: true, exempt: 'loopback' }
    const v = snapshot.evaluate(snapshot.resolve(srcText), snapshot.resolve(dstText), f.dstPort, f.protocol)
    let exempt: string | undefined
    let egressOk = true
    if (src) {
      if (src.kind === 'host' && (hit(outbound, f.protocol, f.dstPort, f.dst) || protectedDst(f) || (f.protocol === 'UDP' && f.srcPort === overlay))) exempt = 'failsafe-outbound'
      else egressOk = v.egress.allowed
    }
    let ingressOk = true
    if (dst) {
      if (dst.kind === 'host' && (hit(inbound, f.protocol, f.dstPort, f.src) || protectedDst(f))) exempt ??= 'failsafe-inbound'
      else ingressOk = v.ingress.allowed
    }
    return { allowed: egressOk && ingressOk, egress: src ? v.egress : undefined, ingress: dst ? v.ingress : undefined, exempt }
  }
}
