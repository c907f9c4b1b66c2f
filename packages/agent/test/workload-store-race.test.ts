/**
 * The agent's read-modify-write of a Pod endpoint the Kubernetes syncer writes too: a syncer
 * write that lands between the agent's read and its write (new labels from Kubernetes) is never
 * undone. A real redis-server; the syncer's write is made at exactly that moment by a store that
 * writes it right after the agent's first read. The workload's link does not exist (detach only
 * looks for it), so nothing is made on this machine.
 */
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AGENT_NODE_ANNOTATION, SOURCE_ANNOTATION } from '@flatnet/core'
import { connectRedis, FlatnetStore, Ipam } from '@flatnet/store'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { WORKLOADS_FILE, WorkloadManager, type Attachment } from '../src/workloads/workload-manager.js'

const NODE = 'node-race'
const KEY = 'shop/web-1'

function pod(labels: Record<string, string>, ips: string[]): Record<string, unknown> {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'web-1', namespace: 'shop', labels, annotations: { [SOURCE_ANNOTATION]: 'k8s', [AGENT_NODE_ANNOTATION]: NODE } },
    spec: { nodeName: NODE, containers: [{ name: 'main' }] },
    status: { podIPs: ips.map((ip) => ({ ip })) },
  }
}

describe('the agent writing a Pod the syncer also writes', () => {
  let redis: RedisServer
  let store: FlatnetStore
  let dir: string

  before(async () => {
    redis = await startRedis()
    store = new FlatnetStore({ redis: connectRedis(redis.url, { commandTimeoutMs: 5_000 }), where: redis.url }, { cluster: 'default', commandTimeoutMs: 5_000 })
    dir = mkdtempSync(join(tmpdir(), 'fn-wrace-'))
  })
  after(async () => {
    await store?.close().catch(() => undefined)
    await redis?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  it('CNI DEL keeps labels the syncer wrote between the agent reading the Pod and writing it back without addresses', async () => {
    await store.write([{ op: 'put', kind: 'Endpoint', key: KEY, value: pod({ app: 'web', version: 'v1' }, ['10.9.0.5']) }])
    // The agent's record of the attachment, as a running agent keeps it (its link is gone).
    const stateDir = join(dir, 'state')
    mkdirSync(stateDir)
    const attachment: Attachment = {
      key: KEY,
      namespace: 'shop',
      name: 'web-1',
      netns: '/run/netns/fn-wrace-gone',
      ifname: 'eth0',
      hostIfname: 'fnwracegone0',
      ips: ['10.9.0.5'],
      labels: { app: 'web', version: 'v1' },
      ports: [],
      kind: 'Pod',
      attachedAt: new Date().toISOString(),
      attachmentId: 'cni:flatnet:c1:eth0',
      labelsFrom: 'store',
    }
    writeFileSync(join(stateDir, WORKLOADS_FILE), JSON.stringify([attachment]))

    // The syncer relabels the pod right after the agent's first read of it.
    let reads = 0
    const racing = new Proxy(store, {
      get(target, prop, receiver) {
        if (prop !== 'get') return Reflect.get(target, prop, receiver) as unknown
        return async (kind: 'Endpoint', key: string) => {
          const read = await target.get(kind, key)
          if (++reads === 1) await target.write([{ op: 'put', kind: 'Endpoint', key, value: pod({ app: 'web', version: 'v2' }, ['10.9.0.5']) }])
          return read
        }
      },
    })
    const log = { info: () => undefined, warn: () => undefined }
    const manager = new WorkloadManager({ store: racing, ipam: new Ipam(store), ipamNode: NODE, nodeName: NODE, stateDir, mtu: 1420, log })
    assert.equal(await manager.detach(KEY, { attachmentId: 'cni:flatnet:c1:eth0' }), true)

    const after = (await store.get('Endpoint', KEY))?.value as { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; status: Record<string, unknown> }
    assert.equal(reads, 2, 'the write at the first read was refused, so the agent read the Pod again')
    assert.deepEqual(after.metadata.labels, { app: 'web', version: 'v2' }, "the syncer's labels survive")
    assert.equal(after.status.podIPs, undefined, "the detached sandbox's address is gone")
    assert.equal(after.metadata.annotations[AGENT_NODE_ANNOTATION], NODE)
    assert.deepEqual(manager.list(), [])
  })
})
