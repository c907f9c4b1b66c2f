/**
 * The endpoints this agent publishes for its host: the host itself (a HostEndpoint in the
 * namespace and with the labels the configuration gives) and the extra workloads the
 * configuration declares. Stored in the same normalised form `flatnet policy apply` stores.
 */
import type { AgentConfig, AgentWorkloadConfig } from './config/types.js'

const ports = (list: readonly { name: string; port: number; protocol: string }[]): { name: string; port: number; protocol: string }[] =>
  list.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol }))

export function hostEndpointManifest(c: AgentConfig, hostAddress: string): Record<string, unknown> {
  const h = c.hostEndpoint
  return {
    apiVersion: 'flatnet.dev/v1alpha1',
    kind: 'HostEndpoint',
    metadata: { name: h.name, namespace: h.namespace, labels: { ...h.labels } },
    spec: { node: c.nodeName, ips: [hostAddress], ports: ports(h.ports) },
  }
}

export function configWorkloadManifest(w: AgentWorkloadConfig, nodeName: string): Record<string, unknown> {
  return {
    apiVersion: 'flatnet.dev/v1alpha1',
    kind: 'HostEndpoint',
    metadata: { name: w.name, namespace: w.namespace, labels: { ...w.labels } },
    spec: { node: nodeName, ips: [...w.ips], ports: ports(w.ports) },
  }
}
