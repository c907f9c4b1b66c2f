/**
 * One active syncer per cluster: two syncers campaign for one coordination.k8s.io/v1 Lease on
 * the fake API server, each with its own token (so one can be cut off), writing to one Redis.
 */
import assert from 'node:assert/strict'
import { after, afterEach, before, beforeEach, describe, it } from 'node:test'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import type { FlatnetStore } from '@flatnet/store'
import { LEASE_DEFAULTS, microTime, type LeaseConfig } from '../src/lease.js'
import { K8sSyncer } from '../src/syncer.js'
import type { FakeApiServer } from './fake-api-server.js'
import { FAST, freshStore, memoryLog, recordedCluster, transportFor, until } from './helpers.js'

type Json = Record<string, unknown>

let redis: RedisServer
let server: FakeApiServer
let store: FlatnetStore
let running: K8sSyncer[] = []
let sampler: NodeJS.Timeout | undefined
/** The most syncers seen leading at one moment. */
let maxLeaders = 0

before(async () => {
  redis = await startRedis()
})
after(async () => {
  await redis.stop()
})
beforeEach(async () => {
  server = await recordedCluster(['token-a', 'token-b'])
  store = freshStore(redis.url)
  maxLeaders = 0
  sampler = setInterval(() => {
    maxLeaders = Math.max(maxLeaders, running.filter((s) => s.status().leader).length)
  }, 10)
})
afterEach(async () => {
  clearInterval(sampler)
  await Promise.all(running.map((s) => s.stop()))
  running = []
  await store.close()
  await server.stop()
})

const LEASE = { namespace: 'kube-system', name: LEASE_DEFAULTS.name }

function candidate(identity: 'a' | 'b', timing: Pick<LeaseConfig, 'leaseDurationSeconds' | 'renewDeadlineMs' | 'retryPeriodMs'>): K8sSyncer {
  const s = new K8sSyncer(
    { transport: transportFor(server, `token-${identity}`), store, log: memoryLog().log },
    { lease: { ...LEASE, identity, ...timing }, reflector: FAST.reflector, mirror: FAST.mirror },
  )
  running.push(s)
  s.start()
  return s
}

const leaseSpec = (): Json => (server.lease(LEASE.namespace, LEASE.name)?.spec ?? {}) as Json
const leaders = (): K8sSyncer[] => running.filter((s) => s.status().leader)

describe('Kubernetes syncer: one active syncer per cluster (Lease)', () => {
  it('of two candidates one leads; when it is cut off and stops renewing, the standby takes over after the lease duration; never two at once', async () => {
    const timing = { leaseDurationSeconds: 2, renewDeadlineMs: 1_200, retryPeriodMs: 200 }
    const a = candidate('a', timing)
    const b = candidate('b', timing)
    await until('a leader', 10_000, () => leaders().length === 1)
    const first = leaders()[0]!
    const second = first === a ? b : a
    const firstId = first === a ? 'a' : 'b'
    await first.whenSynced(10_000)
    assert.equal(leaseSpec().holderIdentity, firstId)
    assert.equal(leaseSpec().leaseDurationSeconds, 2)
    assert.match(String(leaseSpec().renewTime), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/, 'MicroTime')
    // The standby stays standby while the leader renews.
    await new Promise((r) => setTimeout(r, 2_500))
    assert.equal(second.status().leader, false)
    assert.equal(await second.metrics.value('flatnet_k8s_leader'), 0)
    assert.equal(await first.metrics.value('flatnet_k8s_leader'), 1)

    // A network partition: the leader's requests no longer reach the API server.
    const cutAt = Date.now()
    server.setBlocked(`token-${firstId}`, true)
    await until('the old leader steps down', 5_000, () => !first.status().leader)
    const steppedDown = Date.now() - cutAt
    await until('the standby takes over', 10_000, () => second.status().leader)
    const takeover = Date.now() - cutAt
    assert.ok(steppedDown <= timing.renewDeadlineMs + 1_000, `stepped down after ${steppedDown} ms`)
    assert.ok(takeover >= timing.leaseDurationSeconds * 1000 - 600, `took over after ${takeover} ms, before the lease could expire`)
    assert.equal(maxLeaders, 1, 'never two leaders at once')
    assert.equal(leaseSpec().holderIdentity, firstId === 'a' ? 'b' : 'a')
    assert.equal(leaseSpec().leaseTransitions, 1)

    // The new leader mirrors; the store did not churn on the handover.
    const revision = await store.revision()
    await second.whenSynced(10_000)
    assert.equal(await store.revision(), revision, 'the new leader found the store up to date')
    server.put('pods', { metadata: { name: 'after-handover', namespace: 'shop', labels: {} }, spec: { containers: [] }, status: { phase: 'Running', podIP: '10.244.3.3' } })
    await until('mirrored by the new leader', 5_000, async () => (await store.get('Endpoint', 'shop/after-handover')) !== undefined)

    // The old leader comes back: it stays standby.
    server.setBlocked(`token-${firstId}`, false)
    await new Promise((r) => setTimeout(r, 1_000))
    assert.equal(first.status().leader, false)
    assert.equal(maxLeaders, 1)
  })

  it('a leader that stops hands the Lease over: the standby takes over at once, not after the lease duration', async () => {
    const timing = { leaseDurationSeconds: 30, renewDeadlineMs: 5_000, retryPeriodMs: 200 }
    const a = candidate('a', timing)
    await until('a leads', 5_000, () => a.status().leader)
    const b = candidate('b', timing)
    await new Promise((r) => setTimeout(r, 500))
    assert.equal(b.status().leader, false)
    const stoppedAt = Date.now()
    await a.stop()
    running = running.filter((s) => s !== a)
    assert.equal(leaseSpec().holderIdentity, '', 'released')
    await until('b leads', 5_000, () => b.status().leader)
    assert.ok(Date.now() - stoppedAt < 3_000, `handover took ${Date.now() - stoppedAt} ms`)
    assert.equal(leaseSpec().holderIdentity, 'b')
    assert.equal(maxLeaders, 1)
  })

  it('a renewal refused with 409 Conflict does not end leadership by itself; renewals failing past the renew deadline do', async () => {
    const timing = { leaseDurationSeconds: 4, renewDeadlineMs: 1_500, retryPeriodMs: 200 }
    const a = candidate('a', timing)
    await until('a leads', 5_000, () => a.status().leader)
    server.conflictLeasePuts(2)
    await new Promise((r) => setTimeout(r, 1_200))
    assert.equal(a.status().leader, true, 'two conflicts within the deadline are survived')
    assert.equal(await a.metrics.value('flatnet_k8s_leader_changes_total', { to: 'standby' }), 0)
    server.conflictLeasePuts(1_000)
    await until('a steps down', 5_000, () => !a.status().leader)
    assert.equal(await a.metrics.value('flatnet_k8s_leader_changes_total', { to: 'standby' }), 1)
    server.conflictLeasePuts(0)
    // Its own identity still holds the Lease, so it takes it back on the next round.
    await until('a leads again', 5_000, () => a.status().leader)
  })

  it('refuses timings that could let two leaders overlap', () => {
    assert.throws(
      () => new K8sSyncer({ transport: transportFor(server, 'token-a'), store, log: memoryLog().log }, { lease: { ...LEASE, identity: 'x', leaseDurationSeconds: 5, renewDeadlineMs: 5_000, retryPeriodMs: 1_000 } }),
      /renew deadline .* must be shorter than the lease duration/,
    )
    assert.equal(microTime(Date.UTC(2025, 2, 2, 10, 0, 0, 123)), '2025-03-02T10:00:00.123000Z')
  })
})
