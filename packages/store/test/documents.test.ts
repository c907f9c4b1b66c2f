/** Policy documents through the store: all-or-nothing applies, concurrency, decoding stored objects. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { stringify } from 'yaml'
import { ValidationError } from '@flatnet/core'
import { loadObjects } from '@flatnet/policy'
import { applyObjects, deleteRefs, snapshotFromStore, type FlatnetStore } from '../src/index.js'
import { startRedis, type RedisServer } from './redis-harness.js'
import { storeAt } from './store-helpers.js'

let redis: RedisServer
let store: FlatnetStore
before(async () => {
  redis = await startRedis()
  store = storeAt(redis.url, { cluster: 'docs' })
})
after(async () => {
  await store?.close()
  await redis?.stop()
})

const policy = (name: string, app = 'api') => ({
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name, namespace: 'shop', uid: 'server-owned', resourceVersion: '7' },
  spec: { podSelector: { matchLabels: { app } }, ingress: [{ from: [{ podSelector: {} }] }] },
})
const load = (...docs: unknown[]) => loadObjects([{ file: 'in.yaml', text: docs.map((d) => stringify(d)).join('---\n') }])

describe('documents in the store', () => {
  it('a bad document in a multi-document input leaves objects and revision untouched', async () => {
    const rev = await store.revision()
    assert.throws(() => load(policy('good'), { ...policy('bad'), spec: { podSelector: { matchLabels: { app: '-x-' } } } }), ValidationError)
    assert.equal(await store.revision(), rev)
    assert.equal(await store.get('NetworkPolicy', 'shop/good'), undefined)
  })

  it('stores manifests without server-owned metadata, so a re-apply is unchanged', async () => {
    const first = await applyObjects(store, load(policy('p1')))
    assert.deepEqual(first.documents.map((d) => d.result), ['created'])
    const stored = (await store.get('NetworkPolicy', 'shop/p1'))?.value as { metadata: Record<string, unknown> }
    assert.equal(stored.metadata.uid, undefined)
    const again = await applyObjects(store, load({ ...policy('p1'), metadata: { name: 'p1', namespace: 'shop' } }))
    assert.deepEqual(again.documents.map((d) => d.result), ['unchanged'])
    assert.equal(again.revision, first.revision)
  })

  it('two concurrent applies both land, in order, each as one revision', async () => {
    const [a, b] = await Promise.all([applyObjects(store, load(policy('ca1'), policy('ca2'))), applyObjects(store, load(policy('cb1'), policy('cb2')))])
    assert.notEqual(a.revision, b.revision)
    assert.equal(Math.abs(a.revision - b.revision), 1)
    for (const [name, rev] of [['ca1', a.revision], ['ca2', a.revision], ['cb1', b.revision], ['cb2', b.revision]] as const) {
      assert.equal((await store.get('NetworkPolicy', `shop/${name}`))?.revision, rev)
    }
  })

  it('a dry run reports what would change and writes nothing', async () => {
    const rev = await store.revision()
    const out = await applyObjects(store, load(policy('p1', 'web'), policy('fresh')), { dryRun: true })
    assert.deepEqual(out.documents.map((d) => d.result), ['configured', 'created'])
    assert.equal(await store.revision(), rev)
  })

  it('turns the store back into a snapshot, skipping (and reporting) a stored object that no longer validates', async () => {
    await store.write([{ op: 'put', kind: 'NetworkPolicy', key: 'shop/garbage', value: { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'garbage', namespace: 'shop' }, spec: { podSelectr: {} } } }])
    await applyObjects(store, loadObjects([{ file: 'ep.yaml', text: stringify({ apiVersion: 'flatnet.dev/v1alpha1', kind: 'HostEndpoint', metadata: { name: 'api', namespace: 'shop', labels: { app: 'api' } }, spec: { ips: ['10.9.0.1'] } }) }]))
    const { snapshot, issues } = await snapshotFromStore(store)
    assert.equal(issues.length, 1)
    assert.match(issues[0]!.file, /store:NetworkPolicy\/shop\/garbage/)
    assert.ok(snapshot.networkPolicies.get('shop/p1'))
    assert.equal(snapshot.evaluateRefs('10.1.1.1', 'shop/api', 80, 'TCP').allowed, false, 'p1 isolates the api endpoint; an outside IP is not a pod')
  })

  it('deletes by reference as one revision', async () => {
    const out = await deleteRefs(store, [
      { kind: 'NetworkPolicy', key: 'shop/ca1', display: 'a' },
      { kind: 'NetworkPolicy', key: 'shop/nope', display: 'b' },
    ])
    assert.deepEqual(out.documents.map((d) => d.result), ['deleted', 'notfound'])
  })
})
