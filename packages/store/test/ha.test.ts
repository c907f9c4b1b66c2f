/** The same store code on a Sentinel set (through a failover) and on a 3-primary Redis Cluster. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { startCluster, startSentinelSet } from './redis-harness.js'
import { EventLog, storeAt, untilRevision } from './store-helpers.js'

const np = (name: string) => ({ op: 'put' as const, kind: 'NetworkPolicy' as const, key: `x/${name}`, value: { name } })

describe('Redis Sentinel', () => {
  it('resumes writes after the primary dies, and a watcher misses no acknowledged revision', async () => {
    const set = await startSentinelSet()
    const store = storeAt(set.url)
    const log = new EventLog()
    const w = store.watch({ onEvent: log.onEvent })
    try {
      await w.whenInSync()
      const acked: number[] = []
      for (let i = 0; i < 20; i++) acked.push((await store.write([np(`before${i}`)])).revision)
      await untilRevision(w, acked.at(-1)!)
      // Replication is asynchronous: what the replica has not received, a failover loses (and
      // the watcher then resyncs). Here the replica has everything, so nothing may be missed.
      assert.equal(Number(await store.client.call('WAIT', 1, 5_000)), 1)
      await set.killPrimary()
      // Writes fail while the sentinels elect the replica; retry each, bounded.
      const deadline = Date.now() + 30_000
      for (let i = 0; i < 20; i++) {
        for (;;) {
          try {
            acked.push((await store.write([np(`after${i}`)])).revision)
            break
          } catch (err) {
            if (Date.now() > deadline) throw new Error(`writes did not resume within 30 s: ${(err as Error).message}`)
            await new Promise((r) => setTimeout(r, 200))
          }
        }
      }
      await untilRevision(w, acked.at(-1)!, 20_000)
      const seen = new Set(log.changeRevisions())
      for (const r of acked) assert.ok(seen.has(r), `revision ${r} was acknowledged but never reached the watcher`)
      assert.deepEqual(acked, [...acked].sort((a, b) => a - b), 'revisions keep increasing across the failover')
      const snap = await store.snapshot(['NetworkPolicy'])
      assert.deepEqual(
        w.objects().map((o) => o.key).sort(),
        snap.objects.map((o) => o.key).sort(),
        'the watcher holds exactly what the store holds',
      )
    } finally {
      await w.stop()
      await store.close()
      await set.stop()
    }
  })
})

describe('Redis Cluster', () => {
  it('runs the same writes, snapshots, optimistic concurrency and watch', async () => {
    const cluster = await startCluster()
    const store = storeAt(cluster.url)
    const log = new EventLog()
    const w = store.watch({ kinds: ['NetworkPolicy'], onEvent: log.onEvent })
    try {
      await w.whenInSync()
      const first = await store.write([np('a'), np('b')])
      assert.deepEqual(first.results, ['created', 'created'])
      assert.deepEqual((await store.write([np('a')])).results, ['unchanged'])
      await assert.rejects(store.write([np('c')], { ifRevision: first.revision - 1 }), /revision/)
      const del = await store.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'x/b' }])
      const snap = await store.snapshot(['NetworkPolicy'])
      assert.equal(snap.revision, del.revision)
      assert.deepEqual(snap.objects.map((o) => o.key), ['x/a'])
      await untilRevision(w, del.revision)
      assert.deepEqual(log.changeRevisions(), [first.revision, first.revision, del.revision])
    } finally {
      await w.stop()
      await store.close()
      await cluster.stop()
    }
  })
})
