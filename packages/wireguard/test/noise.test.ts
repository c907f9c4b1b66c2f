/**
 * The handshake between two instances of this implementation, end to end (initiation, response,
 * transport both ways, key rotation), and every way a received handshake message is refused.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import {
  beginSymmetricSession,
  consumeInitiation,
  consumeResponse,
  CookieChecker,
  createInitiation,
  createResponse,
  HANDSHAKE_INITIATION_RATE_MS,
  HandshakeState,
  IndexTable,
  Keypairs,
  StaticIdentity,
  tai64nFromUnixMs,
  type Keypair,
} from '../src/index.js'

/** One side of a connection: identity, index table, and the state it keeps for its one peer. */
class Side {
  readonly identity = StaticIdentity.generate()
  readonly table = new IndexTable<string>()
  readonly checker = new CookieChecker(this.identity.publicKey)
  hs!: HandshakeState<string>
  readonly keypairs = new Keypairs((kp) => this.table.delete(kp.localIndex))

  constructor(readonly name: string) {}

  meet(other: Side, psk?: Uint8Array): void {
    this.hs = new HandshakeState(other.name, other.identity.publicKey, psk)
  }

  lookup = (pk: Buffer): HandshakeState<string> | undefined => (pk.equals(this.hs.remoteStatic) ? this.hs : undefined)
}

function pair(psk?: Uint8Array): [Side, Side] {
  const a = new Side('alice')
  const b = new Side('bob')
  a.meet(b, psk)
  b.meet(a, psk)
  return [a, b]
}

/** A full handshake from `i` to `r`; returns the initiator's and the responder's keypair. */
function handshake(i: Side, r: Side, now: number, timestampMs = 1_700_000_000_000 + now): [Keypair, Keypair] {
  const init = createInitiation(i.identity, i.hs, i.table, now, { timestamp: tai64nFromUnixMs(timestampMs) })!
  assert.ok(r.checker.checkMac1(init))
  const c = consumeInitiation(r.identity, init, r.lookup, now)
  assert.ok(c.ok, c.ok ? '' : c.reason)
  const resp = createResponse(c.handshake, r.table, now)!
  const rkp = beginSymmetricSession(c.handshake, r.table, now)!
  r.keypairs.insert(rkp)
  assert.ok(i.checker.checkMac1(resp))
  const cr = consumeResponse(i.identity, resp, i.table)
  assert.ok(cr.ok, cr.ok ? '' : cr.reason)
  const ikp = beginSymmetricSession(cr.handshake, i.table, now)!
  i.keypairs.insert(ikp)
  return [ikp, rkp]
}

/** Sends `text` on `from`'s keypair and opens it on whatever `to`'s index table maps it to. */
function transport(from: Keypair, to: Side, text: string): string {
  const plain = Buffer.from(text)
  const msg = Buffer.alloc(16 + plain.length + 16)
  from.sealTransport(plain, 0, plain.length, msg, 0)
  const entry = to.table.lookup(msg.readUInt32LE(4))
  assert.ok(entry?.keypair, 'the receiver index names a session')
  const out = Buffer.alloc(msg.length)
  const n = entry.keypair.openTransport(msg, 0, msg.length, out, 0)
  assert.ok(n >= 0, `transport refused: ${n}`)
  to.keypairs.receivedWith(entry.keypair)
  return out.subarray(0, n).toString()
}

describe('handshake between two instances', () => {
  for (const psk of [undefined, Buffer.alloc(32, 0x42)]) {
    it(`completes and carries data both ways (${psk ? 'with' : 'without'} a preshared key)`, () => {
      const [a, b] = pair(psk)
      const [ak, bk] = handshake(a, b, 0)
      assert.ok(ak.isInitiator && !bk.isInitiator)
      assert.ok(ak.sendKey.equals(bk.receiveKey) && ak.receiveKey.equals(bk.sendKey))
      assert.ok(!ak.sendKey.equals(ak.receiveKey))
      assert.equal(ak.remoteIndex, bk.localIndex)
      assert.equal(bk.remoteIndex, ak.localIndex)
      assert.equal(a.keypairs.current, ak)
      assert.equal(b.keypairs.current, null, 'the responder may not send yet')
      assert.equal(b.keypairs.next, bk)
      assert.equal(transport(ak, b, 'hello bob'), 'hello bob')
      assert.equal(b.keypairs.current, bk, 'the first packet confirms the session')
      assert.equal(transport(bk, a, 'hello alice'), 'hello alice')
      assert.equal(a.hs.stage, 'zeroed')
      assert.equal(b.hs.stage, 'zeroed')
      assert.equal(a.table.size, 1)
      assert.equal(b.table.size, 1)
    })
  }

  it('rotates sessions over repeated handshakes in both directions', () => {
    const [a, b] = pair()
    const [ak1, bk1] = handshake(a, b, 0)
    transport(ak1, b, 'confirm')
    const [bk2, ak2] = handshake(b, a, 1000)
    assert.equal(b.keypairs.current, bk2)
    assert.equal(b.keypairs.previous, bk1)
    assert.equal(a.keypairs.next, ak2)
    // Packets still in flight on the old session are received.
    assert.equal(transport(bk1, a, 'late'), 'late')
    assert.equal(transport(bk2, a, 'new'), 'new')
    assert.equal(a.keypairs.current, ak2)
    assert.equal(a.keypairs.previous, ak1)
    const [ak3] = handshake(a, b, 2000)
    assert.equal(a.keypairs.current, ak3)
    assert.equal(a.table.lookup(ak1.localIndex), undefined, 'retired sessions leave the index table')
    assert.equal(a.table.size, 2, "the sessions in previous and current")
  })

  it('derives different keys for every handshake', () => {
    const [a, b] = pair()
    const [k1] = handshake(a, b, 0)
    const [k2] = handshake(a, b, 1000)
    assert.ok(!k1.sendKey.equals(k2.sendKey))
    assert.notEqual(k1.localIndex, k2.localIndex)
  })
})

describe('refused handshake messages', () => {
  it('an initiation replayed, or not newer than the last one, is dropped', () => {
    const [a, b] = pair()
    const init = createInitiation(a.identity, a.hs, a.table, 0, { timestamp: tai64nFromUnixMs(1_700_000_000_000) })!
    assert.ok(consumeInitiation(b.identity, init, b.lookup, 0).ok)
    assert.deepEqual(consumeInitiation(b.identity, init, b.lookup, 1000), { ok: false, reason: 'replay' })
    const older = createInitiation(a.identity, a.hs, a.table, 0, { timestamp: tai64nFromUnixMs(1_600_000_000_000) })!
    assert.deepEqual(consumeInitiation(b.identity, older, b.lookup, 2000), { ok: false, reason: 'replay' })
    const newer = createInitiation(a.identity, a.hs, a.table, 0, { timestamp: tai64nFromUnixMs(1_700_000_001_000) })!
    assert.ok(consumeInitiation(b.identity, newer, b.lookup, 3000).ok)
  })

  it('initiations closer together than the flood limit are dropped', () => {
    const [a, b] = pair()
    const first = createInitiation(a.identity, a.hs, a.table, 0, { timestamp: tai64nFromUnixMs(1_700_000_000_000) })!
    const second = createInitiation(a.identity, a.hs, a.table, 0, { timestamp: tai64nFromUnixMs(1_700_000_001_000) })!
    const third = createInitiation(a.identity, a.hs, a.table, 0, { timestamp: tai64nFromUnixMs(1_700_000_002_000) })!
    assert.ok(consumeInitiation(b.identity, first, b.lookup, 5000).ok)
    assert.deepEqual(consumeInitiation(b.identity, second, b.lookup, 5000 + HANDSHAKE_INITIATION_RATE_MS), { ok: false, reason: 'flood' })
    assert.ok(consumeInitiation(b.identity, third, b.lookup, 5001 + HANDSHAKE_INITIATION_RATE_MS).ok)
  })

  it('initiations from strangers, to someone else, or corrupted are dropped', () => {
    const [a, b] = pair()
    const init = createInitiation(a.identity, a.hs, a.table, 0)!
    assert.deepEqual(consumeInitiation(b.identity, init, () => undefined, 0), { ok: false, reason: 'unknown-peer' })
    assert.deepEqual(consumeInitiation(StaticIdentity.generate(), init, b.lookup, 0), { ok: false, reason: 'decrypt-static' })
    for (const [at, reason] of [[50, 'decrypt-static'], [100, 'decrypt-timestamp']] as const) {
      const bad = Buffer.from(init)
      bad[at]! ^= 1
      assert.deepEqual(consumeInitiation(b.identity, bad, b.lookup, 0), { ok: false, reason })
    }
    assert.deepEqual(consumeInitiation(b.identity, init.subarray(0, 147), b.lookup, 0), { ok: false, reason: 'malformed' })
    const lowOrder = Buffer.from(init)
    lowOrder.fill(0, 8, 40)
    assert.deepEqual(consumeInitiation(b.identity, lowOrder, b.lookup, 0), { ok: false, reason: 'bad-ephemeral' })
    // A peer's identity key of small order: the initiator cannot start, the responder refuses.
    const weak = new HandshakeState('weak', Buffer.alloc(32))
    assert.equal(createInitiation(a.identity, weak, a.table, 0), null)
  })

  it('a response to nothing, to a stale index, twice, or corrupted is dropped', () => {
    const [a, b] = pair()
    const init = createInitiation(a.identity, a.hs, a.table, 0)!
    const c = consumeInitiation(b.identity, init, b.lookup, 0)
    assert.ok(c.ok)
    const resp = Buffer.from(createResponse(c.handshake, b.table, 0)!)
    assert.equal(createResponse(c.handshake, b.table, 0), null, 'one response per initiation')
    const bad = Buffer.from(resp)
    bad[50]! ^= 1
    assert.deepEqual(consumeResponse(a.identity, bad, a.table), { ok: false, reason: 'decrypt-empty' })
    const otherIndex = Buffer.from(resp)
    otherIndex.writeUInt32LE((otherIndex.readUInt32LE(8) + 1) >>> 0, 8)
    assert.deepEqual(consumeResponse(a.identity, otherIndex, a.table), { ok: false, reason: 'unknown-index' })
    assert.ok(consumeResponse(a.identity, resp, a.table).ok)
    assert.deepEqual(consumeResponse(a.identity, resp, a.table), { ok: false, reason: 'wrong-state' })
    const kp = beginSymmetricSession(a.hs, a.table, 0)!
    assert.equal(beginSymmetricSession(a.hs, a.table, 0), null, 'the handshake is spent')
    assert.deepEqual(consumeResponse(a.identity, resp, a.table), { ok: false, reason: 'unknown-index' }, 'the index names a session now')
    assert.equal(a.table.lookup(kp.localIndex)?.keypair, kp)
  })

  it('a new initiation replaces the one in progress and frees its index', () => {
    const [a, b] = pair()
    const first = createInitiation(a.identity, a.hs, a.table, 0)!
    const firstIndex = a.hs.localIndex
    createInitiation(a.identity, a.hs, a.table, 0)
    assert.notEqual(a.hs.localIndex, firstIndex)
    assert.equal(a.table.lookup(firstIndex), undefined)
    assert.equal(a.table.size, 1)
    const c = consumeInitiation(b.identity, first, b.lookup, 0)
    assert.ok(c.ok)
    const resp = createResponse(c.handshake, b.table, 0)!
    assert.deepEqual(consumeResponse(a.identity, resp, a.table), { ok: false, reason: 'unknown-index' })
    a.hs.clear(a.table)
    assert.equal(a.table.size, 0)
    assert.equal(a.hs.stage, 'zeroed')
  })

  it('mismatched preshared keys fail at the response', () => {
    const a = new Side('alice')
    const b = new Side('bob')
    a.meet(b, Buffer.alloc(32, 1))
    b.meet(a, Buffer.alloc(32, 2))
    const c = consumeInitiation(b.identity, createInitiation(a.identity, a.hs, a.table, 0)!, b.lookup, 0)
    assert.ok(c.ok, 'the initiation does not depend on the preshared key')
    const resp = createResponse(c.handshake, b.table, 0)!
    assert.deepEqual(consumeResponse(a.identity, resp, a.table), { ok: false, reason: 'decrypt-empty' })
  })
})

describe('IndexTable', () => {
  it('never hands out 0 or an index in use', () => {
    const values = [0, 7, 7, 0, 9]
    const table = new IndexTable<string>(() => values.shift()!)
    const hs = new HandshakeState('p', StaticIdentity.generate().publicKey)
    assert.equal(table.newIndexForHandshake('p', hs), 7)
    assert.equal(table.newIndexForHandshake('p', hs), 9)
    assert.equal(table.lookup(7)?.handshake, hs)
    table.deletePeer('p')
    assert.equal(table.size, 0)
  })
})
