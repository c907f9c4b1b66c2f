/**
 * Pods on a node with a flatnet agent: the agent's attachment owns a Pod endpoint's node and
 * addresses, the syncer its labels, ports and existence. The syncer runs against the fake API
 * server (recorded objects) and a real redis-server; the agent's writes are the documents its
 * CNI ADD and DEL write (workload-manager.ts: podManifestOverStored, podAfterDetach; the
 * cross-package test test/pod-endpoint-ownership.test.mjs checks them against the real
 * functions).
 */
import assert from 'node:assert/strict'
import { beforeEach, describe, it } from 'node:test'
import { AGENT_NODE_ANNOTATION, SOURCE_ANNOTATION } from '@flatnet/core'
import type { FlatnetStore } from '@flatnet/store'
import { detachedLeftover, podOverAttachment } from '../src/pod-attachment.js'
import { resourceByName } from '../src/resources.js'
import type { K8sSyncer } from '../src/syncer.js'
import { translate } from '../src/translate.js'
import type { FakeApiServer } from './fake-api-server.js'
import { SyncerWorld, until } from './helpers.js'

type Json = Record<string, unknown>
interface StoredPod {
  kind: string
  metadata: { name: string; namespace: string; labels: Json; annotations?: Json }
  spec: { nodeName?: string; containers?: Json[] }
  status: { podIPs?: { ip: string }[] }
}

const world = new SyncerWorld()
let server: FakeApiServer
let store: FlatnetStore
beforeEach(() => {
  server = world.server
  store = world.store
})

const syncer = (): K8sSyncer => world.start()

/** Stops the syncer and starts another: a restart, which lists everything again. */
async function restart(s: K8sSyncer): Promise<K8sSyncer> {
  await world.stop(s)
  const next = syncer()
  await next.whenSynced(15_000)
  return next
}

const pod = async (key: string): Promise<StoredPod | undefined> => (await store.get('Endpoint', key))?.value as StoredPod | undefined
const ipsOf = (p: StoredPod | undefined): string[] | undefined => (p === undefined ? undefined : (p.status.podIPs ?? []).map((x) => x.ip))

/** The Endpoint keys whose stored Pod claims `ip`. */
async function claimants(ip: string): Promise<string[]> {
  return (await store.list('Endpoint')).filter((o) => ((o.value as StoredPod).status?.podIPs ?? []).some((p) => p.ip === ip)).map((o) => o.key)
}

/** CNI ADD on `node`: the stored Pod (or a new one without labels) with this node, these addresses and the agent's mark. */
async function agentAttach(key: string, node: string, ips: string[]): Promise<void> {
  const [namespace, name] = key.split('/') as [string, string]
  const stored = await pod(key)
  const doc: StoredPod = stored?.kind === 'Pod' ? stored : { kind: 'Pod', metadata: { name, namespace, labels: {} }, spec: { containers: [{ name: 'main', ports: [] }] }, status: {} }
  const value = {
    apiVersion: 'v1',
    ...doc,
    metadata: { ...doc.metadata, annotations: { ...doc.metadata.annotations, [AGENT_NODE_ANNOTATION]: node } },
    spec: { ...doc.spec, nodeName: node },
    status: { ...doc.status, podIPs: ips.map((ip) => ({ ip })) },
  }
  await store.write([{ op: 'put', kind: 'Endpoint', key, value }])
}

/** CNI DEL on `node`: its attachment stays without addresses (no podIPs); with no Pod stored, the agent deletes (nothing). */
async function agentDetach(key: string, node: string): Promise<void> {
  const stored = await pod(key)
  if (stored === undefined) return void (await store.write([{ op: 'delete', kind: 'Endpoint', key }]))
  const mark = stored.metadata.annotations?.[AGENT_NODE_ANNOTATION]
  if ((mark ?? stored.spec.nodeName) !== node) return
  const status = { ...stored.status }
  delete status.podIPs
  await store.write([{ op: 'put', kind: 'Endpoint', key, value: { ...stored, status } }])
}

/** The API's pod with other labels (a `kubectl label`), everything else as it is. */
function relabel(key: string, labels: Json): void {
  const p = server.get('pods', key)!
  server.put('pods', { ...p, metadata: { ...(p.metadata as Json), labels: { ...((p.metadata as Json).labels as Json), ...labels } } })
}

/** A scheduled pod the kubelet has not reported an address for yet. */
function pendingPod(namespace: string, name: string, node: string, labels: Json): Json {
  return {
    metadata: { name, namespace, uid: `uid-${name}`, labels },
    spec: { nodeName: node, containers: [{ name: 'main', image: 'example/app:1', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
    status: { phase: 'Pending' },
  }
}

const withIp = (p: Json, ip: string): Json => ({ ...p, status: { phase: 'Running', podIP: ip, podIPs: [{ ip }] } })

describe('Pod endpoints on a node with a flatnet agent', () => {
  it('(a) a syncer write keeps the address and node the agent set on an attached pod, while the API shows the old sandbox address or none', async () => {
    let s = syncer()
    await s.whenSynced(15_000)
    assert.deepEqual(ipsOf(await pod('shop/api-0')), ['10.244.2.5'])
    // The pod's sandbox is replaced; the agent on worker-2 attaches the new one with another address.
    await agentAttach('shop/api-0', 'worker-2', ['10.244.2.77'])
    // The API still shows the old address when the pod is relabelled: the syncer writes the labels only.
    relabel('shop/api-0', { version: 'v2' })
    await until('the new label', 5_000, async () => (await pod('shop/api-0'))?.metadata.labels.version === 'v2')
    let p = (await pod('shop/api-0'))!
    assert.deepEqual(ipsOf(p), ['10.244.2.77'], 'the attached address stays')
    assert.equal(p.spec.nodeName, 'worker-2')
    assert.deepEqual(p.metadata.annotations, { [SOURCE_ANNOTATION]: 'kubernetes', [AGENT_NODE_ANNOTATION]: 'worker-2' })
    assert.deepEqual(await claimants('10.244.2.5'), [], 'the old sandbox address is claimed by nobody')

    // The API shows no address at all for a moment (a status without podIPs): the pod exists, and stays attached.
    const api = server.get('pods', 'shop/api-0')!
    server.put('pods', { ...api, metadata: { ...(api.metadata as Json), labels: { ...((api.metadata as Json).labels as Json), version: 'v3' } }, status: { phase: 'Running' } })
    await until('the next label', 5_000, async () => (await pod('shop/api-0'))?.metadata.labels.version === 'v3')
    p = (await pod('shop/api-0'))!
    assert.deepEqual(ipsOf(p), ['10.244.2.77'])

    // A restart lists everything again and writes nothing: the merge is what the store holds.
    const revision = await store.revision()
    s = await restart(s)
    assert.equal(await store.revision(), revision)
    assert.equal(await s.metrics.value('flatnet_k8s_store_writes_total', { result: 'written' }), 0)
    assert.deepEqual(ipsOf(await pod('shop/api-0')), ['10.244.2.77'])
  })

  it('(b) after CNI DEL no syncer write puts the detached sandbox address back; reused by another pod, it is claimed by that pod only', async () => {
    let s = syncer()
    await s.whenSynced(15_000)
    await agentAttach('shop/api-0', 'worker-2', ['10.244.2.5'])
    // The sandbox goes (CNI DEL); Kubernetes still lists the pod with the old address.
    await agentDetach('shop/api-0', 'worker-2')
    assert.deepEqual(ipsOf(await pod('shop/api-0')), [])
    relabel('shop/api-0', { version: 'v2' })
    await until('the new label', 5_000, async () => (await pod('shop/api-0'))?.metadata.labels.version === 'v2')
    assert.deepEqual(ipsOf(await pod('shop/api-0')), [], 'the API still shows 10.244.2.5; the store must not')

    // The node gives the freed address to a new pod: the agent stores it at CNI ADD, the kubelet reports it after.
    const next = pendingPod('shop', 'api-1', 'worker-2', { app: 'api' })
    server.put('pods', next)
    await s.whenSynced(5_000)
    await agentAttach('shop/api-1', 'worker-2', ['10.244.2.5'])
    server.put('pods', withIp(next, '10.244.2.5'))
    await until('api-1 taken over with its labels', 5_000, async () => (await pod('shop/api-1'))?.metadata.annotations?.[SOURCE_ANNOTATION] === 'kubernetes')
    assert.deepEqual(await claimants('10.244.2.5'), ['shop/api-1'])

    // A restart (a relist, as after a new leader or a 410) sees api-0 at 10.244.2.5 in the API again.
    s = await restart(s)
    assert.deepEqual(await claimants('10.244.2.5'), ['shop/api-1'], 'one endpoint per address')
    assert.equal(await s.metrics.value('flatnet_k8s_store_writes_total', { result: 'written' }), 0)
    assert.equal((await pod('shop/api-0'))?.metadata.labels.version, 'v2', 'the detached pod keeps its labels for its next sandbox')
  })

  it('a pod deleted in Kubernetes while attached: its endpoint goes at once, and neither the agent DEL after it nor a relist brings it back', async () => {
    let s = syncer()
    await s.whenSynced(15_000)
    await agentAttach('shop/api-0', 'worker-2', ['10.244.2.5'])
    // Deleted and at once created again under the same name on another node (a StatefulSet), in one batch.
    server.remove('pods', 'shop/api-0')
    server.put('pods', pendingPod('shop', 'api-0', 'worker-1', { app: 'api' }))
    await until('the endpoint is gone', 5_000, async () => (await pod('shop/api-0')) === undefined)
    await s.whenSynced(5_000)
    assert.equal(await pod('shop/api-0'), undefined, 'the new pod does not inherit the old attachment on worker-2')
    await agentDetach('shop/api-0', 'worker-2')
    s = await restart(s)
    assert.equal(await pod('shop/api-0'), undefined)
    assert.deepEqual(await claimants('10.244.2.5'), [])
  })

  it('a pod the agent attached and detached before the API had its IP is deleted with the pod, not left behind', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    server.put('pods', pendingPod('shop', 'flaky-0', 'worker-1', { app: 'flaky' }))
    await s.whenSynced(5_000)
    // The sandbox starts and fails before the kubelet reports its address.
    await agentAttach('shop/flaky-0', 'worker-1', ['10.244.1.60'])
    await agentDetach('shop/flaky-0', 'worker-1')
    assert.equal((await pod('shop/flaky-0'))?.metadata.annotations?.[SOURCE_ANNOTATION], undefined, 'never taken over by the syncer')
    server.remove('pods', 'shop/flaky-0')
    await until('the leftover is deleted', 5_000, async () => (await pod('shop/flaky-0')) === undefined)
  })

  it('before the kubelet reports the address, a syncer write puts the labels over the agent attachment; the report then writes nothing', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    const fresh = pendingPod('shop', 'web-new', 'worker-1', { app: 'web' })
    server.put('pods', fresh)
    await s.whenSynced(5_000)
    assert.equal(await pod('shop/web-new'), undefined, 'a pod without an address and without an attachment is not mirrored')
    await agentAttach('shop/web-new', 'worker-1', ['10.244.1.41'])
    relabel('shop/web-new', { tier: 'frontend' })
    await until('labels over the attachment', 5_000, async () => (await pod('shop/web-new'))?.metadata.labels.tier === 'frontend')
    const p = (await pod('shop/web-new'))!
    assert.deepEqual(ipsOf(p), ['10.244.1.41'])
    assert.deepEqual(p.metadata.labels, { app: 'web', tier: 'frontend' })
    assert.deepEqual(p.spec.containers, [{ name: 'main', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }])
    await world.assertPodChangeWritesNothing(s, 2, () => server.put('pods', withIp(server.get('pods', 'shop/web-new')!, '10.244.1.41')))
  })

  it('a pod on a node without a flatnet agent keeps the addresses Kubernetes reports', async () => {
    const s = syncer()
    await s.whenSynced(15_000)
    const api = server.get('pods', 'shop/api-0')!
    server.put('pods', { ...api, status: { ...(api.status as Json), podIP: '10.244.2.6', podIPs: [{ ip: '10.244.2.6' }] } })
    await until('the new address', 5_000, async () => ipsOf(await pod('shop/api-0'))?.[0] === '10.244.2.6')
    assert.equal((await pod('shop/api-0'))?.metadata.annotations?.[AGENT_NODE_ANNOTATION], undefined)
  })
})

describe('merging a Pod over an attachment (pure)', () => {
  const want = (ip?: string): Json => {
    const t = translate(resourceByName('pods'), withIp(pendingPod('shop', 'w', 'node-a', { app: 'w' }), ip ?? '10.1.0.1'), 'kubernetes')
    assert.equal(t.type, 'object')
    return (t as { value: Json }).value
  }
  const attached = (node: string, ips: string[]): Json => ({ ...want(), metadata: { name: 'w', namespace: 'shop', labels: { app: 'old' }, annotations: { [AGENT_NODE_ANNOTATION]: node } }, spec: { nodeName: node }, status: { podIPs: ips.map((ip) => ({ ip })) } })

  it('takes node and addresses from the attachment on the same node, everything else from the API', () => {
    const merged = podOverAttachment(want('10.1.0.1'), attached('node-a', ['10.1.0.9']), false) as unknown as StoredPod
    assert.deepEqual(merged.status, { podIPs: [{ ip: '10.1.0.9' }] })
    assert.deepEqual(merged.metadata.labels, { app: 'w' })
    assert.deepEqual(merged.metadata.annotations, { [SOURCE_ANNOTATION]: 'kubernetes', [AGENT_NODE_ANNOTATION]: 'node-a' })
  })

  it('ignores an attachment on another node (an earlier pod of that name) and anything that is not one', () => {
    const w = want('10.1.0.1')
    assert.equal(podOverAttachment(w, attached('node-b', ['10.1.0.9']), false), w)
    assert.equal(podOverAttachment(w, attached('node-b', ['10.1.0.9']), true), undefined, 'a pod without an API address is then not mirrored')
    assert.equal(podOverAttachment(w, { kind: 'HostEndpoint', metadata: { annotations: { [AGENT_NODE_ANNOTATION]: 'node-a' } } }, false), w)
    assert.equal(podOverAttachment(w, undefined, false), w)
  })

  it('a leftover is a detached attachment no syncer took over', () => {
    assert.equal(detachedLeftover(attached('node-a', [])), true)
    assert.equal(detachedLeftover(attached('node-a', ['10.1.0.9'])), false, 'attached: the agent still holds the address')
    const owned = attached('node-a', [])
    assert.equal(detachedLeftover({ ...owned, metadata: { ...(owned.metadata as Json), annotations: { [SOURCE_ANNOTATION]: 'kubernetes', [AGENT_NODE_ANNOTATION]: 'node-a' } } }), false)
  })
})
