/** networking.k8s.io/v1 NetworkPolicy, validated as strictly as the Kubernetes API server. */
import { checkPortName, cidrCovers, formatCidr, type Cidr, type Protocol } from '@flatnet/core'
import { typeName, type FieldReader, type Path } from './field-reader.js'
import type { IpBlockSpec, NetworkPolicyPeerSpec, NetworkPolicyPortSpec, NetworkPolicyRuleSpec, NetworkPolicySpec } from './model.js'
import { peersFieldHint, readCidr, readLabelSelector, readMetadata } from './read-common.js'

const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP']

export function readNetworkPolicy(r: FieldReader, doc: Record<string, unknown>, defaultNamespace: string): NetworkPolicySpec | undefined {
  const before = r.issues.length
  const meta = readMetadata(r, doc.metadata, ['metadata'], 'namespaced')
  const spec = r.object(doc.spec ?? {}, ['spec'], ['podSelector', 'policyTypes', 'ingress', 'egress'])
  if (!meta || !spec) return undefined
  // The API server defaults a missing podSelector to {} (select every endpoint of the namespace).
  const podSelector = readLabelSelector(r, spec.podSelector ?? {}, ['spec', 'podSelector'])
  const ingress = spec.ingress == null ? [] : readRules(r, spec.ingress, ['spec', 'ingress'], 'from')
  const egress = spec.egress == null ? [] : readRules(r, spec.egress, ['spec', 'egress'], 'to')
  const policyTypes: ('Ingress' | 'Egress')[] = []
  if (spec.policyTypes != null) {
    const list = r.array(spec.policyTypes, ['spec', 'policyTypes'], { max: 2 })
    list?.forEach((t, i) => {
      const v = r.oneOf(t, ['spec', 'policyTypes', i], ['Ingress', 'Egress'] as const)
      // The API server accepts a repeated type; refusing it would leave such a policy unenforced.
      if (v && !policyTypes.includes(v)) policyTypes.push(v)
    })
  }
  // The API server's defaulting: a missing or empty list means Ingress, plus Egress when there
  // is at least one egress rule (`egress: []` alone does not isolate egress).
  if (policyTypes.length === 0 && (spec.policyTypes == null || (Array.isArray(spec.policyTypes) && spec.policyTypes.length === 0))) {
    policyTypes.push('Ingress')
    if (egress && egress.length > 0) policyTypes.push('Egress')
  }
  if (r.issues.length > before || !podSelector || !ingress || !egress || !meta.name) return undefined
  return {
    kind: 'NetworkPolicy',
    namespace: meta.namespace ?? defaultNamespace,
    name: meta.name,
    podSelector,
    policyTypes,
    ingress,
    egress,
    manifest: doc,
  }
}

function readRules(r: FieldReader, value: unknown, path: Path, peersField: 'from' | 'to'): NetworkPolicyRuleSpec[] | undefined {
  const list = r.array(value, path)
  if (!list) return undefined
  const rules: NetworkPolicyRuleSpec[] = []
  list.forEach((item, i) => {
    const p = [...path, i]
    const rule = r.object(item ?? {}, p, ['ports', peersField], [], peersFieldHint(peersField))
    if (!rule) return
    const peers: NetworkPolicyPeerSpec[] = []
    const rawPeers = rule[peersField] == null ? [] : r.array(rule[peersField], [...p, peersField])
    rawPeers?.forEach((peer, j) => {
      const parsed = readPeer(r, peer, [...p, peersField, j])
      if (parsed) peers.push(parsed)
    })
    const ports: NetworkPolicyPortSpec[] = []
    const rawPorts = rule.ports == null ? [] : r.array(rule.ports, [...p, 'ports'])
    rawPorts?.forEach((port, j) => {
      const parsed = readPort(r, port, [...p, 'ports', j])
      if (parsed) ports.push(parsed)
    })
    rules.push({ peers, ports })
  })
  return rules
}

function readPeer(r: FieldReader, value: unknown, path: Path): NetworkPolicyPeerSpec | undefined {
  const peer = r.object(value, path, ['podSelector', 'namespaceSelector', 'ipBlock'])
  if (!peer) return undefined
  const has = (k: string): boolean => peer[k] !== undefined && peer[k] !== null
  if (has('ipBlock')) {
    if (has('podSelector') || has('namespaceSelector')) {
      return r.fail(path, 'may not specify both ipBlock and another peer (podSelector or namespaceSelector)')
    }
    const ipBlock = readIpBlock(r, peer.ipBlock, [...path, 'ipBlock'])
    return ipBlock ? { ipBlock } : undefined
  }
  if (!has('podSelector') && !has('namespaceSelector')) {
    return r.fail(path, 'must specify a peer: podSelector, namespaceSelector or ipBlock')
  }
  const podSelector = has('podSelector') ? readLabelSelector(r, peer.podSelector, [...path, 'podSelector']) : undefined
  const namespaceSelector = has('namespaceSelector')
    ? readLabelSelector(r, peer.namespaceSelector, [...path, 'namespaceSelector'])
    : undefined
  if ((has('podSelector') && !podSelector) || (has('namespaceSelector') && !namespaceSelector)) return undefined
  return { podSelector, namespaceSelector }
}

function readIpBlock(r: FieldReader, value: unknown, path: Path): IpBlockSpec | undefined {
  const block = r.object(value, path, ['cidr', 'except'], ['cidr'])
  if (!block || block.cidr == null) return undefined
  const cidr = readCidr(r, block.cidr, [...path, 'cidr'])
  const except: Cidr[] = []
  const rawExcept = block.except == null ? [] : r.array(block.except, [...path, 'except'])
  rawExcept?.forEach((e, i) => {
    const c = readCidr(r, e, [...path, 'except', i])
    if (!c || !cidr) return
    if (c.family !== cidr.family) {
      r.fail([...path, 'except', i], `"${formatCidr(c)}" is IPv${c.family} but cidr ${formatCidr(cidr)} is IPv${cidr.family}`)
    } else if (!cidrCovers(cidr, c) || c.prefix <= cidr.prefix) {
      r.fail([...path, 'except', i], `"${formatCidr(c)}" must be a strict subset of cidr ${formatCidr(cidr)}`)
    } else except.push(c)
  })
  if (!cidr || !rawExcept || except.length !== rawExcept.length) return undefined
  return { cidr, except, text: [formatCidr(cidr), ...except.map((e) => `!${formatCidr(e)}`)].join(' ') }
}

function readPort(r: FieldReader, value: unknown, path: Path): NetworkPolicyPortSpec | undefined {
  const port = r.object(value, path, ['protocol', 'port', 'endPort'])
  if (!port) return undefined
  const before = r.issues.length
  const protocol = port.protocol == null ? 'TCP' : r.oneOf(port.protocol, [...path, 'protocol'], PROTOCOLS)
  let number: number | string | undefined
  if (port.port != null) {
    if (typeof port.port === 'string') {
      // IntOrString: a string of digits is a name to YAML but a number to nobody; the API server
      // treats it as a name and then rejects it, so do the same with a clearer message.
      const bad = checkPortName(port.port)
      const quoted = /^[0-9]+$/.test(port.port) ? '; a port number must be written without quotes' : ''
      if (bad) r.fail([...path, 'port'], `invalid port name "${port.port}": ${bad}${quoted}`)
      else number = port.port
    } else if (typeof port.port !== 'number') {
      r.fail([...path, 'port'], `must be a port number (1-65535) or a port name, got ${typeName(port.port)}`)
    } else number = r.int(port.port, [...path, 'port'], 1, 65535)
  }
  let endPort: number | undefined
  if (port.endPort != null) {
    endPort = r.int(port.endPort, [...path, 'endPort'], 1, 65535)
    if (endPort !== undefined) {
      if (number === undefined && port.port == null) r.fail([...path, 'endPort'], 'may not be specified when port is not specified')
      else if (typeof number === 'string') r.fail([...path, 'endPort'], 'may not be specified when port is a named port')
      else if (typeof number === 'number' && endPort < number) {
        r.fail([...path, 'endPort'], `must be greater than or equal to port (${number}), got ${endPort}`)
      }
    }
  }
  if (r.issues.length > before || !protocol) return undefined
  return { protocol, port: number, endPort }
}
