/**
 * policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy (network-policy-api v0.2), validated
 * as its CRD schema and CEL rules do. The experimental `nodes` and `domainNames` peers are
 * refused with a clear message rather than silently ignored: a Deny that matched nothing
 * would be a hole.
 */
import { checkPortName, type Cidr, type Protocol } from '@flatnet/core'
import type { FieldReader, Path } from './field-reader.js'
import type { ClusterNetworkPolicySpec, ClusterPeerSpec, ClusterProtocolSpec, ClusterRuleAction, ClusterRuleSpec, ClusterSelection, Tier } from './model.js'
import { peersFieldHint, readCidr, readLabelSelector, readMetadata } from './read-common.js'

export const CNP_LIMITS = Object.freeze({ minPriority: 0, maxPriority: 1000, maxRules: 25, maxPeers: 25, maxProtocols: 25, maxNetworks: 25 })

export function readClusterNetworkPolicy(r: FieldReader, doc: Record<string, unknown>): ClusterNetworkPolicySpec | undefined {
  const before = r.issues.length
  const meta = readMetadata(r, doc.metadata, ['metadata'], 'cluster')
  const spec = r.object(doc.spec, ['spec'], ['tier', 'priority', 'subject', 'ingress', 'egress'], ['tier', 'priority', 'subject'])
  if (!meta || !spec) return undefined
  const tier = spec.tier === undefined ? undefined : r.oneOf(spec.tier, ['spec', 'tier'], ['Admin', 'Baseline'] as const)
  const priority = spec.priority === undefined ? undefined : r.int(spec.priority, ['spec', 'priority'], CNP_LIMITS.minPriority, CNP_LIMITS.maxPriority)
  const subject = spec.subject === undefined ? undefined : readSelection(r, spec.subject, ['spec', 'subject'])
  const ingress = spec.ingress == null ? [] : readRules(r, spec.ingress, ['spec', 'ingress'], 'from', tier)
  const egress = spec.egress == null ? [] : readRules(r, spec.egress, ['spec', 'egress'], 'to', tier)
  if (r.issues.length > before || !meta.name || !tier || priority === undefined || !subject || !ingress || !egress) return undefined
  return { kind: 'ClusterNetworkPolicy', name: meta.name, tier, priority, subject, ingress, egress, manifest: doc }
}

function readSelection(r: FieldReader, value: unknown, path: Path, extra: readonly string[] = [], hints: Readonly<Record<string, string>> = {}): ClusterSelection | undefined {
  const s = r.object(value, path, ['namespaces', 'pods', ...extra], [], hints)
  if (!s) return undefined
  const set = Object.keys(s).filter((k) => s[k] != null)
  if (set.length !== 1) return r.fail(path, `exactly one of ${['namespaces', 'pods', ...extra].join(', ')} must be set, got ${set.length === 0 ? 'none' : set.join(' and ')}`)
  if (s.namespaces != null) {
    const namespaces = readLabelSelector(r, s.namespaces, [...path, 'namespaces'])
    return namespaces ? { namespaces } : undefined
  }
  if (s.pods != null) {
    const pods = r.object(s.pods, [...path, 'pods'], ['namespaceSelector', 'podSelector'], ['podSelector'])
    if (!pods) return undefined
    const namespaceSelector = readLabelSelector(r, pods.namespaceSelector ?? {}, [...path, 'pods', 'namespaceSelector'])
    const podSelector = pods.podSelector == null ? undefined : readLabelSelector(r, pods.podSelector, [...path, 'pods', 'podSelector'])
    return namespaceSelector && podSelector ? { pods: { namespaceSelector, podSelector } } : undefined
  }
  return undefined
}

function readRules(r: FieldReader, value: unknown, path: Path, peersField: 'from' | 'to', tier: Tier | undefined): ClusterRuleSpec[] | undefined {
  const list = r.array(value, path, { max: CNP_LIMITS.maxRules })
  if (!list) return undefined
  const rules: ClusterRuleSpec[] = []
  list.forEach((item, i) => {
    const p = [...path, i]
    const rule = r.object(item, p, ['name', 'action', peersField, 'protocols'], ['action', peersField], ruleHints(peersField))
    if (!rule) return
    const before = r.issues.length
    // The CRD sets no minimum length: an empty name is the same as none.
    const name = rule.name == null ? undefined : r.string(rule.name, [...p, 'name'], { allowEmpty: true, maxLength: 100 }) || undefined
    let action: ClusterRuleAction | undefined
    if (rule.action === 'Allow') {
      r.fail([...p, 'action'], 'must be one of "Accept", "Deny", "Pass", got "Allow": AdminNetworkPolicy\'s Allow is Accept in ClusterNetworkPolicy')
    } else if (rule.action != null) action = r.oneOf(rule.action, [...p, 'action'], ['Accept', 'Deny', 'Pass'] as const)
    if (action === 'Pass' && tier === 'Baseline') {
      r.fail([...p, 'action'], 'Pass is not allowed in the Baseline tier: there is no later tier to pass to')
    }
    const peers: ClusterPeerSpec[] = []
    const rawPeers = rule[peersField] == null ? undefined : r.array(rule[peersField], [...p, peersField], { min: 1, max: CNP_LIMITS.maxPeers })
    rawPeers?.forEach((peer, j) => {
      const parsed = readPeer(r, peer, [...p, peersField, j], peersField)
      if (parsed) peers.push(parsed)
    })
    let protocols: ClusterProtocolSpec[] | undefined
    if (rule.protocols != null) {
      protocols = []
      const rawProtocols = r.array(rule.protocols, [...p, 'protocols'], { min: 1, max: CNP_LIMITS.maxProtocols })
      rawProtocols?.forEach((proto, j) => {
        const parsed = readProtocol(r, proto, [...p, 'protocols', j])
        if (parsed) protocols?.push(parsed)
      })
      if (protocols.some((x) => 'namedPort' in x) && peers.some((x) => 'networks' in x)) {
        r.fail([...p, 'protocols'], 'destinationNamedPort cannot be used with a networks peer: networks have no named ports')
      }
    }
    if (r.issues.length > before || !action) return
    rules.push({ name, action, peers, protocols })
  })
  return rules
}

/** Rules written for AdminNetworkPolicy (v1alpha1) name their ports `ports`; v1alpha2 says `protocols`. */
function ruleHints(peersField: 'from' | 'to'): Record<string, string> {
  return { ...peersFieldHint(peersField), ports: 'ClusterNetworkPolicy rules list ports under "protocols" (AdminNetworkPolicy\'s "ports" was renamed)' }
}

function readPeer(r: FieldReader, value: unknown, path: Path, field: 'from' | 'to'): ClusterPeerSpec | undefined {
  if (field === 'to' && value !== null && typeof value === 'object') {
    const v = value as Record<string, unknown>
    for (const experimental of ['nodes', 'domainNames']) {
      if (v[experimental] != null) return r.fail([...path, experimental], `the experimental "${experimental}" peer is not supported by flatnet`, 'key')
    }
    if (v.networks != null) {
      const set = Object.keys(v).filter((k) => v[k] != null)
      if (set.length !== 1) return r.fail(path, `exactly one of namespaces, pods, networks must be set, got ${set.join(' and ')}`)
      const list = r.array(v.networks, [...path, 'networks'], { min: 1, max: CNP_LIMITS.maxNetworks })
      const networks: Cidr[] = []
      const written = new Set<unknown>()
      list?.forEach((c, i) => {
        const cidr = readCidr(r, c, [...path, 'networks', i], { maxLength: 43 })
        // The CRD makes networks a set (x-kubernetes-list-type: set): the API server refuses repeats.
        if (cidr && written.has(c)) r.fail([...path, 'networks', i], `duplicate value ${JSON.stringify(c)}`)
        else if (cidr) networks.push(cidr)
        written.add(c)
      })
      return list && networks.length === list.length ? { networks } : undefined
    }
    return readSelection(r, value, path, ['networks'])
  }
  return readSelection(r, value, path, [], { networks: 'networks peers are only allowed in egress rules ("to")' })
}

function readProtocol(r: FieldReader, value: unknown, path: Path): ClusterProtocolSpec | undefined {
  const p = r.object(value, path, ['tcp', 'udp', 'sctp', 'destinationNamedPort'])
  if (!p) return undefined
  const set = Object.keys(p).filter((k) => p[k] != null)
  if (set.length !== 1) return r.fail(path, `exactly one of tcp, udp, sctp, destinationNamedPort must be set, got ${set.length === 0 ? 'none' : set.join(' and ')}`)
  if (p.destinationNamedPort != null) {
    const name = r.string(p.destinationNamedPort, [...path, 'destinationNamedPort'])
    const bad = name === undefined ? undefined : checkPortName(name)
    if (bad) return r.fail([...path, 'destinationNamedPort'], `invalid port name "${name}": ${bad}`)
    return name === undefined ? undefined : { namedPort: name }
  }
  const key = set[0] as 'tcp' | 'udp' | 'sctp'
  const protocol = key.toUpperCase() as Protocol
  const body = r.object(p[key], [...path, key], ['destinationPort'], ['destinationPort'])
  if (!body || body.destinationPort == null) return undefined
  const dp = r.object(body.destinationPort, [...path, key, 'destinationPort'], ['number', 'range'])
  if (!dp) return undefined
  const dpPath = [...path, key, 'destinationPort']
  const dpSet = Object.keys(dp).filter((k) => dp[k] != null)
  if (dpSet.length !== 1) return r.fail(dpPath, `exactly one of number, range must be set`)
  if (dp.number != null) {
    const n = r.int(dp.number, [...dpPath, 'number'], 1, 65535)
    return n === undefined ? undefined : { protocol, portRange: { start: n, end: n } }
  }
  const range = r.object(dp.range, [...dpPath, 'range'], ['start', 'end'], ['start', 'end'])
  if (!range) return undefined
  const start = range.start == null ? undefined : r.int(range.start, [...dpPath, 'range', 'start'], 1, 65535)
  const end = range.end == null ? undefined : r.int(range.end, [...dpPath, 'range', 'end'], 1, 65535)
  if (start === undefined || end === undefined) return undefined
  if (start >= end) return r.fail([...dpPath, 'range'], `start (${start}) must be less than end (${end})`)
  return { protocol, portRange: { start, end } }
}
