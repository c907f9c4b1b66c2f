// The benchmark's cluster, generated from a seed: namespaces, endpoints, NetworkPolicies (as
// manifests and as model objects) and ClusterNetworkPolicies. Separate from run.js so that other
// checks can build the very same cluster.
import { labelsFromRecord, NAMESPACE_NAME_LABEL, parseCidr, parseIp, seededRandom } from '../../packages/core/dist/src/index.js'
import { ALLOW_PORTS_WITH_GRPC, APPS, namespacePolicies, POLICIES_PER_NAMESPACE, shuffled, TEAMS } from '../lib/manifests.js'

export { APPS, TEAMS }
export const ENDPOINTS_PER_NS = 100
export const POLICIES_PER_NS = POLICIES_PER_NAMESPACE

// One stream for the whole run: callers keep drawing from it after generation, so every
// choice of a run follows from the seed.
let rng = seededRandom(1)
export const int = (n) => Math.floor(rng() * n)
export const pick = (list) => list[int(list.length)]
export const chance = (p) => rng() < p
const pad = (n, width) => String(n).padStart(width, '0')

export const ENVS = ['prod', 'staging', 'dev']
const TIER_OF = { web: 'frontend', ui: 'frontend', gateway: 'frontend', db: 'data', cache: 'data', queue: 'data' }
const tierOf = (app) => TIER_OF[app] ?? 'backend'
export const VERSIONS = ['v1', 'v2', 'v3']
/** Ports every endpoint serves, plus the app's own. */
const COMMON_PORTS = [
  { name: 'http', port: 8080, protocol: 'TCP' },
  { name: 'metrics', port: 9090, protocol: 'TCP' },
]
const APP_PORTS = {
  api: [{ name: 'grpc', port: 50051, protocol: 'TCP' }],
  db: [{ name: 'postgres', port: 5432, protocol: 'TCP' }],
  cache: [{ name: 'redis', port: 6379, protocol: 'TCP' }],
  queue: [{ name: 'amqp', port: 5672, protocol: 'TCP' }],
  gateway: [
    { name: 'https', port: 8443, protocol: 'TCP' },
    { name: 'dns', port: 53, protocol: 'UDP' },
  ],
}

const selector = (matchLabels = {}, matchExpressions = []) => ({ matchLabels, matchExpressions })
const ipv4 = (a, b, c, d) => `${a}.${b}.${c}.${d}`

/** Namespace n owns 10.<n/256>.<n%256>.0/24 for Pods and 172.<16+n/256>.<n%256>.0/24 for HostEndpoints. */
const podIp = (n, j) => ipv4(10, n >> 8, n & 255, j + 1)
const hostIp = (n, j) => ipv4(172, 16 + (n >> 8), n & 255, j + 1)

export function generateCluster({ seed, namespaces: NAMESPACES }) {
  rng = seededRandom(seed)
  const namespaces = []
  const nsInfo = []
  for (let n = 0; n < NAMESPACES; n++) {
    const name = `ns-${pad(n, 4)}`
    // A few platform namespaces that cluster policies and NetworkPolicies refer to.
    const role = n === 0 ? 'monitoring' : n === 1 ? 'dns' : n < 5 ? 'ingress' : undefined
    const labels = { [NAMESPACE_NAME_LABEL]: name, team: pick(TEAMS), env: pick(ENVS), ...(role ? { role } : {}) }
    namespaces.push({ kind: 'Namespace', name, labels: labelsFromRecord(labels) })
    nsInfo.push({ name, labels, apps: shuffled(APPS, int).slice(0, 10), endpoints: [] })
  }

  const endpoints = []
  for (let n = 0; n < NAMESPACES; n++) {
    const info = nsInfo[n]
    for (let j = 0; j < ENDPOINTS_PER_NS; j++) {
      const app = info.apps[j % 10]
      const host = tierOf(app) === 'data' ? chance(0.5) : chance(0.05)
      const labels = { app, tier: tierOf(app), version: pick(VERSIONS) }
      const ep = {
        kind: host ? 'HostEndpoint' : 'Pod',
        namespace: info.name,
        name: host ? `${app}-host-${pad(j, 2)}` : `${app}-${pad(j, 2)}-${int(36 ** 5).toString(36)}`,
        labels: labelsFromRecord(labels),
        ips: [parseIp(host ? hostIp(n, j) : podIp(n, j))],
        namedPorts: [...COMMON_PORTS, ...(APP_PORTS[app] ?? [])],
        ...(host ? { node: `host-${n}-${j}` } : { node: `node-${int(500)}` }),
      }
      endpoints.push(ep)
      info.endpoints.push(ep)
    }
  }

  const policyManifests = []
  for (let n = 0; n < NAMESPACES; n++) policyManifests.push(...policiesOfNamespace(nsInfo[n], n))
  const policies = policyManifests.map(networkPolicySpec)
  const clusterPolicies = clusterPolicySpecs()
  return { namespaces, nsInfo, endpoints, policies, policyManifests, clusterPolicies }
}

/** The 10 NetworkPolicies of a namespace, as Kubernetes manifests. */
function policiesOfNamespace(info, n) {
  const out = namespacePolicies({ namespace: info.name, team: info.labels.team, apps: info.apps, draws: { int, pick, chance }, allowPorts: ALLOW_PORTS_WITH_GRPC })
  if (out.length !== POLICIES_PER_NS) throw new Error(`namespace ${n}: ${out.length} policies`)
  return out
}

// The model shapes, built from the manifests by hand (the loader is not part of the timed path).
const labelSelectorSpec = (s) => selector(s?.matchLabels ?? {}, (s?.matchExpressions ?? []).map((e) => ({ key: e.key, operator: e.operator, values: e.values ?? [] })))
function cidr(text) {
  const c = parseCidr(text)
  if (!c || c.hostBitsSet) throw new Error(`bad CIDR ${text}`)
  return { family: c.family, network: c.network, prefix: c.prefix }
}
function peerSpec(p) {
  if (p.ipBlock) {
    const except = p.ipBlock.except ?? []
    return { ipBlock: { cidr: cidr(p.ipBlock.cidr), except: except.map(cidr), text: [p.ipBlock.cidr, ...except.map((e) => `!${e}`)].join(' ') } }
  }
  return {
    podSelector: p.podSelector ? labelSelectorSpec(p.podSelector) : undefined,
    namespaceSelector: p.namespaceSelector ? labelSelectorSpec(p.namespaceSelector) : undefined,
  }
}
const portSpec = (p) => ({ protocol: p.protocol ?? 'TCP', port: p.port, endPort: p.endPort })
const ruleSpec = (r, field) => ({ peers: (r[field] ?? []).map(peerSpec), ports: (r.ports ?? []).map(portSpec) })
function networkPolicySpec(m) {
  const s = m.spec
  return {
    kind: 'NetworkPolicy',
    namespace: m.metadata.namespace,
    name: m.metadata.name,
    podSelector: labelSelectorSpec(s.podSelector),
    policyTypes: s.policyTypes ?? (s.egress ? ['Ingress', 'Egress'] : ['Ingress']),
    ingress: (s.ingress ?? []).map((r) => ruleSpec(r, 'from')),
    egress: (s.egress ?? []).map((r) => ruleSpec(r, 'to')),
    manifest: m,
  }
}

function clusterPolicySpecs() {
  const all = selector()
  const ns = (labels, exprs) => ({ namespaces: selector(labels, exprs) })
  const pods = (nsLabels, podLabels) => ({ pods: { namespaceSelector: selector(nsLabels), podSelector: selector(podLabels) } })
  const cnp = (name, tier, priority, subject, ingress = [], egress = []) => ({
    kind: 'ClusterNetworkPolicy',
    name,
    tier,
    priority,
    subject,
    ingress,
    egress,
    manifest: { name },
  })
  const out = [
    cnp('admin-allow-monitoring', 'Admin', 10, { namespaces: all }, [
      { name: 'scrape', action: 'Accept', peers: [ns({ role: 'monitoring' })], protocols: [{ namedPort: 'metrics' }] },
    ]),
    cnp('admin-allow-dns', 'Admin', 12, { namespaces: all }, [], [
      { name: 'dns', action: 'Accept', peers: [ns({ role: 'dns' })], protocols: [{ protocol: 'UDP', portRange: { start: 53, end: 53 } }] },
    ]),
    cnp('admin-prod-isolation', 'Admin', 20, ns({ env: 'prod' }), [
      { name: 'no-dev', action: 'Deny', peers: [ns({ env: 'dev' })] },
      { name: 'ingress-tier', action: 'Pass', peers: [ns({ role: 'ingress' })] },
    ]),
    cnp('admin-block-metadata', 'Admin', 25, { namespaces: all }, [], [
      { name: 'imds', action: 'Deny', peers: [{ networks: [cidr('169.254.169.254/32')] }] },
    ]),
    cnp('admin-deny-known-bad', 'Admin', 30, { namespaces: all }, [{ name: 'blocklist', action: 'Deny', peers: [{ networks: [cidr('198.51.100.0/24'), cidr('192.0.2.0/24')] }] }]),
  ]
  // Per-team guard rails on the data tier, Admin and Baseline.
  for (let i = 0; i < 8; i++) {
    const team = TEAMS[i * 5]
    out.push(
      cnp(`admin-${team}-data`, 'Admin', 100 + i, pods({ team }, { tier: 'data' }), [
        { name: 'own-team', action: 'Pass', peers: [ns({ team })] },
        { name: 'others', action: 'Deny', peers: [ns({}, [{ key: 'team', operator: 'Exists', values: [] }])], protocols: [{ protocol: 'TCP', portRange: { start: 5432, end: 6379 } }] },
      ]),
    )
  }
  out.push(
    cnp('baseline-prod-default-deny', 'Baseline', 10, ns({ env: 'prod' }), [
      { name: 'same-env', action: 'Accept', peers: [ns({ env: 'prod' })] },
      { name: 'rest', action: 'Deny', peers: [ns({}), { networks: [cidr('0.0.0.0/0')] }] },
    ]),
    cnp('baseline-staging', 'Baseline', 20, ns({ env: 'staging' }), [
      { name: 'no-dev', action: 'Deny', peers: [ns({ env: 'dev' })], protocols: [{ protocol: 'TCP', portRange: { start: 1, end: 1024 } }] },
    ]),
    cnp('baseline-egress-internal', 'Baseline', 30, ns({}, [{ key: 'env', operator: 'In', values: ['prod', 'staging'] }]), [], [
      { name: 'internal', action: 'Accept', peers: [{ networks: [cidr('10.0.0.0/8'), cidr('172.16.0.0/12')] }] },
      { name: 'world', action: 'Deny', peers: [{ networks: [cidr('0.0.0.0/0')] }], protocols: [{ protocol: 'TCP', portRange: { start: 1, end: 442 } }] },
    ]),
  )
  for (let i = 0; i < 4; i++) {
    const team = TEAMS[i * 7 + 1]
    out.push(
      cnp(`baseline-${team}-cache`, 'Baseline', 100 + i, pods({ team }, { app: 'cache' }), [
        { name: 'team-only', action: 'Accept', peers: [pods({ team }, {})] },
        { name: 'deny', action: 'Deny', peers: [ns({})] },
      ]),
    )
  }
  return out
}

