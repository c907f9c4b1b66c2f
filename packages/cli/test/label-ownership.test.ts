/**
 * `flatnet namespace label` and `flatnet endpoint label` against a real redis-server: they change
 * the labels of the stored document and nothing else, and refuse objects whose labels come from
 * Kubernetes (mirrored by the syncer, or a pod a node agent attached for it) unless `--force`.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { AGENT_NODE_ANNOTATION, SOURCE_ANNOTATION } from '@flatnet/core'
import * as storeLib from '@flatnet/store'
import { connectRedis, FlatnetStore } from '@flatnet/store'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { labelEndpoint, labelNamespace, parseLabelChanges } from '../src/label-commands.js'
import { runCli } from './helpers.js'

type Json = Record<string, unknown>

const CLUSTER = 'labelowner'
let redis: RedisServer
let store: FlatnetStore

before(async () => {
  redis = await startRedis()
  store = new FlatnetStore({ redis: connectRedis(redis.url, { connectTimeoutMs: 2_000, commandTimeoutMs: 4_000 }), where: redis.url }, { cluster: CLUSTER, commandTimeoutMs: 4_000 })
})
after(async () => {
  await store?.close()
  await redis?.stop()
})

function flatnet(...args: string[]): ReturnType<typeof runCli> {
  return runCli([...args, '--redis', redis.url, '--cluster', CLUSTER])
}

const value = async (kind: 'Namespace' | 'Endpoint', key: string): Promise<Json> => (await store.get(kind, key))?.value as Json

/** The document with other labels and nothing else changed. */
function relabelled(doc: Json, labels: Record<string, string>): Json {
  return { ...doc, metadata: { ...(doc.metadata as Json), labels } }
}

/** A Pod as the syncer stores it, plus the agent's attachment (node and address). */
const syncedPod = (namespace: string, name: string, labels: Record<string, string>): Json => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace, labels, annotations: { [SOURCE_ANNOTATION]: 'kubernetes', [AGENT_NODE_ANNOTATION]: 'worker-1' } },
  spec: { nodeName: 'worker-1', containers: [{ name: 'main', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
  status: { podIPs: [{ ip: '10.244.1.20' }] },
})

describe('label commands keep the stored document', () => {
  it('endpoint label changes only the labels of a Pod: annotations, containers, node and addresses stay as stored', async () => {
    const pod: Json = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'cache', namespace: 'edge', labels: { app: 'cache' }, annotations: { 'example.com/owner': 'team-a' } },
      spec: {
        nodeName: 'vm-3',
        containers: [
          { name: 'redis', ports: [{ name: 'redis', containerPort: 6379, protocol: 'TCP' }] },
          { name: 'exporter', ports: [{ name: 'metrics', containerPort: 9121, protocol: 'TCP' }] },
        ],
      },
      status: { podIPs: [{ ip: '10.64.3.3' }] },
    }
    await store.write([{ op: 'put', kind: 'Endpoint', key: 'edge/cache', value: pod }])
    const r = await flatnet('endpoint', 'label', 'edge/cache', 'tier=backend')
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(await value('Endpoint', 'edge/cache'), relabelled(pod, { app: 'cache', tier: 'backend' }))
  })

  it('namespace label and endpoint label on a HostEndpoint keep their annotations', async () => {
    const ns: Json = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'edge', labels: { 'kubernetes.io/metadata.name': 'edge' }, annotations: { 'example.com/cost-centre': '42' } } }
    const hep: Json = {
      apiVersion: 'flatnet.dev/v1alpha1',
      kind: 'HostEndpoint',
      metadata: { name: 'db', namespace: 'edge', labels: { role: 'db' }, annotations: { 'example.com/rack': 'r7' } },
      spec: { node: 'vm-1', ips: ['10.64.9.9'], ports: [{ name: 'pg', port: 5432, protocol: 'TCP' }] },
    }
    await store.write([
      { op: 'put', kind: 'Namespace', key: 'edge', value: ns },
      { op: 'put', kind: 'Endpoint', key: 'edge/db', value: hep },
    ])
    assert.equal((await flatnet('namespace', 'label', 'edge', 'zone=eu')).code, 0)
    assert.equal((await flatnet('endpoint', 'label', 'edge/db', 'role=primary', '--overwrite')).code, 0)
    assert.deepEqual(await value('Namespace', 'edge'), relabelled(ns, { 'kubernetes.io/metadata.name': 'edge', zone: 'eu' }))
    assert.deepEqual(await value('Endpoint', 'edge/db'), relabelled(hep, { role: 'primary' }))
  })
})

describe('label commands refuse objects whose labels come from Kubernetes', () => {
  const mirroredNs: Json = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kshop', labels: { 'kubernetes.io/metadata.name': 'kshop', team: 'web' }, annotations: { [SOURCE_ANNOTATION]: 'kubernetes' } } }

  before(async () => {
    await store.write([
      { op: 'put', kind: 'Namespace', key: 'kshop', value: mirroredNs },
      { op: 'put', kind: 'Endpoint', key: 'kshop/web-1', value: syncedPod('kshop', 'web-1', { app: 'web' }) },
    ])
  })

  it('a Namespace the syncer mirrors: exit 1, naming the owner and the kubectl command, nothing written', async () => {
    const revision = await store.revision()
    const r = await flatnet('namespace', 'label', 'kshop', 'team=payments', 'pci-', '--overwrite')
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^error: Namespace kshop is mirrored from Kubernetes \(flatnet\.dev\/source: kubernetes\): its labels come from the Kubernetes API, and a label set here would be overwritten at the next sync; nothing was written\. /m)
    assert.match(r.stderr, /Label it in Kubernetes: kubectl label namespace kshop team=payments pci- --overwrite \(or pass --force/)
    assert.equal(r.stderr.trim().split('\n').length, 1, 'one line')
    assert.equal(await store.revision(), revision)
    assert.deepEqual(await value('Namespace', 'kshop'), mirroredNs)
  })

  it('a Pod the syncer mirrors, and one a node agent attached before the syncer took it over: ERR_OWNED_BY_KUBERNETES', async () => {
    const r = await flatnet('endpoint', 'label', 'kshop/web-1', 'tier=frontend')
    assert.equal(r.code, 1)
    assert.match(r.stderr, /endpoint kshop\/web-1 is mirrored from Kubernetes \(flatnet\.dev\/source: kubernetes\).*kubectl label pod web-1 -n kshop tier=frontend \(or pass --force/)
    await assert.rejects(labelEndpoint(store, storeLib, 'kshop/web-1', parseLabelChanges(['tier=frontend']), false), { code: 'ERR_OWNED_BY_KUBERNETES' })

    // CNI ADD wrote it (no labels yet); the syncer fills in Kubernetes' labels once the API has the pod's address.
    const attached = syncedPod('kshop', 'web-2', {})
    delete ((attached.metadata as Json).annotations as Json)[SOURCE_ANNOTATION]
    await store.write([{ op: 'put', kind: 'Endpoint', key: 'kshop/web-2', value: attached }])
    const revision = await store.revision()
    const agent = await flatnet('endpoint', 'label', 'kshop/web-2', 'app=web')
    assert.equal(agent.code, 1)
    assert.match(agent.stderr, /endpoint kshop\/web-2 is mirrored from Kubernetes \(a pod the flatnet agent on node worker-1 attached, flatnet\.dev\/agent-node: worker-1\)/)
    assert.equal(await store.revision(), revision)
  })

  it('--force changes the labels and keeps everything else, the ownership marks included; it warns that the syncer puts them back', async () => {
    const before = await value('Endpoint', 'kshop/web-1')
    const r = await flatnet('endpoint', 'label', 'kshop/web-1', 'tier=frontend', '--force')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /endpoint kshop\/web-1 labeled/)
    assert.match(r.stderr, /warning: endpoint kshop\/web-1 is mirrored from Kubernetes \(flatnet\.dev\/source: kubernetes\): the syncer puts Kubernetes' labels back/)
    assert.deepEqual(await value('Endpoint', 'kshop/web-1'), relabelled(before, { app: 'web', tier: 'frontend' }))

    const ns = await labelNamespace(store, storeLib, 'kshop', parseLabelChanges(['zone=eu']), false, true)
    assert.equal(ns.result, 'labeled')
    assert.deepEqual(await value('Namespace', 'kshop'), relabelled(mirroredNs, { 'kubernetes.io/metadata.name': 'kshop', team: 'web', zone: 'eu' }))
  })
})
