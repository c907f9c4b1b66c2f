/**
 * The validated, normalised form of every kind flatnet reads. Defaults are filled in here
 * (policyTypes, protocol TCP, namespace "default"), so the compiler never has to guess.
 */
import type { Cidr, Endpoint, Namespace, Protocol, SourcePosition } from '@flatnet/core'

export type SelectorOperator = 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'

export interface LabelSelectorSpec {
  readonly matchLabels: Readonly<Record<string, string>>
  readonly matchExpressions: readonly { readonly key: string; readonly operator: SelectorOperator; readonly values: readonly string[] }[]
}

export type Direction = 'ingress' | 'egress'

/** Where an object came from, for messages. */
export interface Origin extends SourcePosition {
  readonly documentIndex: number
}

export interface IpBlockSpec {
  readonly cidr: Cidr
  readonly except: readonly Cidr[]
  /** As written, for display. */
  readonly text: string
}

export type NetworkPolicyPeerSpec =
  | { readonly ipBlock: IpBlockSpec }
  | { readonly podSelector?: LabelSelectorSpec | undefined; readonly namespaceSelector?: LabelSelectorSpec | undefined }

export interface NetworkPolicyPortSpec {
  readonly protocol: Protocol
  /** Missing: every port of the protocol. A string is a named port of the destination. */
  readonly port?: number | string | undefined
  readonly endPort?: number | undefined
}

export interface NetworkPolicyRuleSpec {
  /** Empty: any peer. */
  readonly peers: readonly NetworkPolicyPeerSpec[]
  /** Empty: any port and protocol. */
  readonly ports: readonly NetworkPolicyPortSpec[]
}

export interface NetworkPolicySpec {
  readonly kind: 'NetworkPolicy'
  readonly namespace: string
  readonly name: string
  readonly podSelector: LabelSelectorSpec
  readonly policyTypes: readonly ('Ingress' | 'Egress')[]
  readonly ingress: readonly NetworkPolicyRuleSpec[]
  readonly egress: readonly NetworkPolicyRuleSpec[]
  readonly origin?: Origin | undefined
  /** The document as written (validated), for `get` and diffs. */
  readonly manifest: unknown
}

export type Tier = 'Admin' | 'Baseline'
export type ClusterRuleAction = 'Accept' | 'Deny' | 'Pass'

/** A set of endpoints: by namespace labels, or by namespace labels AND endpoint labels. */
export type ClusterSelection =
  | { readonly namespaces: LabelSelectorSpec }
  | { readonly pods: { readonly namespaceSelector: LabelSelectorSpec; readonly podSelector: LabelSelectorSpec } }

export type ClusterPeerSpec = ClusterSelection | { readonly networks: readonly Cidr[] }

export type ClusterProtocolSpec =
  | { readonly protocol: Protocol; readonly portRange?: { readonly start: number; readonly end: number } | undefined }
  | { readonly namedPort: string }

export interface ClusterRuleSpec {
  readonly name?: string | undefined
  readonly action: ClusterRuleAction
  readonly peers: readonly ClusterPeerSpec[]
  /** Undefined: any protocol and port. */
  readonly protocols?: readonly ClusterProtocolSpec[] | undefined
}

export interface ClusterNetworkPolicySpec {
  readonly kind: 'ClusterNetworkPolicy'
  readonly name: string
  readonly tier: Tier
  readonly priority: number
  readonly subject: ClusterSelection
  readonly ingress: readonly ClusterRuleSpec[]
  readonly egress: readonly ClusterRuleSpec[]
  readonly origin?: Origin | undefined
  readonly manifest: unknown
}

export type PolicyObject = NetworkPolicySpec | ClusterNetworkPolicySpec

export interface NamespaceObject extends Namespace {
  readonly kind: 'Namespace'
  readonly origin?: Origin | undefined
}

export interface EndpointObject extends Endpoint {
  readonly origin?: Origin | undefined
}

export type InventoryObject = NamespaceObject | EndpointObject

export type FlatnetObject = PolicyObject | InventoryObject

/** Key of a policy in its kind: `namespace/name` for NetworkPolicy, `name` for ClusterNetworkPolicy. */
export function policyKey(p: PolicyObject): string {
  return p.kind === 'NetworkPolicy' ? `${p.namespace}/${p.name}` : p.name
}
