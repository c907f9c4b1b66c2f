/**
 * Policies compiled for lookups: selectors compiled and shared, ports as ranges, and the
 * verdict each rule yields built once here, so that a lookup allocates nothing for it.
 */
import type { Cidr, IpAddress, Protocol } from '@flatnet/core'
import type { ClusterNetworkPolicySpec, ClusterRuleAction, Direction, NetworkPolicySpec, Tier } from './model.js'
import { policyKey } from './model.js'
import type { Selector, SelectorCache } from './selector.js'

/** Which tier decided a direction. `Default` means no policy had a say. */
export type VerdictTier = Tier | 'NetworkPolicy' | 'Default'

/** The decision for one direction of a flow (egress of the source, ingress of the destination). */
export interface DirectionVerdict {
  readonly direction: Direction
  readonly allowed: boolean
  readonly tier: VerdictTier
  readonly policyKind?: 'NetworkPolicy' | 'ClusterNetworkPolicy' | undefined
  /** `namespace/name` for a NetworkPolicy, `name` for a ClusterNetworkPolicy. */
  readonly policy?: string | undefined
  /** 0-based index of the rule in the policy's ingress or egress list. */
  readonly rule?: number | undefined
  readonly ruleName?: string | undefined
  readonly action?: ClusterRuleAction | undefined
  /** Why, in a few words. */
  readonly reason: string
  /** For a NetworkPolicy deny: the policies that isolate the endpoint in this direction. */
  readonly isolatedBy?: readonly string[] | undefined
}

export interface CompiledPort {
  /** Undefined: any protocol (a ClusterNetworkPolicy destinationNamedPort). */
  readonly protocol: Protocol | undefined
  readonly from: number
  readonly to: number
  /** A named port, resolved on the destination endpoint at lookup time. */
  readonly name?: string | undefined
}

export type CompiledPeer =
  | { readonly type: 'ipBlock'; readonly cidr: Cidr; readonly except: readonly Cidr[] }
  /** `namespaces` undefined: the policy's own namespace only. `pods` undefined: every endpoint. */
  | { readonly type: 'selector'; readonly namespaces: Selector | undefined; readonly pods: Selector | undefined }
  | { readonly type: 'networks'; readonly cidrs: readonly Cidr[] }

export interface CompiledRule {
  readonly index: number
  /** Empty: any peer. */
  readonly peers: readonly CompiledPeer[]
  /** Undefined or empty: any port and protocol. */
  readonly ports: readonly CompiledPort[] | undefined
  readonly verdict: DirectionVerdict
}

export interface CompiledClusterRule extends CompiledRule {
  readonly action: ClusterRuleAction
}

export class CompiledNetworkPolicy {
  readonly key: string
  readonly podSelector: Selector
  readonly isolates: { readonly ingress: boolean; readonly egress: boolean }
  readonly rules: { readonly ingress: readonly CompiledRule[]; readonly egress: readonly CompiledRule[] }
  /** `rules` encoded for rule programs (see `ruleProgram`), per direction. */
  readonly ruleCode: { readonly ingress: Int32Array; readonly egress: Int32Array }

  constructor(
    readonly spec: NetworkPolicySpec,
    selectors: SelectorCache,
  ) {
    this.key = policyKey(spec)
    this.podSelector = selectors.get(spec.podSelector)
    this.isolates = { ingress: spec.policyTypes.includes('Ingress'), egress: spec.policyTypes.includes('Egress') }
    const compile = (direction: Direction): CompiledRule[] =>
      spec[direction].map((rule, index) => ({
        index,
        peers: sharedPeers(
          selectors,
          rule.peers.map((peer): CompiledPeer => {
            if ('ipBlock' in peer) return { type: 'ipBlock', cidr: peer.ipBlock.cidr, except: peer.ipBlock.except }
            return {
              type: 'selector',
              namespaces: peer.namespaceSelector ? selectors.forNamespaces(peer.namespaceSelector) : undefined,
              pods: peer.podSelector ? selectors.get(peer.podSelector) : undefined,
            }
          }),
        ),
        ports: sharedPorts(
          selectors,
          rule.ports.map((p) =>
            typeof p.port === 'string'
              ? { protocol: p.protocol, from: 0, to: 0, name: p.port }
              : p.port === undefined
                ? { protocol: p.protocol, from: 1, to: 65535, name: undefined }
                : { protocol: p.protocol, from: p.port, to: p.endPort ?? p.port, name: undefined },
          ),
        ),
        verdict: Object.freeze({
          direction,
          allowed: true,
          tier: 'NetworkPolicy' as const,
          policyKind: 'NetworkPolicy' as const,
          policy: this.key,
          rule: index,
          reason: `allowed by ${direction} rule ${index} of NetworkPolicy ${this.key}`,
        }),
      }))
    this.rules = { ingress: compile('ingress'), egress: compile('egress') }
    this.ruleCode = { ingress: encodeRules(this.rules.ingress, undefined, selectors), egress: encodeRules(this.rules.egress, undefined, selectors) }
  }
}

export class CompiledClusterPolicy {
  readonly name: string
  readonly tier: Tier
  readonly priority: number
  readonly subjectNamespaces: Selector
  readonly subjectPods: Selector | undefined
  readonly rules: { readonly ingress: readonly CompiledClusterRule[]; readonly egress: readonly CompiledClusterRule[] }
  /** `rules` encoded for rule programs (see `ruleProgram`), per direction, with the pods subject. */
  readonly ruleCode: { readonly ingress: Int32Array; readonly egress: Int32Array }

  constructor(
    readonly spec: ClusterNetworkPolicySpec,
    selectors: SelectorCache,
  ) {
    this.name = spec.name
    this.tier = spec.tier
    this.priority = spec.priority
    const s = spec.subject
    this.subjectNamespaces = selectors.get('namespaces' in s ? s.namespaces : s.pods.namespaceSelector)
    this.subjectPods = 'pods' in s ? selectors.get(s.pods.podSelector) : undefined
    const compile = (direction: Direction): CompiledClusterRule[] =>
      spec[direction].map((rule, index) => {
        const label = rule.name ? ` "${rule.name}"` : ''
        const verb = rule.action === 'Accept' ? 'accepted' : rule.action === 'Deny' ? 'denied' : 'passed to the next tier'
        return {
          index,
          action: rule.action,
          peers: sharedPeers(
            selectors,
            rule.peers.map((peer): CompiledPeer => {
              if ('networks' in peer) return { type: 'networks', cidrs: peer.networks }
              if ('namespaces' in peer) return { type: 'selector', namespaces: selectors.forNamespaces(peer.namespaces), pods: undefined }
              return { type: 'selector', namespaces: selectors.forNamespaces(peer.pods.namespaceSelector), pods: selectors.get(peer.pods.podSelector) }
            }),
          ),
          ports:
            rule.protocols &&
            sharedPorts(
              selectors,
              rule.protocols.map((p) =>
                'namedPort' in p
                  ? { protocol: undefined, from: 0, to: 0, name: p.namedPort }
                  : { protocol: p.protocol, from: p.portRange?.start ?? 1, to: p.portRange?.end ?? 65535, name: undefined },
              ),
            ),
          verdict: Object.freeze({
            direction,
            allowed: rule.action === 'Accept',
            tier: spec.tier,
            policyKind: 'ClusterNetworkPolicy' as const,
            policy: spec.name,
            rule: index,
            ruleName: rule.name,
            action: rule.action,
            reason: `${verb} by ${direction} rule ${index}${label} of ${spec.tier}-tier ClusterNetworkPolicy ${spec.name} (priority ${spec.priority})`,
          }),
        }
      })
    this.rules = { ingress: compile('ingress'), egress: compile('egress') }
    this.ruleCode = { ingress: encodeRules(this.rules.ingress, this.subjectPods, selectors), egress: encodeRules(this.rules.egress, this.subjectPods, selectors) }
  }
}

/**
 * The rules of a list of cluster policies for one direction, in evaluation order, and the same
 * as one rule program: what a lookup walks, so that policies without rules in the direction
 * cost nothing. The program is put together from the policies' own codes (`ruleCode`), which
 * carry each policy's pods subject.
 */
export interface ClusterRuleWalk {
  readonly rules: readonly CompiledClusterRule[]
  /** `rules` as a rule program (see `ruleProgram`); a match's index is one into `rules`. */
  readonly program: Int32Array
}

export const EMPTY_PROGRAM = new Int32Array(1)
export const EMPTY_WALK: ClusterRuleWalk = Object.freeze({ rules: Object.freeze([]), program: EMPTY_PROGRAM })

/** The walk of `policies` for `direction`. */
export function clusterRuleWalk(policies: readonly CompiledClusterPolicy[], direction: Direction): ClusterRuleWalk {
  const rules = policies.flatMap((p) => p.rules[direction])
  if (rules.length === 0) return EMPTY_WALK
  return Object.freeze({ rules: Object.freeze(rules), program: ruleProgram(policies.map((p) => p.ruleCode[direction])) })
}

/*
 * Rule programs. The rules a lookup walks for one endpoint (or one namespace's cluster tier)
 * are laid out as one Int32Array. Walking objects (rule, its port and peer lists, each peer,
 * each CIDR) costs a dependent memory access per object, and at cluster scale most of those
 * miss the CPU caches: there are as many rule lists as namespaces times apps. A program is one
 * block that the CPU fetches in a line or two. Selectors and port names are referred to by id
 * (SelectorCache.byId, SelectorCache.names); there are few of them, so they stay cached.
 *
 *   program  [ruleCount, rule...]
 *   rule     [size, subjectPods, portCount, port..., peerCount, peer...]
 *              size: ints in this rule, size included; subjectPods: selector id, -1 none
 *              portCount 0: any port; peerCount 0: any peer
 *   port     [protocol, from, to, name]   protocol: PROTOCOL_CODE, 0 any; name: name id, -1 none
 *   peer     [kind, size, ...]
 *              PEER_OWN_NAMESPACE  [0, 3, pods]               pods: selector id, -1 every endpoint
 *              PEER_NAMESPACES     [1, 4, namespaces, pods]   namespaces: namespace selector slot
 *                                                             (SelectorCache.namespaceSlot), -1 every namespace
 *              PEER_ADDRESSES      [2, size, in4, out4, in6, out6, v4..., v6...]
 *                                  v4: network, mask (int32) per IPv4 CIDR, the `in` ones first
 *                                  v6: 4 network words, 4 mask words per IPv6 CIDR, likewise
 *                                  matches an address in some `in` CIDR and in no `out` one
 */
export const PEER_OWN_NAMESPACE = 0
export const PEER_NAMESPACES = 1
export const PEER_ADDRESSES = 2
export const PROTOCOL_CODE: Readonly<Record<Protocol, number>> = Object.freeze({ TCP: 1, UDP: 2, SCTP: 3 })

function selectorId(s: Selector | undefined): number {
  if (s === undefined || s.matchesAll) return -1
  if (s.id < 0) throw new Error(`selector ${s.text} has no id: it was not made by the compiler's SelectorCache`)
  return s.id
}

function pushCidrs(out: number[], cidrs: readonly Cidr[], family: 4 | 6): void {
  for (const c of cidrs) {
    if (c.family !== family) continue
    if (family === 4) {
      const mask = c.prefix === 0 ? 0 : -1 << (32 - c.prefix)
      out.push((c.network.words[0] & mask) | 0, mask)
      continue
    }
    const masks: number[] = []
    for (let w = 0; w < 4; w++) {
      const bits = Math.min(32, Math.max(0, c.prefix - 32 * w))
      const mask = bits === 0 ? 0 : -1 << (32 - bits)
      masks.push(mask)
      out.push(((c.network.words[w] as number) & mask) | 0)
    }
    out.push(...masks)
  }
}

function pushAddresses(out: number[], include: readonly Cidr[], except: readonly Cidr[]): void {
  const count = (list: readonly Cidr[], family: 4 | 6): number => list.filter((c) => c.family === family).length
  const body: number[] = [count(include, 4), count(except, 4), count(include, 6), count(except, 6)]
  pushCidrs(body, include, 4)
  pushCidrs(body, except, 4)
  pushCidrs(body, include, 6)
  pushCidrs(body, except, 6)
  out.push(PEER_ADDRESSES, body.length + 2, ...body)
}

/**
 * One policy's rules of one direction, encoded as the `rule` entries of a rule program, each
 * with `subjectPods` (the pod selector of a cluster policy's pods subject). Policies keep theirs,
 * so a program is assembled from its policies' codes without encoding anything again.
 */
export function encodeRules(rules: readonly CompiledRule[], subjectPods: Selector | undefined, ids: SelectorCache): Int32Array {
  const out: number[] = []
  const subject = selectorId(subjectPods)
  for (const rule of rules) {
    const start = out.length
    out.push(0, subject)
    const ports = rule.ports ?? []
    out.push(ports.length)
    for (const p of ports) out.push(p.protocol === undefined ? 0 : PROTOCOL_CODE[p.protocol], p.from, p.to, p.name === undefined ? -1 : ids.nameId(p.name))
    out.push(rule.peers.length)
    for (const p of rule.peers) {
      if (p.type === 'selector') {
        if (p.namespaces === undefined) out.push(PEER_OWN_NAMESPACE, 3, selectorId(p.pods))
        else out.push(PEER_NAMESPACES, 4, p.namespaces.matchesAll ? -1 : ids.namespaceSlot(p.namespaces), selectorId(p.pods))
      } else if (p.type === 'ipBlock') pushAddresses(out, [p.cidr], p.except)
      else pushAddresses(out, p.cidrs, [])
    }
    out[start] = out.length - start
  }
  return Int32Array.from(out)
}

/** The rule program of some policies' rules in order, from their `ruleCode`s. */
export function ruleProgram(codes: readonly Int32Array[]): Int32Array {
  let length = 1
  for (const c of codes) length += c.length
  const program = new Int32Array(length)
  let at = 1
  let rules = 0
  for (const c of codes) {
    program.set(c, at)
    // Count the rules: each starts with its size.
    for (let i = 0; i < c.length; i += c[i] as number) rules++
    at += c.length
  }
  program[0] = rules
  return program
}

/** Cluster policies in evaluation order: priority, then name (the API leaves ties to us). */
export function compareClusterPolicies(a: CompiledClusterPolicy, b: CompiledClusterPolicy): number {
  return a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
}

// Policies repeat the same port and peer lists; one shared array each keeps lookups that reach
// them through different policies on the same cache lines.
function cidrKey(c: Cidr): string {
  return `${c.network.words.join('.')}/${c.prefix}:${c.family}`
}

function sharedPorts(selectors: SelectorCache, ports: CompiledPort[]): readonly CompiledPort[] {
  const key = `ports\0${ports.map((p) => `${p.protocol ?? '*'} ${p.from}-${p.to} ${p.name ?? ''}`).join('\0')}`
  return selectors.share(key, () => Object.freeze(ports))
}

function sharedPeers(selectors: SelectorCache, peers: CompiledPeer[]): readonly CompiledPeer[] {
  const key = `peers\0${peers
    .map((p) => {
      switch (p.type) {
        case 'ipBlock':
          return `ipBlock ${cidrKey(p.cidr)} ${p.except.map(cidrKey).join(' ')}`
        case 'networks':
          return `networks ${p.cidrs.map(cidrKey).join(' ')}`
        case 'selector':
          // An absent namespace selector (own namespace) must not look like any selector's text.
          return `selector ${p.namespaces ? p.namespaces.text : '\u0001'} ${p.pods ? p.pods.text : '\u0001'}`
      }
    })
    .join('\0')}`
  return selectors.share(key, () => Object.freeze(peers))
}

export function ipInBlock(ip: IpAddress, cidr: Cidr, except: readonly Cidr[]): boolean {
  if (!inCidr(cidr, ip)) return false
  for (let i = 0; i < except.length; i++) if (inCidr(except[i] as Cidr, ip)) return false
  return true
}

/** cidrContains, with the masks computed in line: this runs per ipBlock peer per lookup. */
function inCidr(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false
  const n = cidr.network.words
  const a = ip.words
  let bits = cidr.prefix
  for (let i = 0; bits > 0; i++, bits -= 32) {
    const mask = bits >= 32 ? -1 : ~(-1 >>> bits)
    if (((a[i] as number) & mask) !== ((n[i] as number) & mask)) return false
  }
  return true
}
