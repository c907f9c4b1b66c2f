/**
 * What a lab is, read from its state: for `lab up` to print, and as policy inventory
 * (Namespaces and endpoints with their real addresses) for `policy eval` against the lab or for
 * registering the endpoints in the store.
 */
import { labelsFromRecord, parseIp, type IpAddress } from '@flatnet/core'
import type { EndpointObject, NamespaceObject } from '@flatnet/policy'
import type { EndpointRecord, HostRecord, LabStateData } from './state.js'
import type { LabNamespace } from './topology.js'

export interface LabInfo {
  readonly id: string
  readonly stateDir: string
  readonly phase: LabStateData['phase']
  readonly topologyFile: string
  readonly underlay: LabStateData['underlay']
  readonly namespaces: readonly LabNamespace[]
  readonly hosts: readonly HostRecord[]
  readonly endpoints: readonly EndpointRecord[]
  readonly env: Readonly<Record<string, string>>
}

export function labInfo(d: LabStateData): LabInfo {
  return {
    id: d.id,
    stateDir: d.stateDir,
    phase: d.phase,
    topologyFile: d.topologyFile,
    underlay: d.underlay,
    namespaces: d.namespaces,
    hosts: d.hosts,
    endpoints: d.endpoints,
    env: d.env,
  }
}

/** The lab's Namespaces and endpoints, as `policy` reads them from inventory files. */
export function labInventory(info: Pick<LabInfo, 'namespaces' | 'endpoints'>): { namespaces: NamespaceObject[]; endpoints: EndpointObject[] } {
  return {
    namespaces: info.namespaces.map((n) => ({ kind: 'Namespace', name: n.name, labels: labelsFromRecord(n.labels) })),
    endpoints: info.endpoints.map((e) => ({
      kind: e.kind,
      namespace: e.namespace,
      name: e.name,
      labels: labelsFromRecord(e.labels),
      ips: e.addresses.map((a) => parseIp(a)).filter((ip): ip is IpAddress => ip !== undefined),
      namedPorts: e.ports,
      node: e.host,
    })),
  }
}

function table(rows: readonly (readonly string[])[]): string[] {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)))
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  '))
}

/** The text `lab up` prints: hosts, endpoints, addresses, and how to go on. */
export function formatLabSummary(info: LabInfo): string {
  const lines: string[] = [`lab ${info.id} is ${info.phase} (topology ${info.topologyFile}, state ${info.stateDir})`, '']
  lines.push(`underlay ${info.underlay.cidr} in ${info.underlay.netns}`, '')
  lines.push(
    ...table([
      ['HOST', 'KIND', 'UNDERLAY', 'NETNS', 'ENDPOINT'],
      ...info.hosts.map((h) => [h.name, h.kind, h.underlayAddress, h.netns, h.endpoint]),
    ]),
  )
  lines.push('')
  lines.push(
    ...table([
      ['ENDPOINT', 'KIND', 'HOST', 'ADDRESSES', 'PORTS'],
      ...info.endpoints.map((e) => [e.key, e.kind, e.host, e.addresses.join(',') || '-', e.ports.map((p) => `${p.name}:${p.port}/${p.protocol}`).join(' ') || '-']),
    ]),
  )
  const first = info.endpoints.find((e) => e.role === 'workload') ?? info.endpoints[0]
  const target = info.endpoints.find((e) => e !== first && e.ports.length > 0)
  lines.push('', 'try it:')
  lines.push('  eval "$(flatnet lab env)"                       # point flatnet at the lab\'s store')
  lines.push('  flatnet lab probe --output json                # every endpoint to every served port, measured')
  if (first && target) {
    const port = target.ports[0]!
    lines.push(`  ip netns exec ${first.netns} bash             # a shell inside ${first.key}`)
    lines.push(`  flatnet policy apply -f my-policy.yaml; flatnet policy explain --from ${first.key} --to ${target.key} --port ${port.port}/${port.protocol}`)
  }
  lines.push('  flatnet lab down                               # remove everything')
  return lines.join('\n')
}
