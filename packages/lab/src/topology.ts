/**
 * The lab topology: hosts joined by an underlay, workloads on those hosts, namespace labels.
 * Read from a YAML file with the policy package's position-aware reader, so every problem is
 * reported as `file:line:column: field.path: what is wrong`, all of them at once.
 *
 * readTopology() is pure (text in, frozen Topology out); loadTopology() reads the file.
 */
import { readFile } from 'node:fs/promises'
import { checkDns1123Label, checkLabelKey, checkLabelValue, checkPortName, InputReadError, NAMESPACE_NAME_LABEL, parseCidr, ValidationError, type ValidationIssue } from '@flatnet/core'
import { FieldReader, parseSource, quoted, type Path } from '@flatnet/policy'
import { DEFAULT_TOPOLOGY_FILE, DEFAULT_TOPOLOGY_YAML } from './default-topology.js'

export const TOPOLOGY_API_VERSION = 'flatnet.dev/v1alpha1'
export const TOPOLOGY_KIND = 'LabTopology'

export const HOST_KINDS = ['vm', 'baremetal', 'k8s-node'] as const
export type HostKind = (typeof HOST_KINDS)[number]

export type LabProtocol = 'TCP' | 'UDP'

export const TOPOLOGY_DEFAULTS = Object.freeze({
  underlayCidr: '192.168.77.0/24',
  underlayMtu: 1500,
})

/** Host names that would collide with the lab's own namespace names. */
const RESERVED_HOST_NAMES: readonly string[] = ['ul']
const MAX_HOSTS = 64
const MAX_WORKLOADS = 512

export interface LabPort {
  readonly name: string
  readonly port: number
  readonly protocol: LabProtocol
}

export interface LabNamespace {
  readonly name: string
  /** As declared, plus kubernetes.io/metadata.name (which always names the namespace). */
  readonly labels: Readonly<Record<string, string>>
}

/** A host: a network namespace on the underlay, and an endpoint (namespace/name) of its own. */
export interface LabHost {
  readonly name: string
  readonly kind: HostKind
  /** The namespace of the host's endpoint; the endpoint is named like the host. */
  readonly namespace: string
  readonly labels: Readonly<Record<string, string>>
  readonly ports: readonly LabPort[]
}

export interface LabWorkload {
  readonly namespace: string
  readonly name: string
  readonly host: string
  readonly labels: Readonly<Record<string, string>>
  readonly ports: readonly LabPort[]
}

export interface Topology {
  /** The file it was read from, or `<default>` for the embedded topology. */
  readonly file: string
  readonly underlay: { readonly cidr: string; readonly mtu: number }
  readonly namespaces: readonly LabNamespace[]
  readonly hosts: readonly LabHost[]
  readonly workloads: readonly LabWorkload[]
}

function checkName(r: FieldReader, value: unknown, path: Path, what: string): string | undefined {
  const text = r.string(value, path)
  if (text === undefined) return undefined
  const bad = checkDns1123Label(text)
  return bad ? r.fail(path, `invalid ${what} ${quoted(text)}: ${bad}`) : text
}

function readLabels(r: FieldReader, value: unknown, path: Path): Record<string, string> | undefined {
  if (value == null) return {}
  return r.stringMap(value, path, checkLabelKey, checkLabelValue)
}

function readPorts(r: FieldReader, value: unknown, path: Path): LabPort[] | undefined {
  if (value == null) return []
  const list = r.array(value, path)
  if (!list) return undefined
  const ports: LabPort[] = []
  const names = new Map<string, number>()
  const numbers = new Map<string, number>()
  let ok = true
  list.forEach((item, i) => {
    const p = [...path, i]
    const o = r.object(item, p, ['name', 'port', 'protocol'], ['name', 'port'])
    if (!o) return void (ok = false)
    const before = r.issues.length
    let name: string | undefined
    if (o.name != null) {
      name = r.string(o.name, [...p, 'name'])
      const bad = name === undefined ? undefined : checkPortName(name)
      if (bad) r.fail([...p, 'name'], `invalid port name ${quoted(name ?? '')}: ${bad}`)
    }
    const port = o.port == null ? undefined : r.int(o.port, [...p, 'port'], 1, 65535)
    let protocol: LabProtocol | undefined = 'TCP'
    if (o.protocol != null) {
      if (o.protocol === 'SCTP') protocol = r.fail([...p, 'protocol'], 'SCTP is not served in the lab; use TCP or UDP')
      else protocol = r.oneOf(o.protocol, [...p, 'protocol'], ['TCP', 'UDP'] as const)
    }
    if (r.issues.length > before || name === undefined || port === undefined || protocol === undefined) return void (ok = false)
    const sameName = names.get(name)
    const slot = `${port}/${protocol}`
    const sameNumber = numbers.get(slot)
    if (sameName !== undefined) r.fail([...p, 'name'], `port name "${name}" is used twice (also ${formatIndex(path, sameName)})`)
    else if (sameNumber !== undefined) r.fail([...p, 'port'], `port ${slot} is declared twice (also ${formatIndex(path, sameNumber)})`)
    if (sameName !== undefined || sameNumber !== undefined) return void (ok = false)
    names.set(name, i)
    numbers.set(slot, i)
    ports.push({ name, port, protocol })
  })
  return ok ? ports : undefined
}

function formatIndex(path: Path, i: number): string {
  const last = path[path.length - 1]
  return `${String(last)}[${i}]`
}

/** Checks and normalises one topology document. Pure: the caller reads the file. */
export function readTopology(file: string, text: string): Topology {
  const parsed = parseSource(file, text)
  const issues: ValidationIssue[] = [...parsed.issues]
  if (parsed.documents.length > 1) {
    const second = parsed.documents[1]!
    issues.push({ ...second.locate([]), path: '', message: 'a topology file holds one document; remove the others or the "---" separators' })
  }
  if (parsed.documents.length === 0 && issues.length === 0) issues.push({ file, line: 0, column: 0, path: '', message: 'the file holds no topology' })
  const doc = parsed.documents[0]
  if (issues.length > 0 || !doc) throw new ValidationError(issues)
  const r = new FieldReader(doc, issues)
  const topology = readDocument(r, file)
  if (issues.length > 0 || !topology) throw new ValidationError(issues)
  return topology
}

function readDocument(r: FieldReader, file: string): Topology | undefined {
  const top = r.object(r.doc.value, [], ['apiVersion', 'kind', 'underlay', 'namespaces', 'hosts', 'workloads'], ['apiVersion', 'kind', 'namespaces', 'hosts'])
  if (!top) return undefined
  if (top.apiVersion != null && top.apiVersion !== TOPOLOGY_API_VERSION) r.fail(['apiVersion'], `must be "${TOPOLOGY_API_VERSION}", got ${JSON.stringify(top.apiVersion)}`)
  if (top.kind != null && top.kind !== TOPOLOGY_KIND) r.fail(['kind'], `must be "${TOPOLOGY_KIND}", got ${JSON.stringify(top.kind)}`)

  let underlay: { cidr: string; mtu: number } = { cidr: TOPOLOGY_DEFAULTS.underlayCidr, mtu: TOPOLOGY_DEFAULTS.underlayMtu }
  let underlayRoom = 254
  if (top.underlay != null) {
    const u = r.object(top.underlay, ['underlay'], ['cidr', 'mtu'])
    if (u?.cidr != null) {
      const text = r.string(u.cidr, ['underlay', 'cidr'])
      const cidr = text === undefined ? undefined : parseCidr(text)
      if (text !== undefined && (!cidr || cidr.family !== 4 || cidr.prefix < 8 || cidr.prefix > 29)) {
        r.fail(['underlay', 'cidr'], `invalid underlay ${quoted(text)}: must be an IPv4 network from /8 to /29, e.g. 192.168.77.0/24`)
      } else if (text !== undefined && cidr) {
        underlay = { ...underlay, cidr: text }
        underlayRoom = 2 ** (32 - cidr.prefix) - 2
      }
    }
    if (u?.mtu != null) {
      const mtu = r.int(u.mtu, ['underlay', 'mtu'], 1280, 9000)
      if (mtu !== undefined) underlay = { ...underlay, mtu }
    }
  }

  const namespaces: LabNamespace[] = []
  if (top.namespaces != null) {
    const map = top.namespaces
    if (typeof map !== 'object' || Array.isArray(map)) {
      r.fail(['namespaces'], `must be a map of namespace names to {labels}, e.g. "x: {labels: {ns: x}}"`)
    } else {
      for (const [name, value] of Object.entries(map as Record<string, unknown>)) {
        const bad = checkDns1123Label(name)
        if (bad) {
          r.fail(['namespaces', name], `invalid namespace name ${quoted(name)}: ${bad}`, 'key')
          continue
        }
        const o = value == null ? {} : r.object(value, ['namespaces', name], ['labels'])
        if (!o) continue
        const labels = readLabels(r, o.labels, ['namespaces', name, 'labels'])
        if (labels) namespaces.push({ name, labels: Object.freeze({ ...labels, [NAMESPACE_NAME_LABEL]: name }) })
      }
      if (Object.keys(map).length === 0) r.fail(['namespaces'], 'must declare at least one namespace')
    }
  }
  const declared = new Set(Object.keys(typeof top.namespaces === 'object' && top.namespaces !== null ? top.namespaces : {}))
  const checkNamespace = (value: unknown, path: Path): string | undefined => {
    const ns = checkName(r, value, path, 'namespace')
    if (ns !== undefined && !declared.has(ns)) return r.fail(path, `namespace "${ns}" is not declared under namespaces`)
    return ns
  }

  /** Endpoint keys (namespace/name) and where they were declared, to catch doubles. */
  const keys = new Map<string, string>()
  const claimKey = (key: string, where: string, path: Path): boolean => {
    const other = keys.get(key)
    if (other !== undefined) {
      r.fail(path, `endpoint "${key}" is declared twice (also at ${other})`)
      return false
    }
    keys.set(key, where)
    return true
  }

  const hosts: LabHost[] = []
  const hostList = top.hosts == null ? undefined : r.array(top.hosts, ['hosts'], { min: 1, max: MAX_HOSTS })
  hostList?.forEach((item, i) => {
    const p = ['hosts', i]
    const h = r.object(item, p, ['name', 'kind', 'namespace', 'labels', 'ports'], ['name', 'kind', 'namespace'])
    if (!h) return
    const before = r.issues.length
    const name = h.name == null ? undefined : checkName(r, h.name, [...p, 'name'], 'host name')
    if (name !== undefined && RESERVED_HOST_NAMES.includes(name)) r.fail([...p, 'name'], `host name "${name}" is reserved for the lab's underlay`)
    if (name !== undefined && hosts.some((o) => o.name === name)) r.fail([...p, 'name'], `host "${name}" is declared twice`)
    const kind = h.kind == null ? undefined : r.oneOf(h.kind, [...p, 'kind'], HOST_KINDS)
    const namespace = h.namespace == null ? undefined : checkNamespace(h.namespace, [...p, 'namespace'])
    const labels = readLabels(r, h.labels, [...p, 'labels'])
    const ports = readPorts(r, h.ports, [...p, 'ports'])
    if (r.issues.length > before || !name || !kind || !namespace || !labels || !ports) return
    if (!claimKey(`${namespace}/${name}`, `hosts[${i}]`, [...p, 'name'])) return
    hosts.push(Object.freeze({ name, kind, namespace, labels: Object.freeze(labels), ports: Object.freeze(ports) }))
  })
  if (hostList && hostList.length > underlayRoom) {
    r.fail(['underlay', 'cidr'], `${underlay.cidr} has room for ${underlayRoom} hosts, the topology declares ${hostList.length}`)
  }

  const hostNames = [...new Set((hostList ?? []).map((h) => (h !== null && typeof h === 'object' ? (h as { name?: unknown }).name : undefined)).filter((n): n is string => typeof n === 'string'))]
  const workloads: LabWorkload[] = []
  const workloadList = top.workloads == null ? [] : r.array(top.workloads, ['workloads'], { max: MAX_WORKLOADS })
  workloadList?.forEach((item, i) => {
    const p = ['workloads', i]
    const w = r.object(item, p, ['namespace', 'name', 'host', 'labels', 'ports'], ['namespace', 'name', 'host'])
    if (!w) return
    const before = r.issues.length
    const namespace = w.namespace == null ? undefined : checkNamespace(w.namespace, [...p, 'namespace'])
    const name = w.name == null ? undefined : checkName(r, w.name, [...p, 'name'], 'workload name')
    let host: string | undefined
    if (w.host != null) {
      host = r.string(w.host, [...p, 'host'])
      if (host !== undefined && !hostNames.includes(host)) host = r.fail([...p, 'host'], `unknown host "${host}"; the hosts are ${hostNames.map((n) => `"${n}"`).join(', ')}`)
    }
    const labels = readLabels(r, w.labels, [...p, 'labels'])
    const ports = readPorts(r, w.ports, [...p, 'ports'])
    if (r.issues.length > before || !namespace || !name || !host || !labels || !ports) return
    if (!claimKey(`${namespace}/${name}`, `workloads[${i}]`, [...p, 'name'])) return
    workloads.push(Object.freeze({ namespace, name, host, labels: Object.freeze(labels), ports: Object.freeze(ports) }))
  })

  if (r.issues.length > 0) return undefined
  return Object.freeze({
    file,
    underlay: Object.freeze(underlay),
    namespaces: Object.freeze(namespaces.map((n) => Object.freeze(n))),
    hosts: Object.freeze(hosts),
    workloads: Object.freeze(workloads),
  })
}

/** The topology in `file`, or the embedded default (three hosts: vm, baremetal, k8s-node). */
export async function loadTopology(file?: string): Promise<Topology> {
  if (file === undefined) return readTopology(DEFAULT_TOPOLOGY_FILE, DEFAULT_TOPOLOGY_YAML)
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new InputReadError(file, e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.message)
  }
  return readTopology(file, text)
}

/** Every endpoint of a topology with the ports it serves: host endpoints first, then workloads. */
export function topologyEndpoints(t: Topology): { key: string; namespace: string; name: string; host: string; kind: 'host' | 'workload'; labels: Readonly<Record<string, string>>; ports: readonly LabPort[] }[] {
  return [
    ...t.hosts.map((h) => ({ key: `${h.namespace}/${h.name}`, namespace: h.namespace, name: h.name, host: h.name, kind: 'host' as const, labels: h.labels, ports: h.ports })),
    ...t.workloads.map((w) => ({ key: `${w.namespace}/${w.name}`, namespace: w.namespace, name: w.name, host: w.host, kind: 'workload' as const, labels: w.labels, ports: w.ports })),
  ]
}
