/**
 * The agent's calculation, alone: which WireGuard peers follow from the node records, which
 * backend is chosen, and that applies coalesce. No kernel, no Redis.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { NodeRecord, StoredObject } from '@flatnet/store'
import { calculatePeers, diffPeers } from '../src/calc/peers.js'
import { decideWireguardBackend } from '../src/overlay/backend-choice.js'
import { ApplyScheduler } from '../src/apply-scheduler.js'
import { PolicyCalculation, localEndpoints } from '../src/calc/policy-calc.js'
import { StoreMirror } from '../src/sync/store-mirror.js'

const key = (n: number): string => Buffer.alloc(32, n).toString('base64')

function record(peerId: string, n: number, blocks: string[], endpoint = `192.0.2.${n}:51820`): NodeRecord {
  return { peerId, wireguardPublicKey: key(n), endpoints: [endpoint], blocks, labels: {}, issuedAt: '2026-01-01T00:00:00.000Z', sequence: 1, hostname: `node-${n}` }
}

describe('peer calculation', () => {
  it('makes one peer per other node, AllowedIPs exactly its blocks, whatever the order', () => {
    const records = [record('B', 2, ['10.244.0.64/26', '10.244.1.0/26']), record('A', 1, ['10.244.0.0/26']), record('C', 3, ['10.244.0.128/26'])]
    const one = calculatePeers(records, 'A')
    const two = calculatePeers([...records].reverse(), 'A')
    assert.deepEqual(one, two)
    assert.deepEqual(
      one.map((p) => [p.peerId, p.publicKey, p.endpoint, p.allowedIps]),
      [
        ['B', key(2), '192.0.2.2:51820', ['10.244.0.64/26', '10.244.1.0/26']],
        ['C', key(3), '192.0.2.3:51820', ['10.244.0.128/26']],
      ],
    )
  })

  it('skips nodes without blocks, and keeps one node when two claim the same WireGuard key', () => {
    const peers = calculatePeers([record('A', 1, []), record('Z', 5, ['10.244.2.0/26']), record('Y', 5, ['10.244.3.0/26'])], 'self')
    assert.deepEqual(
      peers.map((p) => p.peerId),
      ['Y'],
    )
  })

  it('diffs against the device: only new or changed peers are set, missing ones removed', () => {
    const desired = calculatePeers([record('B', 2, ['10.244.0.64/26']), record('C', 3, ['10.244.0.128/26'])], 'A')
    const current = new Map([
      [key(2), { publicKey: key(2), endpoint: '192.0.2.2:51820', allowedIps: ['10.244.0.64/26'] }],
      [key(9), { publicKey: key(9), endpoint: '192.0.2.9:51820', allowedIps: ['10.244.9.0/26'] }],
    ])
    const d = diffPeers(desired, current)
    assert.deepEqual(
      d.set.map((p) => p.peerId),
      ['C'],
    )
    assert.deepEqual(d.remove, [key(9)])
    const moved = calculatePeers([record('B', 2, ['10.244.0.64/26'], '192.0.2.22:51820')], 'A')
    assert.deepEqual(
      diffPeers(moved, current).set.map((p) => p.endpoint),
      ['192.0.2.22:51820'],
    )
  })
})

describe('WireGuard backend choice', () => {
  it('auto picks kernel when the module exists and userspace when it does not; a configured choice wins', async () => {
    assert.equal((await decideWireguardBackend('auto', async () => true)).kind, 'kernel')
    assert.equal((await decideWireguardBackend('auto', async () => false)).kind, 'userspace')
    let probed = false
    const probe = async (): Promise<boolean> => {
      probed = true
      return true
    }
    assert.equal((await decideWireguardBackend('userspace', probe)).kind, 'userspace')
    assert.equal((await decideWireguardBackend('kernel', async () => false)).kind, 'kernel')
    assert.equal(probed, false, 'a configured choice does not probe the kernel')
  })
})

describe('apply scheduling', () => {
  it('runs one apply at a time and folds requests made meanwhile into one more', async () => {
    let runs = 0
    let concurrent = 0
    let maxConcurrent = 0
    const s = new ApplyScheduler(
      async () => {
        runs++
        concurrent++
        maxConcurrent = Math.max(maxConcurrent, concurrent)
        await new Promise((r) => setTimeout(r, 20))
        concurrent--
      },
      () => undefined,
    )
    s.schedule()
    await new Promise((r) => setTimeout(r, 5))
    for (let i = 0; i < 50; i++) s.schedule()
    await s.idle()
    assert.equal(runs, 2)
    assert.equal(maxConcurrent, 1)
  })

  it('reports a failed apply and still runs the next one', async () => {
    const errors: unknown[] = []
    let n = 0
    const s = new ApplyScheduler(
      async () => {
        if (n++ === 0) throw new Error('nft said no')
      },
      (e) => errors.push(e),
    )
    s.schedule()
    await s.idle()
    s.schedule()
    await s.idle()
    assert.equal(n, 2)
    assert.equal(errors.length, 1)
  })
})

describe('policy calculation from store objects', () => {
  const obj = (kind: StoredObject['kind'], key: string, value: unknown, revision: number): StoredObject => ({ kind, key, value, revision, createRevision: revision })
  const pod = (ns: string, name: string, ip: string, node: string, labels: Record<string, string>) => ({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns, labels },
    spec: { nodeName: node, containers: [{ name: 'main', ports: [{ name: 'http', containerPort: 80, protocol: 'TCP' }] }] },
    status: { podIPs: [{ ip }] },
  })
  const denyAll = { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'deny', namespace: 'x' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } }

  it('compiles the mirrored objects, lists only this node\'s endpoints, and follows deletes', () => {
    const mirror = new StoreMirror()
    const calc = new PolicyCalculation()
    mirror.onEvent({ type: 'put', revision: 1, object: obj('Endpoint', 'x/a', pod('x', 'a', '10.244.0.2', 'n1', { app: 'a' }), 1) })
    mirror.onEvent({ type: 'put', revision: 2, object: obj('Endpoint', 'x/b', pod('x', 'b', '10.244.0.66', 'n2', { app: 'b' }), 2) })
    mirror.onEvent({ type: 'put', revision: 3, object: obj('NetworkPolicy', 'x/deny', denyAll, 3) })
    assert.equal(mirror.onEvent({ type: 'in-sync', revision: 3, resynced: false }), true)
    calc.update(mirror.takeChanges())
    let snap = calc.commit()
    assert.deepEqual(
      localEndpoints(snap, 'n1').map((r) => r.key),
      ['x/a'],
    )
    assert.equal(snap.evaluateRefs('x/b', 'x/a', 80, 'TCP').allowed, false)
    mirror.onEvent({ type: 'delete', revision: 4, kind: 'NetworkPolicy', key: 'x/deny', previous: obj('NetworkPolicy', 'x/deny', denyAll, 3) })
    calc.update(mirror.takeChanges())
    snap = calc.commit()
    assert.equal(snap.evaluateRefs('x/b', 'x/a', 80, 'TCP').allowed, true)
  })

  it('leaves out a stored object that does not validate, and enforces the rest', () => {
    const mirror = new StoreMirror()
    const calc = new PolicyCalculation()
    mirror.onEvent({ type: 'put', revision: 1, object: obj('Endpoint', 'x/a', pod('x', 'a', '10.244.0.2', 'n1', {}), 1) })
    mirror.onEvent({ type: 'put', revision: 2, object: obj('NetworkPolicy', 'x/bad', { ...denyAll, metadata: { name: 'bad', namespace: 'x' }, spec: { podSelector: {}, bogus: 1 } }, 2) })
    calc.update(mirror.takeChanges())
    const snap = calc.commit()
    assert.equal(calc.invalidObjects().length, 1)
    assert.match(JSON.stringify(calc.invalidObjects()[0]), /bogus/)
    assert.equal(localEndpoints(snap, 'n1').length, 1)
  })
})
