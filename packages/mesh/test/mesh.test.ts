import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { NodeNotAdmittedError, signNodeRecord } from '@flatnet/store'
import type { NodeRecord, SignedNodeRecord } from '@flatnet/store'
import { MeshPeerUnreachableError, MeshRecordRejectedError } from '../src/index.js'
import type { PeerStatusEvent } from '../src/index.js'
import { identity, nextEvent, node, stopAll, tcpAddr, waitFor } from './helpers.js'

after(stopAll)

const stripP2p = (addr: string): string => addr.replace(/\/p2p\/[^/]+$/, '')

describe('records', () => {
  it('three nodes exchange and verify each other’s signed records', async () => {
    const ids = await Promise.all([identity(), identity(), identity()])
    const all = ids.map((i) => i.peerId)
    const [a, b, c] = await Promise.all(ids.map((i) => node(i, all)))
    const seen = new Map<string, [NodeRecord, string][]>()
    for (const n of [a!, b!, c!]) {
      const list: [NodeRecord, string][] = []
      seen.set(n.id.peerId, list)
      n.mesh.onPeerRecord((r, p) => list.push([r, p]))
    }

    assert.equal(await a!.mesh.dial(tcpAddr(b!.mesh)), b!.id.peerId)
    assert.equal(await b!.mesh.dial(tcpAddr(c!.mesh)), c!.id.peerId)
    // Without the /p2p part: the remote's identity is learnt from the Noise handshake.
    assert.equal(await c!.mesh.dial(stripP2p(tcpAddr(a!.mesh))), a!.id.peerId)

    for (const n of [a!, b!, c!]) {
      for (const other of [a!, b!, c!]) {
        if (other === n) continue
        await waitFor(() => n.mesh.confirmedWireguardKey(other.id.peerId) !== undefined, 3_000, `${n.id.peerId} to confirm ${other.id.peerId}`)
        assert.equal(n.mesh.confirmedWireguardKey(other.id.peerId), other.id.wireguardPublicKey)
        assert.deepEqual(n.mesh.peerRecord(other.id.peerId), other.id.signed.record)
        assert.equal(n.mesh.peerState(other.id.peerId)?.status, 'up')
      }
      const events = seen.get(n.id.peerId)!
      assert.deepEqual(new Set(events.map(([, p]) => p)), new Set(all.filter((p) => p !== n.id.peerId)))
      for (const [r, p] of events) assert.equal(r.peerId, p)
    }
  })

  it('a re-signed record with a higher sequence is announced; an older one is refused', async () => {
    const [ia, ib] = await Promise.all([identity(), identity()])
    const both = [ia.peerId, ib.peerId]
    const a = await node(ia, both)
    const b = await node(ib, both)
    await a.mesh.dial(tcpAddr(b.mesh))
    await waitFor(() => b.mesh.peerRecord(ia.peerId) !== undefined, 3_000, 'the first record')

    ia.signed = await signNodeRecord(ia.privateKey, { ...ia.signed.record, sequence: 2 })
    const updated = nextEvent<[NodeRecord, string]>((cb) => b.mesh.onPeerRecord((r, p) => cb([r, p])), ([, p]) => p === ia.peerId, 3_000, 'the updated record')
    await a.mesh.announce()
    const [record] = await updated
    assert.equal(record.sequence, 2)
    assert.equal(b.mesh.peerRecord(ia.peerId)?.sequence, 2)

    ia.signed = await signNodeRecord(ia.privateKey, { ...ia.signed.record, sequence: 1 })
    const stale = nextEvent<MeshRecordRejectedError>((cb) => b.mesh.onRecordRejected(cb), (e) => e.remotePeer === ia.peerId, 3_000, 'the stale record to be refused')
    await a.mesh.announce()
    assert.equal((await stale).reason, 'stale')
    assert.equal(b.mesh.peerRecord(ia.peerId)?.sequence, 2)
  })
})

describe('admission gating', () => {
  it('refuses a peer that is not admitted, whichever side dials', async () => {
    const [ia, ix] = await Promise.all([identity(), identity()])
    // X would talk to A; A does not admit X.
    const a = await node(ia, [ia.peerId])
    const x = await node(ix, [ia.peerId, ix.peerId])

    // Inbound to A: refused by A's gater once Noise has proven who X is.
    await assert.rejects(x.mesh.dial(tcpAddr(a.mesh)), MeshPeerUnreachableError)
    // Outbound from A: by PeerId it is refused before dialling; by bare address after the handshake.
    await assert.rejects(a.mesh.dial(tcpAddr(x.mesh)), NodeNotAdmittedError)
    await assert.rejects(a.mesh.dial(stripP2p(tcpAddr(x.mesh))), (err: Error) => err instanceof MeshPeerUnreachableError && /gater|intercept/i.test(err.message))
    await assert.rejects(a.mesh.openPacketChannel(ix.peerId), NodeNotAdmittedError)

    await waitFor(() => !x.mesh.connectedPeers().includes(ia.peerId), 2_000, 'X to see the refused connection closed')
    assert.deepEqual(a.mesh.connectedPeers(), [])
    assert.equal(a.mesh.peerRecord(ix.peerId), undefined)
    assert.equal(x.mesh.peerRecord(ia.peerId), undefined)
  })

  it('revoke() and refreshAdmission() disconnect a peer that was admitted', async () => {
    const ids = await Promise.all([identity(), identity(), identity()])
    const all = ids.map((i) => i.peerId)
    const [a, b, c] = await Promise.all(ids.map((i) => node(i, all)))
    await a!.mesh.dial(tcpAddr(b!.mesh))
    await a!.mesh.dial(tcpAddr(c!.mesh))
    assert.deepEqual(new Set(a!.mesh.connectedPeers()), new Set([b!.id.peerId, c!.id.peerId]))

    const down = nextEvent<PeerStatusEvent>((cb) => a!.mesh.onPeerStatus(cb), (e) => e.peerId === b!.id.peerId && e.status === 'down', 3_000, 'B down')
    await a!.mesh.revoke(b!.id.peerId)
    assert.equal((await down).reason, 'revoked')
    await waitFor(() => !b!.mesh.connectedPeers().includes(a!.id.peerId), 3_000, 'B to lose its connection to A')
    assert.equal(a!.mesh.confirmedWireguardKey(b!.id.peerId), undefined)
    // Revoked means refused from then on, even though B is still in A's admitted set.
    await assert.rejects(b!.mesh.dial(tcpAddr(a!.mesh)))
    assert.ok(!a!.mesh.connectedPeers().includes(b!.id.peerId))

    a!.admits.delete(c!.id.peerId)
    assert.deepEqual(await a!.mesh.refreshAdmission(), [c!.id.peerId])
    await waitFor(() => !c!.mesh.connectedPeers().includes(a!.id.peerId), 3_000, 'C to lose its connection to A')
    assert.deepEqual(a!.mesh.connectedPeers(), [])
  })
})

describe('forged records', () => {
  it('refuses a record for another PeerId (a genuine record of someone else, replayed) and closes the connection', async () => {
    const [ia, im, ic] = await Promise.all([identity(), identity(), identity()])
    const all = [ia.peerId, im.peerId, ic.peerId]
    const a = await node(ia, all)
    // M presents C's record, validly signed by C: the signature checks, the PeerId is not M's.
    const m = await node(im, all, {}, () => ic.signed)
    const rejected = nextEvent<MeshRecordRejectedError>((cb) => a.mesh.onRecordRejected(cb), (e) => e.remotePeer === im.peerId, 3_000, 'the rejection')
    await assert.rejects(m.mesh.dial(tcpAddr(a.mesh)))
    const err = await rejected
    assert.equal(err.reason, 'wrong-peer')
    assert.equal(err.code, 'ERR_MESH_RECORD_REJECTED')
    assert.equal(a.mesh.peerRecord(ic.peerId), undefined)
    assert.equal(a.mesh.confirmedWireguardKey(im.peerId), undefined)
    await waitFor(() => !a.mesh.connectedPeers().includes(im.peerId) && !m.mesh.connectedPeers().includes(ia.peerId), 3_000, 'the connection to close')
  })

  it('refuses a record that names the peer but is signed by another key', async () => {
    const [ia, im, other] = await Promise.all([identity(), identity(), identity()])
    const all = [ia.peerId, im.peerId]
    // Signed by `other`'s key, then relabelled with M's PeerId: M's key never signed it.
    const forged: SignedNodeRecord = { record: { ...other.signed.record, peerId: im.peerId }, signature: other.signed.signature }
    const a = await node(ia, all)
    const m = await node(im, all, {}, () => forged)
    const rejected = nextEvent<MeshRecordRejectedError>((cb) => a.mesh.onRecordRejected(cb), (e) => e.remotePeer === im.peerId, 3_000, 'the rejection')
    // This time A dials: the forged record comes back in M's reply.
    await assert.rejects(a.mesh.dial(tcpAddr(m.mesh)), MeshRecordRejectedError)
    assert.equal((await rejected).reason, 'forged')
    assert.equal(a.mesh.confirmedWireguardKey(im.peerId), undefined)
    await waitFor(() => !a.mesh.connectedPeers().includes(im.peerId), 3_000, 'the connection to close')
  })
})

describe('liveness', () => {
  it('pings, tracks rtt, and marks a stopped peer down', async () => {
    const [ia, ib] = await Promise.all([identity(), identity()])
    const both = [ia.peerId, ib.peerId]
    const a = await node(ia, both, { pingIntervalMs: 100, pingTimeoutMs: 500 })
    const b = await node(ib, both)
    await a.mesh.dial(tcpAddr(b.mesh))
    const rtt = await a.mesh.ping(ib.peerId)
    assert.ok(rtt >= 0 && rtt < 1_000, `rtt ${rtt}`)
    await waitFor(() => (a.mesh.peerState(ib.peerId)?.lastSeen ?? 0) > Date.now() - 150 && a.mesh.peerState(ib.peerId)?.rttMs !== undefined, 2_000, 'a periodic ping')
    assert.equal(a.mesh.peerState(ib.peerId)?.status, 'up')

    const down = nextEvent<PeerStatusEvent>((cb) => a.mesh.onPeerStatus(cb), (e) => e.peerId === ib.peerId && e.status === 'down', 3_000, 'B down')
    await b.mesh.stop()
    await down
    await waitFor(() => (a.mesh.peerState(ib.peerId)?.failures ?? 0) >= 2, 3_000, 'failed pings to count')
    assert.equal(a.mesh.peerState(ib.peerId)?.status, 'down')
    await assert.rejects(a.mesh.ping(ib.peerId), MeshPeerUnreachableError)

    // The same node key back on a new port: one dial and it is up again.
    const up = nextEvent<PeerStatusEvent>((cb) => a.mesh.onPeerStatus(cb), (e) => e.peerId === ib.peerId && e.status === 'up', 3_000, 'B up')
    const b2 = await node(ib, both)
    await b2.mesh.dial(tcpAddr(a.mesh))
    await up
  })
})
