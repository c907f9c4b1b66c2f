/**
 * The inventory kinds: v1 Namespace, v1 Pod, and flatnet.dev/v1alpha1 HostEndpoint.
 *
 * Pods are produced by Kubernetes and carry many fields flatnet has no use for (images,
 * volumes, conditions...), so for Pods only the fields flatnet reads are checked; every other
 * kind rejects unknown fields.
 */
import { checkDns1123Label, checkPortName, ipEquals, labelsFromRecord, NAMESPACE_NAME_LABEL, parseIp, type IpAddress, type NamedPort, type Protocol } from '@flatnet/core'
import { typeName, type FieldReader, type Path } from './field-reader.js'
import type { EndpointObject, NamespaceObject } from './model.js'
import { readMetadata } from './read-common.js'

const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP']

export function readNamespace(r: FieldReader, doc: Record<string, unknown>): NamespaceObject | undefined {
  const before = r.issues.length
  const meta = readMetadata(r, doc.metadata, ['metadata'], 'cluster', checkDns1123Label)
  if (doc.spec != null) r.object(doc.spec, ['spec'], ['finalizers'])
  if (doc.status != null) r.object(doc.status, ['status'], ['phase', 'conditions'])
  if (!meta?.name || r.issues.length > before) return undefined
  // The API server always sets this label to the namespace's name, whatever the document says.
  const labels = labelsFromRecord({ ...meta.labels, [NAMESPACE_NAME_LABEL]: meta.name })
  return { kind: 'Namespace', name: meta.name, labels }
}

function readIpList(r: FieldReader, values: readonly { value: unknown; path: Path }[]): IpAddress[] {
  const ips: IpAddress[] = []
  for (const { value, path } of values) {
    const text = r.string(value, path)
    if (text === undefined) continue
    const ip = parseIp(text)
    if (!ip) r.fail(path, `invalid IP address "${text}": must be an IPv4 address (e.g. 10.0.0.1) or an IPv6 address (e.g. fd00::1), without a prefix length`)
    else if (ips.some((other) => ipEquals(other, ip))) r.fail(path, `IP address "${text}" is listed twice`)
    else ips.push(ip)
  }
  return ips
}

function readNamedPort(r: FieldReader, value: unknown, path: Path, numberField: 'containerPort' | 'port', extra: readonly string[]): NamedPort | 'unnamed' | undefined {
  // Copying a container's ports into a HostEndpoint is the likely way to get this wrong.
  const hints: Record<string, string> = numberField === 'port' ? { containerPort: 'a HostEndpoint port has "port", not "containerPort"' } : {}
  const p = r.object(value, path, ['name', numberField, 'protocol', ...extra], [numberField], hints)
  if (!p) return undefined
  const before = r.issues.length
  const port = p[numberField] == null ? undefined : r.int(p[numberField], [...path, numberField], 1, 65535)
  const protocol = p.protocol == null ? 'TCP' : r.oneOf(p.protocol, [...path, 'protocol'], PROTOCOLS)
  let name: string | undefined
  if (p.name != null) {
    name = r.string(p.name, [...path, 'name'])
    const bad = name === undefined ? undefined : checkPortName(name)
    if (bad) r.fail([...path, 'name'], `invalid port name "${name}": ${bad}`)
  }
  if (r.issues.length > before || port === undefined || !protocol) return undefined
  return name === undefined ? 'unnamed' : { name, port, protocol }
}

function checkDuplicatePortNames(r: FieldReader, ports: readonly { port: NamedPort; path: Path }[]): void {
  const seen = new Set<string>()
  for (const { port, path } of ports) {
    if (seen.has(port.name)) r.fail([...path, 'name'], `port name "${port.name}" is used twice`)
    seen.add(port.name)
  }
}

export function readPod(r: FieldReader, doc: Record<string, unknown>, defaultNamespace: string): EndpointObject | undefined {
  const before = r.issues.length
  const meta = readMetadata(r, doc.metadata, ['metadata'], 'namespaced')
  // Lenient: only the type of spec and status is checked here, not their other fields.
  const asObject = (value: unknown, path: Path): Record<string, unknown> => {
    if (value == null) return {}
    if (typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>
    r.fail(path, `must be an object, got ${typeName(value)}`)
    return {}
  }
  const spec = asObject(doc.spec, ['spec'])
  const status = asObject(doc.status, ['status'])
  const namedPorts: { port: NamedPort; path: Path }[] = []
  for (const group of ['containers', 'initContainers'] as const) {
    if (spec[group] == null) continue
    const containers = r.array(spec[group], ['spec', group])
    containers?.forEach((c, i) => {
      if (c === null || typeof c !== 'object' || Array.isArray(c)) return void r.fail(['spec', group, i], `must be an object, got ${typeName(c)}`)
      const ports = (c as Record<string, unknown>).ports
      if (ports == null) return
      const containerPorts: { port: NamedPort; path: Path }[] = []
      r.array(ports, ['spec', group, i, 'ports'])?.forEach((p, j) => {
        const path = ['spec', group, i, 'ports', j]
        const port = readNamedPort(r, p, path, 'containerPort', ['hostPort', 'hostIP'])
        if (port && port !== 'unnamed') containerPorts.push({ port, path })
      })
      // As the API server: names are unique per container. Two containers may both name a port
      // "metrics"; a policy naming it then means both.
      checkDuplicatePortNames(r, containerPorts)
      namedPorts.push(...containerPorts)
    })
  }
  const ipValues: { value: unknown; path: Path }[] = []
  if (status.podIPs != null) {
    r.array(status.podIPs, ['status', 'podIPs'], { max: 2 })?.forEach((entry, i) => {
      const e = r.object(entry, ['status', 'podIPs', i], ['ip'], ['ip'])
      if (e?.ip != null) ipValues.push({ value: e.ip, path: ['status', 'podIPs', i, 'ip'] })
    })
  } else if (status.podIP != null) ipValues.push({ value: status.podIP, path: ['status', 'podIP'] })
  const ips = readIpList(r, ipValues)
  if (ips.length === 2 && ips[0]?.family === ips[1]?.family) r.fail(['status', 'podIPs'], 'may hold at most one IP of each family')
  const node = typeof spec.nodeName === 'string' ? spec.nodeName : undefined
  if (!meta?.name || r.issues.length > before) return undefined
  return {
    kind: 'Pod',
    namespace: meta.namespace ?? defaultNamespace,
    name: meta.name,
    labels: labelsFromRecord(meta.labels),
    ips,
    namedPorts: namedPorts.map((p) => p.port),
    node,
  }
}

export function readHostEndpoint(r: FieldReader, doc: Record<string, unknown>, defaultNamespace: string): EndpointObject | undefined {
  const before = r.issues.length
  const meta = readMetadata(r, doc.metadata, ['metadata'], 'namespaced')
  const spec = r.object(doc.spec, ['spec'], ['node', 'ips', 'ports'], ['ips'])
  if (!meta || !spec) return undefined
  const node = spec.node == null ? undefined : r.string(spec.node, ['spec', 'node'])
  const rawIps = spec.ips == null ? undefined : r.array(spec.ips, ['spec', 'ips'], { min: 1 })
  const ips = readIpList(r, (rawIps ?? []).map((value, i) => ({ value, path: ['spec', 'ips', i] })))
  const namedPorts: { port: NamedPort; path: Path }[] = []
  if (spec.ports != null) {
    r.array(spec.ports, ['spec', 'ports'])?.forEach((p, i) => {
      const path = ['spec', 'ports', i]
      const port = readNamedPort(r, p, path, 'port', [])
      if (port === 'unnamed') r.fail([...path, 'name'], 'required field is missing')
      else if (port) namedPorts.push({ port, path })
    })
  }
  checkDuplicatePortNames(r, namedPorts)
  if (!meta.name || r.issues.length > before) return undefined
  return {
    kind: 'HostEndpoint',
    namespace: meta.namespace ?? defaultNamespace,
    name: meta.name,
    labels: labelsFromRecord(meta.labels),
    ips,
    namedPorts: namedPorts.map((p) => p.port),
    node,
  }
}
