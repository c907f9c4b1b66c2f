/** Objects, revisions and the change feed against a real redis-server. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { ObjectRevisionMismatchError, RevisionMismatchError, type FlatnetStore } from '../src/index.js'
import { startRedis, type RedisServer } from './redis-harness.js'
import { EventLog, storeAt, untilRevision } from './store-helpers.js'

let redis: RedisServer
let store: FlatnetStore
before(async () => {
  redis = await startRedis()
  store = storeAt(redis.url)
})
after(async () => {
  await store?.close()
  await redis?.stop()
})

const np = (name: string, extra: Record<string, unknown> = {}) => ({ op: 'put' as const, kind: 'NetworkPolicy' as const, key: `x/${name}`, value: { name, ...extra } })

describe('writes', () => {
  it('writes a batch as one revision and reports each object', async () => {
    const start = await store.revision()
    const out = await store.write([np('a'), np('b'), { op: 'put', kind: 'Namespace', key: 'x', value: { labels: { ns: 'x' } } }])
    assert.equal(out.revision, start + 1)
    assert.deepEqual(out.results, ['created', 'created', 'created'])
    const a = await store.get('NetworkPolicy', 'x/a')
    assert.deepEqual(a, { kind: 'NetworkPolicy', key: 'x/a', revision: start + 1, createRevision: start + 1, value: { name: 'a' } })
  })

  it('spends no revision when nothing changed, whatever the key order', async () => {
    await store.write([np('k', { p: 1, q: 2 })])
    const rev = await store.revision()
    const out = await store.write([{ op: 'put', kind: 'NetworkPolicy', key: 'x/k', value: { q: 2, p: 1, name: 'k' } }])
    assert.deepEqual(out, { revision: rev, results: ['unchanged'] })
  })

  it('keeps the create revision across updates and reports configured', async () => {
    const created = (await store.write([np('u')])).revision
    const updated = await store.write([np('u', { v: 2 })])
    assert.deepEqual(updated.results, ['configured'])
    const u = await store.get('NetworkPolicy', 'x/u')
    assert.equal(u?.createRevision, created)
    assert.equal(u?.revision, updated.revision)
  })

  it('deletes, and says notfound for what is not there', async () => {
    await store.write([np('d')])
    const out = await store.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'x/d' }, { op: 'delete', kind: 'NetworkPolicy', key: 'x/never' }])
    assert.deepEqual(out.results, ['deleted', 'notfound'])
    assert.equal(await store.get('NetworkPolicy', 'x/d'), undefined)
  })

  it('refuses a write at a stale revision and changes nothing (optimistic concurrency)', async () => {
    const rev = await store.revision()
    await store.write([np('race')], { ifRevision: rev })
    await assert.rejects(store.write([np('race', { lost: true })], { ifRevision: rev }), (err: unknown) => {
      assert.ok(err instanceof RevisionMismatchError)
      assert.equal(err.code, 'ERR_REVISION_MISMATCH')
      assert.equal(err.actual, rev + 1)
      return true
    })
    assert.deepEqual((await store.get('NetworkPolicy', 'x/race'))?.value, { name: 'race' })
    assert.equal(await store.revision(), rev + 1)
  })

  it('conditions a write on one object\'s revision: other objects may change meanwhile, that one may not; the whole batch is refused', async () => {
    await store.write([np('cas')])
    const read = (await store.get('NetworkPolicy', 'x/cas'))!
    await store.write([np('other', { v: Math.random() })])
    const ok = await store.write([{ ...np('cas', { v: 1 }), ifRevision: read.revision }])
    assert.deepEqual(ok.results, ['configured'])
    const rev = await store.revision()
    await assert.rejects(store.write([np('side-effect'), { ...np('cas', { v: 2 }), ifRevision: read.revision }]), (err: unknown) => {
      assert.ok(err instanceof ObjectRevisionMismatchError)
      assert.equal(err.code, 'ERR_OBJECT_REVISION_MISMATCH')
      assert.deepEqual([err.kind, err.key, err.expected, err.actual], ['NetworkPolicy', 'x/cas', read.revision, ok.revision])
      return true
    })
    assert.equal(await store.revision(), rev, 'nothing of the batch was written')
    assert.equal(await store.get('NetworkPolicy', 'x/side-effect'), undefined)
    // 0: only if absent. A delete can be conditioned too.
    await assert.rejects(store.write([{ ...np('cas'), ifRevision: 0 }]), ObjectRevisionMismatchError)
    assert.deepEqual((await store.write([{ ...np('fresh'), ifRevision: 0 }])).results, ['created'])
    await assert.rejects(store.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'x/cas', ifRevision: read.revision }]), ObjectRevisionMismatchError)
    assert.deepEqual((await store.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'x/cas', ifRevision: ok.revision }])).results, ['deleted'])
  })

  it('orders concurrent writers linearly: every revision once, each write whole', async () => {
    const start = await store.revision()
    const writers = Array.from({ length: 20 }, (_, i) => store.write([np(`c${i}`), np(`c${i}-twin`)]))
    const outs = await Promise.all(writers)
    const revisions = outs.map((o) => o.revision).sort((a, b) => a - b)
    assert.deepEqual(revisions, Array.from({ length: 20 }, (_, i) => start + 1 + i))
    for (let i = 0; i < 20; i++) {
      const [a, b] = await Promise.all([store.get('NetworkPolicy', `x/c${i}`), store.get('NetworkPolicy', `x/c${i}-twin`)])
      assert.equal(a?.revision, b?.revision, 'both objects of one write share its revision')
    }
  })

  it('takes a snapshot at one revision', async () => {
    const snap = await store.snapshot(['NetworkPolicy'])
    assert.equal(snap.revision, await store.revision())
    assert.ok(snap.objects.length > 20)
    assert.ok(snap.objects.every((o) => o.revision <= snap.revision))
  })

  it('keeps node status reports apart from the revision', async () => {
    const rev = await store.revision()
    await store.setStatus('node-1', { appliedRevision: rev, at: '2026-01-01T00:00:00Z' })
    assert.equal(await store.revision(), rev)
    assert.deepEqual((await store.listStatus()).get('node-1'), { appliedRevision: rev, at: '2026-01-01T00:00:00Z' })
  })
})

describe('watch', () => {
  it('loads a snapshot, then follows every revision in order, once', async () => {
    const log = new EventLog()
    const w = store.watch({ kinds: ['NetworkPolicy'], onEvent: log.onEvent })
    try {
      const synced = await w.whenInSync()
      const initial = log.events.filter((e) => e.type === 'put').length
      assert.equal(initial, (await store.list('NetworkPolicy')).length)
      const revs: number[] = []
      for (let i = 0; i < 30; i++) revs.push((await store.write([np(`w${i}`)])).revision)
      await store.write([{ op: 'put', kind: 'Namespace', key: 'ignored', value: {} }])
      const last = (await store.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'x/w0' }])).revision
      await untilRevision(w, last)
      const changes = log.events.slice(initial + 1).filter((e) => e.type === 'put' || e.type === 'delete')
      assert.deepEqual(
        changes.map((e) => e.revision),
        [...revs, last],
      )
      assert.ok(revs[0]! > synced)
      assert.equal(changes.at(-1)?.type, 'delete')
      assert.ok(!log.events.some((e) => e.type === 'put' && e.object.kind === 'Namespace'), 'kinds filter holds')
    } finally {
      await w.stop()
    }
  })

  it('resyncs after the feed was trimmed past it and emits only the differences', async () => {
    const small = storeAt(redis.url, { cluster: 'trim', feedMaxLength: 5 })
    const log = new EventLog()
    const w = small.watch({ onEvent: log.onEvent })
    try {
      await small.write([np('keep'), np('change'), np('drop')])
      await untilRevision(w, await small.revision())
      await w.pause()
      const seen = log.events.length
      await small.write([np('change', { v: 2 })])
      await small.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'x/drop' }])
      for (let i = 0; i < 300; i++) await small.write([np(`filler${i}`)])
      for (let i = 0; i < 300; i++) await small.write([{ op: 'delete', kind: 'NetworkPolicy', key: `x/filler${i}` }])
      w.resume()
      await untilRevision(w, await small.revision())
      const resumed = log.events.slice(seen)
      assert.ok(resumed.some((e) => e.type === 'in-sync' && e.resynced), 'it resynced')
      const changes = resumed.filter((e) => e.type === 'put' || e.type === 'delete')
      assert.deepEqual(
        changes.map((e) => `${e.type} ${e.type === 'put' ? e.object.key : e.key}`),
        ['put x/change', 'delete x/drop'],
        'only what differs from what the watcher had',
      )
    } finally {
      await w.stop()
      await small.close()
    }
  })

  it('survives its connection being killed, missing and repeating nothing', async () => {
    const log = new EventLog()
    const w = store.watch({ kinds: ['NetworkPolicy'], onEvent: log.onEvent })
    try {
      await w.whenInSync()
      const before = log.changeRevisions().length
      const expected: number[] = []
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < 5; i++) expected.push((await store.write([np(`k${round}-${i}`)])).revision)
        await store.client.call('CLIENT', 'KILL', 'TYPE', 'normal', 'SKIPME', 'yes')
      }
      for (let i = 0; i < 5; i++) expected.push((await store.write([np(`after${i}`)])).revision)
      await untilRevision(w, expected.at(-1)!)
      assert.deepEqual(log.changeRevisions().slice(before), expected)
    } finally {
      await w.stop()
    }
  })
})
