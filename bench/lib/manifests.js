// The NetworkPolicy manifests the benchmarks generate, as `flatnet policy apply -f` reads them:
// ten per namespace in the shapes real clusters use (default deny or same-namespace allow,
// app-to-app allows with named and numbered ports, ipBlock with except, an egress lockdown,
// monitoring). Every choice is drawn from the caller's seeded stream, in a fixed order, so that
// a seed always gives the same documents.
import { stringify } from 'yaml'

export const POLICIES_PER_NAMESPACE = 10
export const APPS = ['web', 'ui', 'gateway', 'api', 'auth', 'cart', 'catalog', 'search', 'orders', 'payments', 'worker', 'db', 'cache', 'queue']
export const TEAMS = Array.from({ length: 40 }, (_, i) => `team-${String(i).padStart(2, '0')}`)

/** The `ports` an app-to-app allow may have, one drawn per policy; undefined allows every port. */
export const ALLOW_PORTS = Object.freeze([
  [{ protocol: 'TCP', port: 8080 }],
  [{ port: 'http' }, { port: 'metrics' }],
  [{ protocol: 'TCP', port: 9000, endPort: 9100 }],
  [{ port: 8080 }, { protocol: 'UDP', port: 53 }],
  undefined,
])
/** The same with a gRPC choice, for clusters whose endpoints name a `grpc` port. */
export const ALLOW_PORTS_WITH_GRPC = Object.freeze([...ALLOW_PORTS.slice(0, 4), [{ port: 'grpc' }, { port: 50051, protocol: 'TCP' }], undefined])

/** Draw helpers over one seeded stream `rng` (a function returning [0, 1)). */
export function drawsOf(rng) {
  const int = (n) => Math.floor(rng() * n)
  return { int, pick: (list) => list[int(list.length)], chance: (p) => rng() < p }
}

/** A shuffled copy of `list` (Fisher-Yates, drawing with `int`). */
export function shuffled(list, int) {
  const out = list.slice()
  for (let i = out.length - 1; i > 0; i--) {
    const j = int(i + 1)
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

/**
 * The ten NetworkPolicies of `namespace`, whose Pods run `apps` (at least 7, in the order they
 * were dealt) and which belongs to `team`; choices drawn with `draws` ({int, pick, chance}),
 * allow ports from `allowPorts`. `teamLabel` puts the team in each policy's metadata labels.
 */
export function namespacePolicies({ namespace, team, apps, draws, allowPorts = ALLOW_PORTS, teamLabel = false }) {
  const { int, pick, chance } = draws
  const doc = (name, spec) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace, ...(teamLabel ? { labels: { team } } : {}) }, spec })
  const out = []
  // Most namespaces start from default-deny; the others let the namespace talk to itself.
  out.push(chance(0.6) ? doc('default-deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }) : doc('allow-same-namespace', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }))
  for (let k = 0; k < 6; k++) {
    const from = [{ podSelector: { matchLabels: { app: pick(apps) } } }]
    if (chance(0.5)) from.push({ namespaceSelector: { matchLabels: { team } }, podSelector: { matchLabels: { app: pick(APPS) } } })
    if (chance(0.2)) from.push({ podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['frontend', 'backend'] }] } })
    // A copy: the same choice in two documents must not become a YAML alias.
    const ports = structuredClone(pick(allowPorts))
    out.push(doc(`allow-${apps[k]}-${k}`, { podSelector: { matchLabels: { app: apps[k] } }, ingress: [{ from, ...(ports ? { ports } : {}) }] }))
  }
  const octet = int(256)
  out.push(
    doc('allow-frontend-from-lb', {
      podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['frontend'] }] },
      policyTypes: ['Ingress'],
      ingress: [
        {
          from: [{ ipBlock: { cidr: '10.0.0.0/8', except: [`10.${octet}.0.0/16`, `10.${(octet + 1) & 255}.${int(256)}.0/24`] } }, { ipBlock: { cidr: '203.0.113.0/24' } }],
          ports: [{ protocol: 'TCP', port: 8443 }, { port: 'http' }],
        },
      ],
    }),
  )
  // Egress lockdown of one app: its database, DNS, and the internet on 443.
  out.push(
    doc(`lockdown-${apps[6]}`, {
      podSelector: { matchLabels: { app: apps[6] } },
      policyTypes: ['Ingress', 'Egress'],
      ingress: [{ from: [{ podSelector: { matchLabels: { tier: 'frontend' } } }], ports: [{ port: 'http' }] }],
      egress: [
        { to: [{ podSelector: { matchLabels: { app: 'db' } } }], ports: [{ protocol: 'TCP', port: 5432 }] },
        { to: [{ namespaceSelector: { matchLabels: { role: 'dns' } } }], ports: [{ protocol: 'UDP', port: 53 }] },
        { to: [{ ipBlock: { cidr: '0.0.0.0/0', except: ['10.0.0.0/8', '172.16.0.0/12'] } }], ports: [{ protocol: 'TCP', port: 443 }] },
      ],
    }),
  )
  out.push(
    doc('allow-monitoring', {
      podSelector: {},
      ingress: [
        {
          from: [{ namespaceSelector: { matchLabels: { role: 'monitoring' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] } }],
          ports: [{ port: 'metrics' }],
        },
      ],
    }),
  )
  return out
}

/** Documents as one multi-document YAML text. */
export const yamlText = (docs) => docs.map((d) => stringify(d)).join('---\n')

/** One YAML text per group of `batch` documents: what one `policy apply -f file` would read. */
export function yamlTexts(docs, batch) {
  const texts = []
  for (let i = 0; i < docs.length; i += batch) texts.push(yamlText(docs.slice(i, i + batch)))
  return texts
}
