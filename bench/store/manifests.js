// NetworkPolicy manifests for the store benchmark, as `flatnet policy apply -f` reads them: YAML
// text, ten policies per namespace in the shapes real clusters use (default deny, app-to-app
// allows with named and numbered ports, ipBlock with except, an egress lockdown, monitoring).
// Generated from a seed, so that every run and every process writes the same documents.
import { stringify } from 'yaml'
import { seededRandom } from '../../packages/core/dist/src/index.js'

export const POLICIES_PER_NAMESPACE = 10

const APPS = ['web', 'ui', 'gateway', 'api', 'auth', 'cart', 'catalog', 'search', 'orders', 'payments', 'worker', 'db', 'cache', 'queue']
const TEAMS = Array.from({ length: 40 }, (_, i) => `team-${String(i).padStart(2, '0')}`)


function seedOf(text) {
  let h = 2166136261
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619)
  return h >>> 0
}

/**
 * `count` NetworkPolicy manifests in namespaces `<prefix>-0000`, `<prefix>-0001`, ...; distinct
 * prefixes give distinct keys, so each apply creates objects instead of finding them unchanged.
 */
export function policyManifests(prefix, count) {
  const rng = seededRandom(seedOf(prefix))
  const int = (n) => Math.floor(rng() * n)
  const pick = (list) => list[int(list.length)]
  const out = []
  for (let n = 0; out.length < count; n++) {
    const namespace = `${prefix}-${String(n).padStart(4, '0')}`
    const team = pick(TEAMS)
    const apps = APPS.slice()
    for (let i = apps.length - 1; i > 0; i--) {
      const j = int(i + 1)
      ;[apps[i], apps[j]] = [apps[j], apps[i]]
    }
    const doc = (name, spec) => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace, labels: { team } }, spec })
    const ns = []
    ns.push(rng() < 0.6 ? doc('default-deny-ingress', { podSelector: {}, policyTypes: ['Ingress'] }) : doc('allow-same-namespace', { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }))
    for (let k = 0; k < 6; k++) {
      const from = [{ podSelector: { matchLabels: { app: pick(apps) } } }]
      if (rng() < 0.5) from.push({ namespaceSelector: { matchLabels: { team } }, podSelector: { matchLabels: { app: pick(APPS) } } })
      if (rng() < 0.2) from.push({ podSelector: { matchExpressions: [{ key: 'tier', operator: 'In', values: ['frontend', 'backend'] }] } })
      const ports = [[{ protocol: 'TCP', port: 8080 }], [{ port: 'http' }, { port: 'metrics' }], [{ protocol: 'TCP', port: 9000, endPort: 9100 }], [{ port: 8080 }, { protocol: 'UDP', port: 53 }], undefined][int(5)]
      ns.push(doc(`allow-${apps[k]}-${k}`, { podSelector: { matchLabels: { app: apps[k] } }, ingress: [{ from, ...(ports ? { ports } : {}) }] }))
    }
    const octet = int(256)
    ns.push(
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
    ns.push(
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
    ns.push(
      doc('allow-monitoring', {
        podSelector: {},
        ingress: [{ from: [{ namespaceSelector: { matchLabels: { role: 'monitoring' }, matchExpressions: [{ key: 'env', operator: 'NotIn', values: ['dev'] }] } }], ports: [{ port: 'metrics' }] }],
      }),
    )
    out.push(...ns.slice(0, count - out.length))
  }
  return out
}

/** One YAML text per group of `batch` manifests: what one `policy apply -f file` would read. */
export function yamlTexts(manifests, batch) {
  const texts = []
  for (let i = 0; i < manifests.length; i += batch) texts.push(manifests.slice(i, i + batch).map((m) => stringify(m)).join('---\n'))
  return texts
}
