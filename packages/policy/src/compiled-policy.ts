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
              namespaces: peer.namespaceSelector ? selectors.get(peer.namespaceSelector) : undefined,
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
                ? { protocol: p.protocol, from: 1, to: 65535 }
                : { protocol: p.protocol, from: p.port, to: p.endPort ?? p.port },
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
  }
}

export class CompiledClusterPolicy {
  readonly name: string
  readonly tier: Tier
  readonly priority: number
  readonly subjectNamespaces: Selector
  readonly subjectPods: Selector | undefined
  readonly rules: { readonly ingress: readonly CompiledClusterRule[]; readonly egress: readonly CompiledClusterRule[] }

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
              if ('namespaces' in peer) return { type: 'selector', namespaces: selectors.get(peer.namespaces), pods: undefined }
              return { type: 'selector', namespaces: selectors.get(peer.pods.namespaceSelector), pods: selectors.get(peer.pods.podSelector) }
            }),
          ),
          ports:
            rule.protocols &&
            sharedPorts(
              selectors,
              rule.protocols.map((p) =>
                'namedPort' in p
                  ? { protocol: undefined, from: 0, to: 0, name: p.namedPort }
                  : { protocol: p.protocol, from: p.portRange?.start ?? 1, to: p.portRange?.end ?? 65535 },
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
  }
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
