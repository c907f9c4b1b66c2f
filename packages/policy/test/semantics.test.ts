/**
 * Named cases for what the upstream NetworkPolicy suite leaves out: endPort ranges, the
 * ClusterNetworkPolicy tiers and their ordering, CNP protocols and networks, HostEndpoints,
 * IPv6 and dual-stack addresses, deletion and snapshot immutability. Each case checks the
 * verdict and who decided it (direction, tier, policy, rule).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Protocol } from '@flatnet/core'
import { PolicyCompiler, type PolicySnapshot, type Verdict, type VerdictTier } from '../src/index.js'
import { loadPlain } from './helpers.js'

type Labels = Record<string, string>
type Manifest = Record<string, unknown>

const namespace = (name: string, labels: Labels): Manifest => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } })

function pod(ns: string, name: string, labels: Labels, ips: string[], ports: { name: string; containerPort: number; protocol?: Protocol }[] = []): Manifest {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels },
    spec: { containers: [{ name: 'main', ports }] },
    status: { podIPs: ips.map((ip) => ({ ip })) },
  }
}

function hostEndpoint(ns: string, name: string, labels: Labels, ips: string[], ports: { name: string; port: number; protocol?: Protocol }[] = []): Manifest {
  return { apiVersion: 'flatnet.dev/v1alpha1', kind: 'HostEndpoint', metadata: { name, namespace: ns, labels }, spec: { ips, ports, node: 'node-1' } }
}

const networkPolicy = (ns: string, name: string, spec: Manifest): Manifest => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: ns },
  spec,
})

function clusterPolicy(name: string, tier: 'Admin' | 'Baseline', priority: number, subject: Manifest, rules: { ingress?: Manifest[]; egress?: Manifest[] }): Manifest {
  return { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', metadata: { name }, spec: { tier, priority, subject, ...rules } }
}

const inNamespaces = (labels: Labels): Manifest => ({ namespaces: { matchLabels: labels } })
const podsIn = (nsLabels: Labels, podLabels: Labels): Manifest => ({ pods: { namespaceSelector: { matchLabels: nsLabels }, podSelector: { matchLabels: podLabels } } })
const tcp = (port: number): Manifest => ({ tcp: { destinationPort: { number: port } } })

/**
 * Two namespaces, three Pods and a HostEndpoint that shares the web Pods' labels:
 *
 *   prod/web     app=web            10.1.0.1          http 8080/TCP
 *   prod/db      app=db             10.1.0.2          pg 5432/TCP
 *   prod/vm      app=web role=host  10.3.0.1          ssh 22/TCP, http 9000/UDP   (HostEndpoint)
 *   dev/client   app=client         10.2.0.1          http 7070/TCP
 */
const BASE: Manifest[] = [
  namespace('prod', { env: 'prod' }),
  namespace('dev', { env: 'dev' }),
  pod('prod', 'web', { app: 'web' }, ['10.1.0.1'], [{ name: 'http', containerPort: 8080 }]),
  pod('prod', 'db', { app: 'db' }, ['10.1.0.2'], [{ name: 'pg', containerPort: 5432, protocol: 'TCP' }]),
  hostEndpoint('prod', 'vm', { app: 'web', role: 'host' }, ['10.3.0.1'], [
    { name: 'ssh', port: 22 },
    { name: 'http', port: 9000, protocol: 'UDP' },
  ]),
  pod('dev', 'client', { app: 'client' }, ['10.2.0.1'], [{ name: 'http', containerPort: 7070 }]),
]

function world(...extra: Manifest[]): { compiler: PolicyCompiler; snapshot: PolicySnapshot } {
  const compiler = new PolicyCompiler()
  const snapshot = compiler.load(loadPlain([...BASE, ...extra]))
  return { compiler, snapshot }
}

function one(m: Manifest): Parameters<PolicyCompiler['upsert']>[0] {
  const l = loadPlain([m])
  return [...l.policies, ...l.namespaces, ...l.endpoints][0]!
}

interface Want {
  allowed: boolean
  direction: 'ingress' | 'egress'
  tier: VerdictTier
  policy?: string
  rule?: number
}

/** Checks the verdict and the direction that decided it; returns the verdict for further checks. */
function expectFlow(s: PolicySnapshot, from: string, to: string, port: number, protocol: Protocol, want: Want): Verdict {
  const v = s.evaluateRefs(from, to, port, protocol)
  const d = v.decidedBy
  assert.deepEqual(
    { allowed: v.allowed, direction: d.direction, tier: d.tier, policy: d.policy, rule: d.rule },
    { policy: undefined, rule: undefined, ...want },
    `${from} -> ${to} ${port}/${protocol}: ${d.reason}`,
  )
  return v
}

const ALLOW_ALL_INGRESS = { ingress: [{}] }

describe('NetworkPolicy endPort', () => {
  const rangePolicy = (port: number, endPort: number, protocol?: Protocol): Manifest =>
    networkPolicy('prod', 'range', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ ports: [{ port, endPort, ...(protocol ? { protocol } : {}) }] }] })

  it('a port range includes both of its ends and nothing beyond them', () => {
    const { snapshot: s } = world(rangePolicy(5000, 5002))
    const denied = { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range' } as const
    const allowed = { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range', rule: 0 } as const
    expectFlow(s, 'dev/client', 'prod/db', 4999, 'TCP', denied)
    expectFlow(s, 'dev/client', 'prod/db', 5000, 'TCP', allowed)
    expectFlow(s, 'dev/client', 'prod/db', 5001, 'TCP', allowed)
    expectFlow(s, 'dev/client', 'prod/db', 5002, 'TCP', allowed)
    expectFlow(s, 'dev/client', 'prod/db', 5003, 'TCP', denied)
  })

  it('endPort equal to port opens exactly that one port', () => {
    const { snapshot: s } = world(rangePolicy(6000, 6000))
    expectFlow(s, 'dev/client', 'prod/db', 5999, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range' })
    expectFlow(s, 'dev/client', 'prod/db', 6000, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range', rule: 0 })
    expectFlow(s, 'dev/client', 'prod/db', 6001, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range' })
  })

  it('a port range opens its own protocol only', () => {
    const { snapshot: s } = world(rangePolicy(5000, 5002, 'UDP'))
    expectFlow(s, 'dev/client', 'prod/db', 5001, 'UDP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range', rule: 0 })
    expectFlow(s, 'dev/client', 'prod/db', 5001, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range' })
    expectFlow(s, 'dev/client', 'prod/db', 5001, 'SCTP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/range' })
  })
})

describe('ClusterNetworkPolicy tiers', () => {
  const dbAllowsAll = networkPolicy('prod', 'db-open', { podSelector: { matchLabels: { app: 'db' } }, ...ALLOW_ALL_INGRESS })
  const dbDeniesAll = networkPolicy('prod', 'db-closed', { podSelector: { matchLabels: { app: 'db' } }, policyTypes: ['Ingress'] })

  it('an Admin Deny overrides a NetworkPolicy that allows the flow', () => {
    const deny = clusterPolicy('deny-dev', 'Admin', 10, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Deny', from: [inNamespaces({ env: 'dev' })] }] })
    const { snapshot: s } = world(dbAllowsAll, deny)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'Admin', policy: 'deny-dev', rule: 0 })
    expectFlow(s, 'prod/web', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-open', rule: 0 })
  })

  const devEgressClosed = networkPolicy('dev', 'no-egress', { podSelector: {}, policyTypes: ['Egress'] })
  const letClientOut = clusterPolicy('let-client-out', 'Admin', 10, inNamespaces({ env: 'dev' }), { egress: [{ action: 'Accept', to: [podsIn({ env: 'prod' }, { app: 'db' })] }] })

  it('an Admin Accept on egress lifts the source egress isolation for the flows it matches', () => {
    const { snapshot: s } = world(devEgressClosed, letClientOut)
    const v = expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'egress', tier: 'Admin', policy: 'let-client-out', rule: 0 })
    assert.equal(v.ingress.tier, 'Default')
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'TCP', { allowed: false, direction: 'egress', tier: 'NetworkPolicy', policy: 'dev/no-egress' })
  })

  it('an Admin Accept on egress does not bypass ingress policy at the destination', () => {
    const { snapshot: s } = world(devEgressClosed, letClientOut, dbDeniesAll)
    const v = expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-closed' })
    assert.deepEqual([v.egress.allowed, v.egress.tier, v.egress.policy], [true, 'Admin', 'let-client-out'])
  })

  const passDev = clusterPolicy('pass-dev', 'Admin', 10, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Pass', from: [inNamespaces({ env: 'dev' })] }] })
  const denyDev = clusterPolicy('deny-dev', 'Admin', 20, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Deny', from: [inNamespaces({ env: 'dev' })] }] })

  it('Pass skips the remaining Admin policies', () => {
    const { snapshot: s } = world(passDev, denyDev)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
    // Without the Pass the later Deny applies.
    const { snapshot: t } = world(denyDev)
    expectFlow(t, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'Admin', policy: 'deny-dev', rule: 0 })
  })

  it('Pass hands the decision to the NetworkPolicy tier', () => {
    const fromDev = networkPolicy('prod', 'from-dev', {
      podSelector: { matchLabels: { app: 'db' } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: 'dev' } }, podSelector: { matchLabels: { app: 'client' } } }] }],
    })
    const { snapshot: s } = world(passDev, denyDev, fromDev)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dev', rule: 0 })
    const { snapshot: t } = world(passDev, denyDev, dbDeniesAll)
    expectFlow(t, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-closed' })
  })

  const baselineDenyDev = clusterPolicy('baseline-deny-dev', 'Baseline', 10, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Deny', from: [inNamespaces({ env: 'dev' })] }] })

  it('after a Pass with no isolating NetworkPolicy the Baseline tier decides', () => {
    const { snapshot: s } = world(passDev, baselineDenyDev)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'Baseline', policy: 'baseline-deny-dev', rule: 0 })
  })

  it('the Baseline tier applies only where no NetworkPolicy isolates the endpoint', () => {
    const { snapshot: s } = world(baselineDenyDev, dbAllowsAll)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-open', rule: 0 })
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'TCP', { allowed: false, direction: 'ingress', tier: 'Baseline', policy: 'baseline-deny-dev', rule: 0 })
  })

  it('a Baseline Accept does not open what a NetworkPolicy isolates', () => {
    const accept = clusterPolicy('baseline-accept', 'Baseline', 10, inNamespaces({}), { ingress: [{ action: 'Accept', from: [inNamespaces({})] }] })
    const { snapshot: s } = world(accept, dbDeniesAll)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-closed' })
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'TCP', { allowed: true, direction: 'ingress', tier: 'Baseline', policy: 'baseline-accept', rule: 0 })
  })

  it('a lower priority number is evaluated first, whatever the names', () => {
    const accept = clusterPolicy('z-accept', 'Admin', 1, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Accept', from: [inNamespaces({ env: 'dev' })] }] })
    const deny = clusterPolicy('a-deny', 'Admin', 2, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Deny', from: [inNamespaces({ env: 'dev' })] }] })
    const { snapshot: s } = world(deny, accept)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'Admin', policy: 'z-accept', rule: 0 })
  })

  it('equal priorities are ordered by name, whatever the load order', () => {
    const deny = clusterPolicy('b-deny', 'Admin', 5, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Deny', from: [inNamespaces({ env: 'dev' })] }] })
    const accept = clusterPolicy('a-accept', 'Admin', 5, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Accept', from: [inNamespaces({ env: 'dev' })] }] })
    for (const order of [
      [deny, accept],
      [accept, deny],
    ]) {
      const { snapshot: s } = world(...order)
      expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'Admin', policy: 'a-accept', rule: 0 })
    }
  })

  it('within a ClusterNetworkPolicy the first matching rule wins', () => {
    const ordered = clusterPolicy('ordered', 'Admin', 10, inNamespaces({ env: 'prod' }), {
      ingress: [
        { name: 'nobody', action: 'Deny', from: [podsIn({}, { app: 'nobody' })] },
        { name: 'dev-in', action: 'Accept', from: [inNamespaces({ env: 'dev' })] },
        { name: 'dev-out', action: 'Deny', from: [inNamespaces({ env: 'dev' })] },
      ],
    })
    const { snapshot: s } = world(ordered, dbDeniesAll)
    const v = expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'Admin', policy: 'ordered', rule: 1 })
    assert.equal(v.decidedBy.ruleName, 'dev-in')
  })
})

describe('ClusterNetworkPolicy protocols and networks', () => {
  const egressDeny = (protocols: Manifest[]): Manifest =>
    clusterPolicy('egress-deny', 'Admin', 10, inNamespaces({ env: 'dev' }), { egress: [{ action: 'Deny', to: [inNamespaces({ env: 'prod' })], protocols }] })

  it('a port number matches that port and protocol only', () => {
    const { snapshot: s } = world(egressDeny([tcp(5432)]))
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'egress', tier: 'Admin', policy: 'egress-deny', rule: 0 })
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'UDP', { allowed: true, direction: 'ingress', tier: 'Default' })
    expectFlow(s, 'dev/client', 'prod/db', 5433, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
  })

  it('a port range includes both of its ends', () => {
    const { snapshot: s } = world(egressDeny([{ udp: { destinationPort: { range: { start: 8000, end: 8002 } } } }]))
    const denied = { allowed: false, direction: 'egress', tier: 'Admin', policy: 'egress-deny', rule: 0 } as const
    const open = { allowed: true, direction: 'ingress', tier: 'Default' } as const
    expectFlow(s, 'dev/client', 'prod/web', 7999, 'UDP', open)
    expectFlow(s, 'dev/client', 'prod/web', 8000, 'UDP', denied)
    expectFlow(s, 'dev/client', 'prod/web', 8002, 'UDP', denied)
    expectFlow(s, 'dev/client', 'prod/web', 8003, 'UDP', open)
    expectFlow(s, 'dev/client', 'prod/web', 8001, 'TCP', open)
  })

  it("destinationNamedPort resolves on the destination, with that port's own protocol", () => {
    const { snapshot: s } = world(egressDeny([{ destinationNamedPort: 'http' }]))
    const denied = { allowed: false, direction: 'egress', tier: 'Admin', policy: 'egress-deny', rule: 0 } as const
    const open = { allowed: true, direction: 'ingress', tier: 'Default' } as const
    // prod/web's http is 8080/TCP; prod/vm's http is 9000/UDP; the source's own http (7070) is irrelevant.
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'TCP', denied)
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'UDP', open)
    expectFlow(s, 'dev/client', 'prod/vm', 9000, 'UDP', denied)
    expectFlow(s, 'dev/client', 'prod/vm', 8080, 'TCP', open)
    expectFlow(s, 'dev/client', 'prod/web', 7070, 'TCP', open)
  })

  it('a networks peer matches endpoint addresses and outside addresses alike', () => {
    const deny = clusterPolicy('deny-net', 'Admin', 10, inNamespaces({ env: 'dev' }), { egress: [{ action: 'Deny', to: [{ networks: ['10.1.0.0/24'] }] }] })
    const { snapshot: s } = world(deny)
    const denied = { allowed: false, direction: 'egress', tier: 'Admin', policy: 'deny-net', rule: 0 } as const
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'TCP', denied)
    expectFlow(s, 'dev/client', '10.1.0.77', 8080, 'TCP', denied)
    expectFlow(s, 'dev/client', 'prod/vm', 22, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
    expectFlow(s, 'dev/client', '10.1.1.1', 22, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
  })
})

describe('HostEndpoints', () => {
  it('a NetworkPolicy selects Pods and HostEndpoints alike', () => {
    const web = networkPolicy('prod', 'web-from-dev', {
      podSelector: { matchLabels: { app: 'web' } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { env: 'dev' } } }] }],
    })
    const { snapshot: s } = world(web)
    for (const dst of ['prod/web', 'prod/vm']) {
      expectFlow(s, 'dev/client', dst, 443, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/web-from-dev', rule: 0 })
      expectFlow(s, 'prod/db', dst, 443, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/web-from-dev' })
    }
  })

  it("a named port on a HostEndpoint destination resolves to the host's port and protocol", () => {
    const ssh = networkPolicy('prod', 'ssh', { podSelector: { matchLabels: { role: 'host' } }, ingress: [{ ports: [{ port: 'ssh' }] }] })
    const { snapshot: s } = world(ssh)
    expectFlow(s, 'dev/client', 'prod/vm', 22, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/ssh', rule: 0 })
    expectFlow(s, 'dev/client', 'prod/vm', 2222, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/ssh' })
    expectFlow(s, 'dev/client', 'prod/vm', 22, 'UDP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/ssh' })
  })

  it('a HostEndpoint source is matched by podSelector peers', () => {
    const db = networkPolicy('prod', 'db-from-hosts', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ podSelector: { matchLabels: { role: 'host' } } }] }] })
    const { snapshot: s } = world(db)
    expectFlow(s, 'prod/vm', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-from-hosts', rule: 0 })
    expectFlow(s, '10.3.0.1', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-from-hosts', rule: 0 })
    expectFlow(s, 'prod/web', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db-from-hosts' })
  })
})

describe('addresses', () => {
  it('an IPv6 ipBlock admits its block minus the except ranges', () => {
    const v6 = networkPolicy('prod', 'v6', {
      podSelector: { matchLabels: { app: 'db' } },
      ingress: [{ from: [{ ipBlock: { cidr: 'fd00:1::/64', except: ['fd00:1::/120'] } }] }],
    })
    const { snapshot: s } = world(v6)
    const denied = { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/v6' } as const
    expectFlow(s, 'fd00:1::1:1', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/v6', rule: 0 })
    expectFlow(s, 'FD00:0001:0000:0000:0000:0000:0001:0001', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/v6', rule: 0 })
    expectFlow(s, 'fd00:1::ff', 'prod/db', 5432, 'TCP', denied)
    expectFlow(s, 'fd00:2::1', 'prod/db', 5432, 'TCP', denied)
    expectFlow(s, '10.9.0.1', 'prod/db', 5432, 'TCP', denied)
  })

  it('an address outside the inventory is matched by ipBlock peers, never by selectors', () => {
    const db = networkPolicy('prod', 'db', {
      podSelector: { matchLabels: { app: 'db' } },
      ingress: [{ from: [{ namespaceSelector: {} }] }, { from: [{ ipBlock: { cidr: '192.0.2.0/24' } }] }],
    })
    const { snapshot: s } = world(db)
    const v = expectFlow(s, '192.0.2.7', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db', rule: 1 })
    assert.deepEqual([v.egress.allowed, v.egress.tier], [true, 'Default'])
    expectFlow(s, '198.51.100.1', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db' })
    // An inventory address stands for its endpoint, so selectors apply to it.
    expectFlow(s, '10.2.0.1', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/db', rule: 0 })
  })

  describe('dual-stack endpoints', () => {
    const dual = pod('prod', 'dual', { app: 'dual' }, ['10.1.0.50', 'fd00:1::50'])
    const v6host = hostEndpoint('prod', 'v6host', { app: 'v6host' }, ['fd00:2::1'])
    const fromDualV6 = networkPolicy('prod', 'from-dual-v6', { podSelector: { matchLabels: { app: 'v6host' } }, ingress: [{ from: [{ ipBlock: { cidr: 'fd00:1::/64' } }] }] })

    it('a dual-stack source reaches a single-stack IPv6 destination from its IPv6 address', () => {
      const { snapshot: s } = world(dual, v6host, fromDualV6)
      expectFlow(s, 'prod/dual', 'prod/v6host', 443, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dual-v6', rule: 0 })
      expectFlow(s, 'fd00:1::50', 'prod/v6host', 443, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dual-v6', rule: 0 })
    })

    it("an endpoint named by one of its addresses is matched by that address's family only", () => {
      const fromDualV4 = networkPolicy('prod', 'from-dual-v4', { podSelector: { matchLabels: { app: 'db' } }, ingress: [{ from: [{ ipBlock: { cidr: '10.1.0.0/24' } }] }] })
      const { snapshot: s } = world(dual, v6host, fromDualV6, fromDualV4)
      expectFlow(s, '10.1.0.50', 'prod/v6host', 443, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dual-v6' })
      expectFlow(s, '10.1.0.50', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dual-v4', rule: 0 })
      expectFlow(s, 'fd00:1::50', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dual-v4' })
      // Named by namespace/name, towards an IPv4-only destination: the IPv4 address is used.
      expectFlow(s, 'prod/dual', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/from-dual-v4', rule: 0 })
    })

    it('egress ipBlocks see the destination address of the family the source uses', () => {
      const out = networkPolicy('prod', 'dual-out', { podSelector: { matchLabels: { app: 'dual' } }, policyTypes: ['Egress'], egress: [{ to: [{ ipBlock: { cidr: 'fd00:2::/64' } }] }] })
      const { snapshot: s } = world(dual, v6host, out)
      expectFlow(s, 'prod/dual', 'prod/v6host', 443, 'TCP', { allowed: true, direction: 'egress', tier: 'NetworkPolicy', policy: 'prod/dual-out', rule: 0 })
      expectFlow(s, 'prod/dual', 'prod/web', 8080, 'TCP', { allowed: false, direction: 'egress', tier: 'NetworkPolicy', policy: 'prod/dual-out' })
    })
  })
})

describe('changes', () => {
  const closed = networkPolicy('prod', 'closed', { podSelector: {}, policyTypes: ['Ingress'] })

  it('deleting the only isolating NetworkPolicy restores default allow', () => {
    const { compiler, snapshot: s } = world(closed)
    expectFlow(s, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/closed' })
    compiler.delete({ kind: 'NetworkPolicy', namespace: 'prod', name: 'closed' })
    const t = compiler.commit()
    expectFlow(t, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
    assert.equal(t.networkPolicies.get('prod/closed'), undefined)
  })

  it('deleting a ClusterNetworkPolicy removes it from every endpoint it covered', () => {
    const deny = clusterPolicy('deny-all', 'Baseline', 0, inNamespaces({}), { ingress: [{ action: 'Deny', from: [inNamespaces({})] }] })
    const { compiler, snapshot: s } = world(deny)
    expectFlow(s, 'prod/web', 'dev/client', 7070, 'TCP', { allowed: false, direction: 'ingress', tier: 'Baseline', policy: 'deny-all', rule: 0 })
    compiler.delete({ kind: 'ClusterNetworkPolicy', name: 'deny-all' })
    const t = compiler.commit()
    for (const dst of ['prod/web', 'prod/db', 'prod/vm', 'dev/client']) expectFlow(t, 'prod/web', dst, 80, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
  })

  it('a snapshot taken before a change keeps answering as before', () => {
    const admin = clusterPolicy('deny-dev', 'Admin', 0, inNamespaces({ env: 'prod' }), { ingress: [{ action: 'Deny', from: [inNamespaces({ env: 'dev' })] }] })
    const { compiler, snapshot: before } = world(admin)
    const flows: [string, string, number, Protocol][] = [
      ['dev/client', 'prod/db', 5432, 'TCP'],
      ['prod/web', 'prod/db', 5432, 'TCP'],
      ['prod/db', 'dev/client', 7070, 'TCP'],
      ['10.2.0.1', 'prod/vm', 22, 'TCP'],
    ]
    const answers = flows.map((f) => JSON.stringify(before.evaluateRefs(...f)))
    compiler.upsert(one(closed))
    compiler.upsert(one(namespace('dev', { env: 'prod' })))
    compiler.upsert(one(pod('dev', 'client', { app: 'client' }, ['10.2.0.99'])))
    compiler.delete({ kind: 'ClusterNetworkPolicy', name: 'deny-dev' })
    const after = compiler.commit()
    assert.notEqual(after, before)
    expectFlow(after, 'prod/web', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/closed' })
    assert.deepEqual(
      flows.map((f) => JSON.stringify(before.evaluateRefs(...f))),
      answers,
    )
    expectFlow(before, 'dev/client', 'prod/db', 5432, 'TCP', { allowed: false, direction: 'ingress', tier: 'Admin', policy: 'deny-dev', rule: 0 })
    expectFlow(before, '10.2.0.1', 'prod/vm', 22, 'TCP', { allowed: false, direction: 'ingress', tier: 'Admin', policy: 'deny-dev', rule: 0 })
  })
})

describe('policyTypes defaulting, as the API server does it (SetDefaults_NetworkPolicy)', () => {
  // Kubernetes defaults policyTypes only when the list is empty, and adds Egress only when
  // there is at least one egress rule (len(spec.egress) != 0).

  it('`egress: []` without policyTypes isolates ingress only', () => {
    const { snapshot: s } = world(networkPolicy('prod', 'odd', { podSelector: {}, ingress: [{}], egress: [] }))
    expectFlow(s, 'prod/web', 'dev/client', 7070, 'TCP', { allowed: true, direction: 'ingress', tier: 'Default' })
  })

  it('an empty policyTypes list defaults like a missing one', () => {
    const { snapshot: s } = world(networkPolicy('prod', 'empty-types', { podSelector: {}, policyTypes: [] }))
    expectFlow(s, 'dev/client', 'prod/web', 8080, 'TCP', { allowed: false, direction: 'ingress', tier: 'NetworkPolicy', policy: 'prod/empty-types' })
  })
})
