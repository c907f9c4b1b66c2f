/**
 * The syncer against a fake API server speaking the real list/watch protocol (recorded objects)
 * and a real redis-server.
 */
import assert from 'node:assert/strict'
import { beforeEach, describe, it } from 'node:test'
import { applyObjects, type FlatnetStore } from '@flatnet/store'
import { loadObjects } from '@flatnet/policy'
import type { K8sSyncer } from '../src/syncer.js'
import { SOURCE_ANNOTATION } from '../src/ownership.js'
import type { FakeApiServer } from './fake-api-server.js'
import { FAST, memoryLog, SyncerWorld, until } from './helpers.js'

type Json = Record<string, unknown>

const world = new SyncerWorld()
let server: FakeApiServer
let store: FlatnetStore
beforeEach(() => {
  server = world.server
  store = world.store
})

const syncer = (opts: { log?: ReturnType<typeof memoryLog>['log']; pageSize?: number } = {}): K8sSyncer => world.start(opts)
const stopSyncer = (s: K8sSyncer): Promise<void> => world.stop(s)

const keys = async (kind: 'Namespace' | 'Endpoint' | 'NetworkPolicy' | 'ClusterNetworkPolicy'): Promise<string[]> => (await store.list(kind)).map((o) => o.key)

const podEndpoints = ['data/postgres-0', 'kube-system/coredns-668d6bf9bc-4kq7d', 'shop/api-0', 'shop/web-7d9c5b6f4-x2x9k']

async function feedLength(): Promise<number> {
  return Number(await store.client.xlen(store.keys.feed))
}

/** The most recent write of a pod: a Running pod at `ip` on worker-1. */
function runningPod(namespace: string, name: string, ip: string, labels: Json = { app: 'burst' }): Json {
  return {
    metadata: { name, namespace, uid: `uid-${name}`, labels },
    spec: { nodeName: 'worker-1', containers: [{ name: 'main', image: 'example/app:1', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
    status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] },
  }
}

describe('Kubernetes syncer: mirroring', () => {
  it('mirrors the recorded cluster: namespaces, pods with an IP (not hostNetwork, not terminal), policies; refuses and reports an invalid ClusterNetworkPolicy', async () => {
    const { log, lines } = memoryLog()
    const s = syncer({ log })
    await s.whenSynced(15_000)
    assert.deepEqual(await keys('Namespace'), ['batch', 'data', 'default', 'kube-system', 'shop'])
    assert.deepEqual(await keys('Endpoint'), podEndpoints)
    assert.deepEqual(await keys('NetworkPolicy'), ['data/db-from-shop-api', 'shop/default-deny', 'shop/web-from-anywhere'])
    assert.deepEqual(await keys('ClusterNetworkPolicy'), ['data-only-from-shop'])
    const web = (await store.get('Endpoint', 'shop/web-7d9c5b6f4-x2x9k'))!.value as Json
    assert.deepEqual((web.status as Json).podIPs, [{ ip: '10.244.1.12' }, { ip: 'fd00:10:244:1::c' }])
    assert.equal(((web.metadata as Json).annotations as Json)[SOURCE_ANNOTATION], 'kubernetes')
    // Reported: one log line naming the object and the field, one count.
    const report = lines().find((l) => l.object === 'egress-to-saas')
    assert.ok(report, 'the invalid object is logged')
    assert.match(String((report.issues as string[])[0]), /spec\.egress\[0\]\.to\[0\]\.domainNames/)
    assert.equal(await s.metrics.value('flatnet_k8s_invalid_objects_total', { resource: 'clusternetworkpolicies' }), 1)
    assert.equal(await s.metrics.value('flatnet_k8s_invalid_objects', { resource: 'clusternetworkpolicies' }), 1)
    // The whole first sync is one store revision (it fits one write).
    assert.equal(await store.revision(), 1)
  })

  it('a restart lists again and writes nothing: same revision, no feed entry', async () => {
    const first = syncer()
    await first.whenSynced(15_000)
    const revision = await store.revision()
    const feed = await feedLength()
    await stopSyncer(first)
    const second = syncer()
    await second.whenSynced(15_000)
    assert.equal(await store.revision(), revision)
    assert.equal(await feedLength(), feed)
    assert.equal(await second.metrics.value('flatnet_k8s_store_writes_total', { result: 'written' }), 0)
    assert.equal(await second.metrics.value('flatnet_k8s_store_ops_total', { op: 'put' }), 0)
  })

  it('on (re)list deletes only objects it owns that the API no longer has; never policy-apply or agent objects', async () => {
    const foreign = loadObjects(
      [
        {
          file: 'apply.yaml',
          text: JSON.stringify({
            apiVersion: 'v1',
            kind: 'List',
            items: [
              { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'from-cli', namespace: 'shop' }, spec: { podSelector: {} } },
              { apiVersion: 'flatnet.dev/v1alpha1', kind: 'HostEndpoint', metadata: { name: 'vm-db', namespace: 'data', labels: { role: 'db' } }, spec: { node: 'vm-1', ips: ['192.0.2.10'] } },
              { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'vms' } },
            ],
          }),
        },
      ],
      { accept: 'any' },
    )
    await applyObjects(store, foreign)
    // Left over from an earlier run: a pod that is gone from the API.
    await store.write([
      {
        op: 'put',
        kind: 'Endpoint',
        key: 'shop/gone-1',
        value: {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'gone-1', namespace: 'shop', labels: {}, annotations: { [SOURCE_ANNOTATION]: 'kubernetes' } },
          spec: { containers: [{ name: 'main', ports: [] }] },
          status: { podIPs: [{ ip: '10.244.9.9' }] },
        },
      },
      // Another cluster's syncer (another source) is not ours either.
      {
        op: 'put',
        kind: 'Endpoint',
        key: 'shop/east-1',
        value: {
          apiVersion: 'v1',
          kind: 'Pod',
          metadata: { name: 'east-1', namespace: 'shop', labels: {}, annotations: { [SOURCE_ANNOTATION]: 'kubernetes-east' } },
          spec: { containers: [{ name: 'main', ports: [] }] },
          status: { podIPs: [{ ip: '10.245.0.1' }] },
        },
      },
    ])
    const s = syncer()
    await s.whenSynced(15_000)
    assert.deepEqual(await keys('Endpoint'), ['data/postgres-0', 'data/vm-db', 'kube-system/coredns-668d6bf9bc-4kq7d', 'shop/api-0', 'shop/east-1', 'shop/web-7d9c5b6f4-x2x9k'])
    assert.ok((await keys('NetworkPolicy')).includes('shop/from-cli'))
    assert.ok((await keys('Namespace')).includes('vms'))
  })

  it('a key already held by another writer is not overwritten: reported as a conflict', async () => {
    const applied = loadObjects([{ file: 'np.yaml', text: JSON.stringify({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'default-deny', namespace: 'shop' }, spec: { podSelector: { matchLabels: { x: 'y' } } } }) }])
    await applyObjects(store, applied)
    const { log, lines } = memoryLog()
    const s = syncer({ log })
    await s.whenSynced(15_000)
    const np = (await store.get('NetworkPolicy', 'shop/default-deny'))!.value as Json
    assert.deepEqual((np.spec as Json).podSelector, { matchLabels: { x: 'y' } }, 'the applied policy is untouched')
    assert.equal(await s.metrics.value('flatnet_k8s_conflicts'), 1)
    assert.ok(lines().some((l) => l.key === 'shop/default-deny' && /another writer/.test(String(l.msg))))
  })

  it('adopts the unmarked Pod endpoint a node agent wrote on CNI ADD (no labels yet) once the API shows the pod with its IP', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    // The pod is scheduled; the API has no IP for it yet, so nothing is mirrored.
    const pod = runningPod('shop', 'fresh-1', '10.244.1.99', { app: 'web', tier: 'frontend' })
    server.put('pods', { ...pod, status: { phase: 'Pending' } })
    await s.whenSynced(5_000)
    assert.equal(await store.get('Endpoint', 'shop/fresh-1'), undefined)
    // CNI ADD: the agent stores the pod with the address it assigned, and no labels.
    await store.write([
      {
        op: 'put',
        kind: 'Endpoint',
        key: 'shop/fresh-1',
        value: { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'fresh-1', namespace: 'shop', labels: {} }, spec: { nodeName: 'worker-1', containers: [{ name: 'main', ports: [] }] }, status: { podIPs: [{ ip: '10.244.1.99' }] } },
      },
    ])
    // The kubelet reports the IP: the syncer completes the endpoint.
    server.put('pods', pod)
    await until('labels filled in', 5_000, async () => ((await store.get('Endpoint', 'shop/fresh-1'))?.value as { metadata: { labels: Json } }).metadata.labels.app === 'web')
    const stored = (await store.get('Endpoint', 'shop/fresh-1'))!.value as { metadata: { annotations: Json } }
    assert.equal(stored.metadata.annotations[SOURCE_ANNOTATION], 'kubernetes')
    assert.equal(await s.metrics.value('flatnet_k8s_conflicts'), 0)
  })

  it('follows watch events: add, modify, delete; a pod that finishes, loses its IP or appears with one', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    server.put('pods', runningPod('shop', 'new-1', '10.244.1.50'))
    const pending = server.get('pods', 'shop/web-7d9c5b6f4-p8m2n')!
    server.put('pods', { ...pending, spec: { ...(pending.spec as Json), nodeName: 'worker-2' }, status: { phase: 'Running', podIP: '10.244.2.60', podIPs: [{ ip: '10.244.2.60' }] } })
    const postgres = server.get('pods', 'data/postgres-0')!
    server.put('pods', { ...postgres, status: { ...(postgres.status as Json), phase: 'Failed' } })
    const api = server.get('pods', 'shop/api-0')!
    server.put('pods', { ...api, metadata: { ...(api.metadata as Json), labels: { app: 'api', version: 'v2' } } })
    server.remove('networkpolicies', 'shop/web-from-anywhere')
    const ns = server.get('namespaces', 'shop')!
    server.put('namespaces', { ...ns, metadata: { ...(ns.metadata as Json), labels: { ...((ns.metadata as Json).labels as Json), team: 'storefront' } } })
    await until('the store follows', 10_000, async () => (await keys('Endpoint')).includes('shop/new-1') && !(await keys('Endpoint')).includes('data/postgres-0'))
    await s.whenSynced(10_000)
    assert.deepEqual(await keys('Endpoint'), ['kube-system/coredns-668d6bf9bc-4kq7d', 'shop/api-0', 'shop/new-1', 'shop/web-7d9c5b6f4-p8m2n', 'shop/web-7d9c5b6f4-x2x9k'])
    assert.deepEqual(((await store.get('Endpoint', 'shop/api-0'))!.value as { metadata: Json }).metadata.labels, { app: 'api', version: 'v2' })
    assert.deepEqual(((await store.get('Endpoint', 'shop/web-7d9c5b6f4-p8m2n'))!.value as { spec: Json }).spec.nodeName, 'worker-2')
    assert.deepEqual(await keys('NetworkPolicy'), ['data/db-from-shop-api', 'shop/default-deny'])
    assert.equal(((await store.get('Namespace', 'shop'))!.value as { metadata: { labels: Json } }).metadata.labels.team, 'storefront')
    // A status-only change (conditions) writes nothing.
    const web = server.get('pods', 'shop/web-7d9c5b6f4-x2x9k')!
    await world.assertPodChangeWritesNothing(s, 4, () => server.put('pods', { ...web, status: { ...(web.status as Json), conditions: [{ type: 'Ready', status: 'False' }] } }))
  })

  it('coalesces a burst of changes into few store writes', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    const before = await store.revision()
    const feedBefore = await feedLength()
    for (let i = 0; i < 200; i++) server.put('pods', runningPod('burst', `p-${i}`, `10.250.${i >> 8}.${i & 255}`))
    await until('200 pods in the store', 10_000, async () => (await keys('Endpoint')).filter((k) => k.startsWith('burst/')).length === 200)
    const writes = (await store.revision()) - before
    assert.ok(writes >= 1 && writes <= 10, `200 pod events took ${writes} store writes`)
    assert.equal((await feedLength()) - feedBefore, 200, 'one feed entry per pod')
  })

  it('a bookmark moves the resourceVersion; a watch the server ends resumes from it without a new list', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    await until('watches open', 5_000, () => server.watchCount() === 4)
    // Changes elsewhere move the server's resourceVersion past what the pod watch saw.
    server.put('namespaces', { metadata: { name: 'extra', labels: { 'kubernetes.io/metadata.name': 'extra' } } })
    const bookmarked = server.bookmark()
    await until('the bookmark is taken', 5_000, () => s.status().resources.pods?.resourceVersion === String(bookmarked))
    const watchesBefore = server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === '1').length
    assert.equal(server.endWatches('close', 'pods'), 1)
    await until('the pod watch is back', 5_000, () => server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === '1').length === watchesBefore + 1)
    const resumed = server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === '1').at(-1)!
    assert.equal(resumed.query.get('resourceVersion'), String(bookmarked))
    assert.equal(resumed.query.get('allowWatchBookmarks'), 'true')
    assert.equal(server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === null).length, 1, 'no second list')
    assert.equal(await s.metrics.value('flatnet_k8s_events_total', { resource: 'pods', type: 'BOOKMARK' }), 1)
  })

  it('a dropped watch connection resumes from the last resourceVersion and misses nothing', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    await until('watches open', 5_000, () => server.watchCount() === 4)
    server.endWatches('drop', 'pods')
    // Written while the pod watch is down: the resumed watch replays it from the history.
    server.put('pods', runningPod('shop', 'while-down', '10.244.1.77'))
    await until('the pod arrives', 10_000, async () => (await keys('Endpoint')).includes('shop/while-down'))
    assert.equal(server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === null).length, 1, 'resumed, not listed again')
    assert.equal(await s.metrics.value('flatnet_k8s_watch_restarts_total', { resource: 'pods', reason: 'dropped' }), 1)
    assert.equal(await s.metrics.value('flatnet_k8s_api_errors_total', { resource: 'pods' }), 0)
  })

  it('410 Gone after compaction: lists again and catches up, deleting what vanished meanwhile', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    await until('watches open', 5_000, () => server.watchCount() === 4)
    // The syncer is cut off; meanwhile a pod goes, another comes, and the history is compacted.
    server.setBlocked('token-a', true)
    server.remove('pods', 'shop/api-0')
    server.put('pods', runningPod('shop', 'api-1', '10.244.2.6'))
    server.compact()
    server.setBlocked('token-a', false)
    await until('the store catches up', 15_000, async () => {
      const eps = await keys('Endpoint')
      return eps.includes('shop/api-1') && !eps.includes('shop/api-0')
    })
    assert.ok((await s.metrics.value('flatnet_k8s_lists_total', { resource: 'pods', reason: 'expired' })) >= 1)
    // The other resources got 410 too, and their re-list changed nothing.
    await s.whenSynced(10_000)
    assert.deepEqual(await keys('Namespace'), ['batch', 'data', 'default', 'kube-system', 'shop'])
  })

  it('an ERROR 410 event on an open watch makes it list again', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    await until('watches open', 5_000, () => server.watchCount() === 4)
    server.endWatches('expire', 'networkpolicies')
    await until('listed again', 5_000, async () => (await s.metrics.value('flatnet_k8s_lists_total', { resource: 'networkpolicies', reason: 'expired' })) === 1)
    await s.whenSynced(10_000)
    assert.deepEqual(await keys('NetworkPolicy'), ['data/db-from-shop-api', 'shop/default-deny', 'shop/web-from-anywhere'])
  })

  it('lists in pages (limit/continue) and starts over when a continue token expires', async () => {
    server.expireNextContinueToken('pods')
    const s = syncer({ pageSize: 2 })
    await s.whenSynced(15_000)
    assert.deepEqual(await keys('Endpoint'), podEndpoints)
    assert.deepEqual(await keys('Namespace'), ['batch', 'data', 'default', 'kube-system', 'shop'])
    assert.equal(await s.metrics.value('flatnet_k8s_lists_total', { resource: 'pods', reason: 'continue-expired' }), 1)
    const pages = server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === null)
    assert.ok(pages.every((r) => r.query.get('limit') === '2'))
    assert.ok(pages.some((r) => r.query.get('continue')))
  })

  it('ClusterNetworkPolicy CRD not installed: the rest syncs; once installed, its objects are mirrored', async () => {
    server.setServed('clusternetworkpolicies', false)
    const s = syncer()
    await s.whenSynced(15_000)
    assert.deepEqual(await keys('ClusterNetworkPolicy'), [])
    assert.deepEqual(await keys('Endpoint'), podEndpoints)
    server.setServed('clusternetworkpolicies', true)
    await until('the CNP is mirrored', 10_000, async () => (await keys('ClusterNetworkPolicy')).length === 1)
  })

  it('an object that turns invalid keeps its stored copy (reported); deleting it removes it', async () => {
    const { log, lines } = memoryLog()
    const s = syncer({ log })
    await s.whenSynced(15_000)
    const before = (await store.get('ClusterNetworkPolicy', 'data-only-from-shop'))!
    const cnp = server.get('clusternetworkpolicies', 'data-only-from-shop')!
    const rv = server.put('clusternetworkpolicies', { ...cnp, spec: { ...(cnp.spec as Json), egress: [{ action: 'Deny', to: [{ nodes: { matchLabels: {} } }] }] } })
    await until('reported', 5_000, () => lines().some((l) => l.object === 'data-only-from-shop' && l.resourceVersion === String(rv)))
    await s.whenSynced(5_000)
    assert.deepEqual((await store.get('ClusterNetworkPolicy', 'data-only-from-shop'))!.value, before.value)
    assert.equal(await s.metrics.value('flatnet_k8s_invalid_objects_total', { resource: 'clusternetworkpolicies' }), 2)
    // The sync goes on meanwhile.
    server.put('pods', runningPod('shop', 'after-invalid', '10.244.1.91'))
    await until('later events still mirrored', 5_000, async () => (await keys('Endpoint')).includes('shop/after-invalid'))
    server.remove('clusternetworkpolicies', 'data-only-from-shop')
    await until('deleted', 5_000, async () => (await keys('ClusterNetworkPolicy')).length === 0)
    assert.equal(await s.metrics.value('flatnet_k8s_invalid_objects', { resource: 'clusternetworkpolicies' }), 1, 'egress-to-saas is still refused')
  })

  it('a watch that goes silent without closing (a dead connection) is replaced after timeoutSeconds plus a grace period', async () => {
    const s = world.start({ options: { resources: ['pods'], reflector: { ...FAST.reflector, watchTimeoutSeconds: 1, idleGraceMs: 300 } } })
    await s.whenSynced(15_000)
    await until('the pod watch is open', 5_000, () => server.watchCount('pods') === 1)
    server.stallWatches(true)
    server.endWatches('drop', 'pods')
    const watches = (): number => server.requests.filter((r) => r.path === '/api/v1/pods' && r.query.get('watch') === '1').length
    const stalledAt = watches()
    await until('the stalled watch is requested', 5_000, () => watches() > stalledAt)
    server.stallWatches(false)
    server.put('pods', runningPod('shop', 'after-stall', '10.244.1.88'))
    await until('the pod arrives through a new watch', 10_000, async () => (await keys('Endpoint')).includes('shop/after-stall'))
    assert.equal(await s.metrics.value('flatnet_k8s_watch_restarts_total', { resource: 'pods', reason: 'idle' }), 1)
  })

  it('the store itself spends no revision on a put of identical canonical JSON', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    const revision = await store.revision()
    const all = await store.snapshot(['Namespace', 'Endpoint', 'NetworkPolicy', 'ClusterNetworkPolicy'])
    // Same content, keys in another order: canonical JSON makes them equal.
    const reordered = all.objects.map((o) => ({ op: 'put' as const, kind: o.kind, key: o.key, value: Object.fromEntries(Object.entries(o.value as Json).reverse()) }))
    const outcome = await store.write(reordered)
    assert.equal(outcome.revision, revision)
    assert.ok(outcome.results.every((r) => r === 'unchanged'))
    assert.equal(await store.revision(), revision)
  })

  it('repairs the store on the periodic resync: an owned object deleted around the syncer comes back', async () => {
    const s = world.start({ options: { mirror: { ...FAST.mirror, resyncIntervalMs: 300 } } })
    await s.whenSynced(15_000)
    await store.write([{ op: 'delete', kind: 'Endpoint', key: 'shop/api-0' }])
    await until('restored', 5_000, async () => (await keys('Endpoint')).includes('shop/api-0'))
  })
})
