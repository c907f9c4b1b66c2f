import type { IpAddress } from './ip.js'
import type { Labels } from './labels.js'

export type Protocol = 'TCP' | 'UDP' | 'SCTP'
export const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP']

export function isProtocol(value: unknown): value is Protocol {
  return value === 'TCP' || value === 'UDP' || value === 'SCTP'
}

/** A named port of a workload: what a NetworkPolicy's named `port` resolves to. */
export interface NamedPort {
  readonly name: string
  readonly port: number
  readonly protocol: Protocol
}

/** Pods come from Kubernetes; HostEndpoints are a VM's or bare-metal host's workloads. */
export type EndpointKind = 'Pod' | 'HostEndpoint'

/**
 * A workload endpoint: the one kind of identity every workload has, wherever it runs.
 * Policy selects endpoints by namespace labels and endpoint labels, never by kind.
 */
export interface Endpoint {
  readonly kind: EndpointKind
  readonly namespace: string
  readonly name: string
  readonly labels: Labels
  readonly ips: readonly IpAddress[]
  readonly namedPorts: readonly NamedPort[]
  /** The node the endpoint runs on, when known. */
  readonly node?: string | undefined
}

export interface Namespace {
  readonly name: string
  /** Includes kubernetes.io/metadata.name, which always names the namespace. */
  readonly labels: Labels
}

/** `namespace/name`: the key of an endpoint in flows, the CLI and the store. */
export function endpointKey(ep: { readonly namespace: string; readonly name: string }): string {
  return `${ep.namespace}/${ep.name}`
}

export const DEFAULT_TRUST_DOMAIN = 'cluster.local'

/** The string form of an endpoint's identity in logs and the CLI. */
export function spiffeId(ep: { readonly namespace: string; readonly name: string }, trustDomain = DEFAULT_TRUST_DOMAIN): string {
  return `spiffe://${trustDomain}/ns/${ep.namespace}/ep/${ep.name}`
}
