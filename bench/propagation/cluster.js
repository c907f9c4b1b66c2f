// The store content the 200 control-plane agents start from, and the change that is flipped:
// namespaces with team/env labels, Pods spread evenly over the nodes, the NetworkPolicies of the
// store benchmark (ten per namespace, the shapes real clusters use), and a few cluster tiers.
// Everything goes through loadObjects + applyObjects, as `flatnet policy apply -f` writes it.
import { APPS, POLICIES_PER_NAMESPACE, yamlTexts } from '../lib/manifests.js'
import { policyManifests } from '../store/manifests.js'

/**
 * `namespaces` namespaces `prop-NNNN` with `podsPerNamespace` Pods each, the Pods dealt round
 * robin to `nodes`, and 10 NetworkPolicies per namespace; plus `monitoring` and `dns`
 * namespaces and four ClusterNetworkPolicies. Returns YAML texts of at most `batch` documents.
 */
export function clusterDocuments({ nodes, namespaces, podsPerNamespace, batch = 100 }) {
  const policies = policyManifests('prop', namespaces * POLICIES_PER_NAMESPACE)
  const teamOf = new Map(policies.map((p) => [p.metadata.namespace, p.metadata.labels.team]))
  const docs = []
  for (const [name, labels] of [
    ['monitoring', { role: 'monitoring', env: 'prod' }],
    ['dns', { role: 'dns', env: 'prod' }],
    ['quarantine', { env: 'dev' }],
  ]) {
    docs.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } })
  }
  let pod = 0
  for (let n = 0; n < namespaces; n++) {
    const namespace = `prop-${String(n).padStart(4, '0')}`
    docs.push({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: namespace, labels: { team: teamOf.get(namespace), env: n % 3 === 0 ? 'staging' : 'prod' } } })
    for (let i = 0; i < podsPerNamespace; i++, pod++) {
      const app = APPS[i % APPS.length]
      docs.push({
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: `${app}-${i}`, namespace, labels: { app, tier: i % 2 === 0 ? 'frontend' : 'backend', version: `v${i % 3}` } },
        spec: {
          nodeName: nodes[pod % nodes.length],
          containers: [{ name: 'main', ports: [{ name: 'http', containerPort: 8080 }, { name: 'metrics', containerPort: 9090 }] }],
        },
        status: { podIPs: [{ ip: `10.${200 + Math.floor(pod / 65536)}.${Math.floor(pod / 256) % 256}.${pod % 256}` }] },
      })
    }
  }
  docs.push(...policies)
  const cnp = (name, tier, priority, subject, ingress) => ({ apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier, priority, subject, ingress } })
  docs.push(
    cnp('allow-monitoring', 'Admin', 10, { namespaces: {} }, [{ name: 'scrape', action: 'Accept', from: [{ namespaces: { matchLabels: { role: 'monitoring' } } }], protocols: [{ tcp: { destinationPort: { number: 9090 } } }] }]),
    cnp('prod-no-dev', 'Admin', 20, { namespaces: { matchLabels: { env: 'prod' } } }, [{ name: 'no-dev', action: 'Deny', from: [{ namespaces: { matchLabels: { env: 'dev' } } }] }]),
    cnp('backend-from-frontend', 'Admin', 30, { pods: { namespaceSelector: {}, podSelector: { matchLabels: { tier: 'backend' } } } }, [
      { name: 'frontends', action: 'Pass', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { tier: 'frontend' } } } }] },
    ]),
    cnp('prod-default-deny', 'Baseline', 100, { namespaces: { matchLabels: { env: 'prod' } } }, [{ name: 'deny', action: 'Deny', from: [{ namespaces: {} }] }]),
  )
  return { texts: yamlTexts(docs, batch), counts: { namespaces: namespaces + 3, pods: pod, networkPolicies: policies.length, clusterNetworkPolicies: 4 } }
}

/**
 * The change that is applied and deleted in turn: an Admin-tier Deny whose subject is every Pod,
 * so that every node with a Pod gets a different ruleset each time.
 */
export const FLIP_POLICY = {
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'bench-quarantine' },
  spec: {
    tier: 'Admin',
    priority: 5,
    subject: { pods: { namespaceSelector: {}, podSelector: {} } },
    ingress: [{ name: 'from-quarantine', action: 'Deny', from: [{ namespaces: { matchLabels: { 'kubernetes.io/metadata.name': 'quarantine' } } }] }],
  },
}
