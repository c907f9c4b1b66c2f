/**
 * Reads the text of an agent configuration file (YAML or JSON) into a layer, strictly: unknown
 * fields, wrong types, out-of-range numbers and malformed addresses are each reported with file,
 * line, column and field path, and reading goes on so that one run shows every problem.
 *
 * Pure: the caller reads the bytes.
 */
import { checkLabelKey, checkLabelValue, checkPortName, type ValidationIssue } from '@flatnet/core'
import { FieldReader, formatPath, parseSource, quoted, type PathSegment, type SourceDocument } from '@flatnet/policy'
import { AGENT_CONFIG_API_VERSION, AGENT_CONFIG_KIND } from './defaults.js'
import { checkFieldValue, FIELD_BY_PATH } from './fields.js'
import { segments, type ConfigLayer } from './layer.js'
import type { ConfigNamedPort, FailsafePort, AgentWorkloadConfig } from './types.js'
import { canonicalIp, checkCidr, checkIp } from './values.js'

type Path = readonly PathSegment[]

/** Fields of each object of the file (by dotted path; '' is the top level). */
const SECTIONS: Readonly<Record<string, readonly string[]>> = {
  '': ['apiVersion', 'kind', 'nodeName', 'nodeLabels', 'cluster', 'stateDir', 'runDir', 'store', 'join', 'wireguard', 'mesh', 'underlay', 'hostEndpoint', 'workloads', 'policy', 'dataplane', 'api', 'metrics', 'log', 'reconnect'],
  store: ['url', 'timeoutMs'],
  join: ['token', 'tokenFile'],
  wireguard: ['backend', 'interfaceName', 'listenPort', 'mtu'],
  mesh: ['listen', 'announce', 'bootstrap', 'relayServer'],
  underlay: ['addresses'],
  hostEndpoint: ['enabled', 'namespace', 'name', 'labels', 'ports'],
  policy: ['failsafe', 'conntrackCut', 'keepRulesOnStop'],
  'policy.failsafe': ['inbound', 'outbound'],
  dataplane: ['procSysNet'],
  api: ['socket'],
  metrics: ['listen'],
  log: ['level'],
  reconnect: ['minMs', 'maxMs'],
}

/** Slips a spelling suggestion cannot catch. */
const HINTS: Readonly<Record<string, Readonly<Record<string, string>>>> = {
  '': { redis: 'the Redis URL is store.url', token: 'the join token is join.token', labels: 'node labels are nodeLabels; the host endpoint has hostEndpoint.labels' },
  wireguard: { port: 'the UDP port is listenPort', interface: 'the interface name is interfaceName' },
  store: { redis: 'the Redis URL is url' },
}

/** Where a field of another section is meant, say so: `listenPort` at the top belongs under `wireguard`. */
function sectionHints(section: string): Record<string, string> {
  const owners = new Map<string, string[]>()
  for (const [name, fields] of Object.entries(SECTIONS)) {
    if (name === section) continue
    for (const f of fields) if (!SECTIONS[section]?.includes(f)) owners.set(f, [...(owners.get(f) ?? []), name === '' ? 'the top level' : name])
  }
  const hints: Record<string, string> = {}
  for (const [f, where] of owners) {
    if (where.length !== 1) continue
    const hint = `"${f}" belongs ${where[0] === 'the top level' ? 'at the top level' : `under "${where[0]}"`}`
    hints[f] = hint
    // Written in the wrong case too: `relayserver` at the top is still mesh.relayServer.
    if (!SECTIONS[section]?.some((own) => own.toLowerCase() === f.toLowerCase())) hints[f.toLowerCase()] ??= hint
  }
  return { ...hints, ...HINTS[section] }
}

const MAX_LABELS = 64
const MAX_PORTS = 64
const MAX_WORKLOADS = 1024
const MAX_FAILSAFE = 64
const PROTOCOLS = ['TCP', 'UDP', 'SCTP'] as const

export interface FileLayerResult {
  readonly layer: ConfigLayer
  readonly issues: readonly ValidationIssue[]
}

export function readConfigText(file: string, text: string): FileLayerResult {
  const values = new Map<string, unknown>()
  const parsed = parseSource(file, text)
  const issues: ValidationIssue[] = [...parsed.issues]
  const empty: ConfigLayer = { values, where: (path, sub = []) => ({ file, line: 0, column: 0, path: formatPath([...segments(path), ...sub]) }) }
  const doc = parsed.documents[0]
  if (parsed.documents.length > 1) {
    const second = parsed.documents[1] as SourceDocument
    issues.push({ ...second.locate([]), path: '', message: 'the agent configuration is one YAML document; this file holds more (remove the "---" separators)' })
  }
  if (!doc) return { layer: empty, issues }
  const found: ValidationIssue[] = []
  new FileReader(new FieldReader(doc, found), values).section(doc.value, '')
  // In the order of the file, which is the order someone fixing it reads in.
  issues.push(...found.sort((a, b) => a.line - b.line || a.column - b.column))
  const layer: ConfigLayer = { values, where: (path, sub = []) => ({ ...doc.locate([...segments(path), ...sub]), path: formatPath([...segments(path), ...sub]) }) }
  return { layer, issues }
}

class FileReader {
  constructor(
    private readonly r: FieldReader,
    private readonly values: Map<string, unknown>,
  ) {}

  section(value: unknown, name: string): void {
    const path = segments(name)
    const fields = SECTIONS[name] ?? []
    const record = this.r.object(value, path, fields, [], sectionHints(name))
    if (!record) return
    for (const key of fields) {
      const child = record[key]
      // `key:` with nothing after it is YAML null: the field keeps its default.
      if (child === undefined || child === null) continue
      const childName = name === '' ? key : `${name}.${key}`
      if (childName in SECTIONS) this.section(child, childName)
      else this.field(childName, child)
    }
  }

  private field(name: string, value: unknown): void {
    const path = segments(name)
    const before = this.r.issues.length
    let out: unknown
    switch (name) {
      case 'apiVersion':
      case 'kind': {
        const want = name === 'kind' ? AGENT_CONFIG_KIND : AGENT_CONFIG_API_VERSION
        if (value !== want) this.r.fail(path, `must be "${want}" (or left out), got ${typeof value === 'string' ? quoted(value) : String(value)}`)
        return
      }
      case 'nodeLabels':
      case 'hostEndpoint.labels':
        out = this.labels(value, path)
        break
      case 'hostEndpoint.ports':
        out = this.ports(value, path)
        break
      case 'workloads':
        out = this.workloads(value, path)
        break
      case 'policy.failsafe.inbound':
      case 'policy.failsafe.outbound':
        out = this.failsafe(value, path)
        break
      default: {
        const field = FIELD_BY_PATH.get(name)
        if (!field) throw new Error(`no reader for configuration field ${name}`)
        for (const p of checkFieldValue(field, value)) this.r.fail([...path, ...p.sub], p.message)
        out = value
      }
    }
    if (this.r.issues.length === before && out !== undefined) this.values.set(name, out)
  }

  private labels(value: unknown, path: Path): Record<string, string> | undefined {
    const labels = this.r.stringMap(value, path, checkLabelKey, checkLabelValue)
    if (labels && Object.keys(labels).length > MAX_LABELS) return this.r.fail(path, `must have at most ${MAX_LABELS} labels`)
    return labels
  }

  private ports(value: unknown, path: Path): ConfigNamedPort[] | undefined {
    const list = this.r.array(value, path, { max: MAX_PORTS })
    if (!list) return undefined
    const ports: ConfigNamedPort[] = []
    const names = new Set<string>()
    list.forEach((item, i) => {
      const p = [...path, i]
      const o = this.r.object(item, p, ['name', 'port', 'protocol'], ['name', 'port'], { containerPort: 'a named port has "port", not "containerPort"' })
      if (!o) return
      const name = o.name == null ? undefined : this.r.string(o.name, [...p, 'name'])
      const badName = name === undefined ? undefined : checkPortName(name)
      if (badName) this.r.fail([...p, 'name'], `invalid port name ${quoted(name as string)}: ${badName}`)
      else if (name !== undefined && names.has(name)) this.r.fail([...p, 'name'], `port name "${name}" is used twice`)
      else if (name !== undefined) names.add(name)
      const port = o.port == null ? undefined : this.r.int(o.port, [...p, 'port'], 1, 65535)
      const protocol = o.protocol == null ? 'TCP' : this.r.oneOf(o.protocol, [...p, 'protocol'], PROTOCOLS)
      if (name === undefined || badName || port === undefined || protocol === undefined) return
      ports.push({ name, port, protocol })
    })
    return ports
  }

  private ips(value: unknown, path: Path, seen: Map<string, string>, owner: string): string[] | undefined {
    const list = this.r.array(value, path, { min: 1, max: 16 })
    if (!list) return undefined
    const ips: string[] = []
    list.forEach((item, i) => {
      const text = this.r.string(item, [...path, i])
      if (text === undefined) return
      const bad = checkIp(text)
      if (bad) return void this.r.fail([...path, i], bad)
      const key = canonicalIp(text)
      const other = seen.get(key)
      // An address names exactly one identity (docs/kinds.md): two endpoints cannot share it.
      if (other !== undefined) return void this.r.fail([...path, i], `IP address ${quoted(text)} is already used by ${other === owner ? 'this workload' : `workload ${other}`}`)
      seen.set(key, owner)
      ips.push(text)
    })
    return ips
  }

  private workloads(value: unknown, path: Path): AgentWorkloadConfig[] | undefined {
    const list = this.r.array(value, path, { max: MAX_WORKLOADS })
    if (!list) return undefined
    const out: AgentWorkloadConfig[] = []
    const keys = new Set<string>()
    const ipOwners = new Map<string, string>()
    list.forEach((item, i) => {
      const p = [...path, i]
      const before = this.r.issues.length
      const o = this.r.object(item, p, ['namespace', 'name', 'labels', 'ips', 'ports'], ['namespace', 'name', 'ips'])
      if (!o) return
      const namespace = o.namespace == null ? undefined : this.checked(o.namespace, [...p, 'namespace'], 'hostEndpoint.namespace')
      const name = o.name == null ? undefined : this.checked(o.name, [...p, 'name'], 'hostEndpoint.name')
      const key = `${namespace}/${name}`
      if (namespace !== undefined && name !== undefined && keys.has(key)) this.r.fail([...p, 'name'], `workload ${key} is declared twice`)
      keys.add(key)
      const labels = o.labels == null ? {} : this.labels(o.labels, [...p, 'labels'])
      const ips = o.ips == null ? undefined : this.ips(o.ips, [...p, 'ips'], ipOwners, key)
      const ports = o.ports == null ? [] : this.ports(o.ports, [...p, 'ports'])
      if (this.r.issues.length > before || !namespace || !name || !labels || !ips || !ports) return
      out.push({ namespace, name, labels, ips, ports })
    })
    return out
  }

  /** A string checked as the field at `as` checks it (namespace and name rules), reported at `path`. */
  private checked(value: unknown, path: Path, as: string): string | undefined {
    const field = FIELD_BY_PATH.get(as)
    if (!field) throw new Error(`unknown field ${as}`)
    const problems = checkFieldValue({ ...field, allowEmpty: false }, value)
    for (const p of problems) this.r.fail([...path, ...p.sub], p.message)
    return problems.length === 0 ? (value as string) : undefined
  }

  private failsafe(value: unknown, path: Path): FailsafePort[] | undefined {
    const list = this.r.array(value, path, { max: MAX_FAILSAFE })
    if (!list) return undefined
    const out: FailsafePort[] = []
    const seen = new Set<string>()
    list.forEach((item, i) => {
      const p = [...path, i]
      const o = this.r.object(item, p, ['protocol', 'port', 'cidr'], ['protocol', 'port'])
      if (!o) return
      const protocol = o.protocol == null ? undefined : this.r.oneOf(o.protocol, [...p, 'protocol'], PROTOCOLS)
      const port = o.port == null ? undefined : this.r.int(o.port, [...p, 'port'], 1, 65535)
      let cidr = ''
      if (o.cidr != null) {
        const text = this.r.string(o.cidr, [...p, 'cidr'])
        const bad = text === undefined ? undefined : checkCidr(text)
        if (bad) this.r.fail([...p, 'cidr'], bad)
        if (text === undefined || bad) return
        cidr = text
      }
      if (protocol === undefined || port === undefined) return
      const key = `${protocol}/${port}/${cidr}`
      if (seen.has(key)) return void this.r.fail(p, `${protocol} port ${port}${cidr === '' ? '' : ` from ${cidr}`} is listed twice`)
      seen.add(key)
      out.push({ protocol, port, cidr })
    })
    return out
  }
}
