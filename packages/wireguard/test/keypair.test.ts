/**
 * Keypair: transport sealing and opening, counters and their limits, age checks. Keypairs: the
 * current/previous/next rotation of wireguard-go and Linux.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  Keypair,
  Keypairs,
  REJECT_AFTER_MESSAGES,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_MESSAGES,
  REKEY_AFTER_TIME_MS,
  REKEY_AFTER_TIME_RECEIVING_MS,
  readTransportCounter,
  readTransportReceiver,
  TRANSPORT_AUTH_FAILED,
  TRANSPORT_REPLAYED,
} from '../src/index.js'

function pair(created = 0): [Keypair, Keypair] {
  const a = randomBytes(32)
  const b = randomBytes(32)
  return [
    new Keypair({ sendKey: a, receiveKey: b, localIndex: 1, remoteIndex: 2, created, isInitiator: true }),
    new Keypair({ sendKey: b, receiveKey: a, localIndex: 2, remoteIndex: 1, created, isInitiator: false }),
  ]
}

function sealed(kp: Keypair, plain: Buffer): Buffer {
  const out = Buffer.alloc(16 + plain.length + 16)
  assert.equal(kp.sealTransport(plain, 0, plain.length, out, 0), out.length)
  return out
}

describe('Keypair', () => {
  it('seals transport messages the peer opens, with rising counters', () => {
    const [i, r] = pair()
    for (let n = 0; n < 3; n++) {
      const msg = sealed(i, Buffer.from(`packet ${n}-padding-to-16`))
      assert.equal(readTransportReceiver(msg), 2)
      assert.equal(readTransportCounter(msg), BigInt(n))
      const out = Buffer.alloc(msg.length)
      const len = r.openTransport(msg, 0, msg.length, out, 0)
      assert.equal(out.subarray(0, len).toString(), `packet ${n}-padding-to-16`)
    }
    const keepalive = sealed(r, Buffer.alloc(0))
    assert.equal(keepalive.length, 32)
    assert.equal(i.openTransport(keepalive, 0, 32, Buffer.alloc(0), 0), 0)
  })

  it('encrypts in place, with the plaintext already behind the header room', () => {
    const [i, r] = pair()
    const buf = Buffer.alloc(16 + 64 + 16)
    const plain = randomBytes(64)
    plain.copy(buf, 16)
    assert.equal(i.sealTransport(buf, 16, 64, buf, 0), 96)
    const out = Buffer.alloc(64)
    assert.equal(r.openTransport(buf, 0, 96, out, 0), 64)
    assert.deepEqual(out, plain)
  })

  it('drops replays only after authenticating, and forgeries without moving the window', () => {
    const [i, r] = pair()
    const first = sealed(i, Buffer.alloc(16, 1))
    const second = sealed(i, Buffer.alloc(16, 2))
    const out = Buffer.alloc(64)
    assert.equal(r.openTransport(second, 0, second.length, out, 0), 16)
    assert.equal(r.openTransport(second, 0, second.length, out, 0), TRANSPORT_REPLAYED)
    // A forged packet with a huge counter must not slide the window past `first`.
    const forged = Buffer.from(second)
    forged.writeUInt32LE(0x7fffffff, 12)
    assert.equal(r.openTransport(forged, 0, forged.length, out, 0), TRANSPORT_AUTH_FAILED)
    assert.equal(r.openTransport(first, 0, first.length, out, 0), 16)
    const tampered = Buffer.from(first)
    tampered[20]! ^= 1
    assert.equal(r.openTransport(tampered, 0, tampered.length, out, 0), TRANSPORT_AUTH_FAILED)
  })

  it('uses counters up to REJECT_AFTER_MESSAGES - 1 and then refuses to send', () => {
    const [i, r] = pair()
    i.setSendCounter(REJECT_AFTER_MESSAGES - 2n)
    r.replay.check(REJECT_AFTER_MESSAGES - 100n)
    const a = sealed(i, Buffer.alloc(0))
    assert.equal(readTransportCounter(a), REJECT_AFTER_MESSAGES - 2n)
    const b = sealed(i, Buffer.alloc(0))
    assert.equal(readTransportCounter(b), REJECT_AFTER_MESSAGES - 1n)
    assert.equal(i.canSend, false)
    assert.equal(i.sealTransport(Buffer.alloc(0), 0, 0, Buffer.alloc(32), 0), -1)
    assert.equal(r.openTransport(b, 0, 32, Buffer.alloc(0), 0), 0)
    assert.equal(r.openTransport(a, 0, 32, Buffer.alloc(0), 0), 0)
  })

  it('carries the counter across the 2^32 boundary', () => {
    const [i, r] = pair()
    i.setSendCounter(0xffffffffn)
    const a = sealed(i, Buffer.alloc(0))
    const b = sealed(i, Buffer.alloc(0))
    assert.equal(readTransportCounter(a), 0xffffffffn)
    assert.equal(readTransportCounter(b), 0x100000000n)
    assert.equal(i.sendCounter, 0x100000001n)
    assert.equal(r.openTransport(a, 0, 32, Buffer.alloc(0), 0), 0)
    assert.equal(r.openTransport(b, 0, 32, Buffer.alloc(0), 0), 0)
  })

  it('asks for a rekey and expires at the protocol\'s ages and counts', () => {
    const [i, r] = pair(1000)
    assert.ok(!i.needsRekeyAfterSend(1000 + REKEY_AFTER_TIME_MS))
    assert.ok(i.needsRekeyAfterSend(1001 + REKEY_AFTER_TIME_MS))
    assert.ok(!r.needsRekeyAfterSend(1001 + REKEY_AFTER_TIME_MS), 'only the initiator rekeys on age')
    r.setSendCounter(BigInt(REKEY_AFTER_MESSAGES))
    assert.ok(!r.needsRekeyAfterSend(0))
    r.setSendCounter(BigInt(REKEY_AFTER_MESSAGES) + 1n)
    assert.ok(r.needsRekeyAfterSend(0), 'anyone rekeys past REKEY_AFTER_MESSAGES')
    assert.ok(!i.needsRekeyAfterReceive(1000 + REKEY_AFTER_TIME_RECEIVING_MS))
    assert.ok(i.needsRekeyAfterReceive(1001 + REKEY_AFTER_TIME_RECEIVING_MS))
    assert.ok(!r.needsRekeyAfterReceive(1001 + REKEY_AFTER_TIME_RECEIVING_MS))
    assert.ok(!i.isExpired(1000 + REJECT_AFTER_TIME_MS))
    assert.ok(i.isExpired(1001 + REJECT_AFTER_TIME_MS))
  })

  it('cannot send once wiped', () => {
    const [i] = pair()
    i.wipe()
    assert.ok(!i.canSend)
    assert.ok(i.sendKey.equals(Buffer.alloc(32)))
  })
})

describe('Keypairs', () => {
  const kp = (name: number, isInitiator: boolean): Keypair =>
    new Keypair({ sendKey: Buffer.alloc(32), receiveKey: Buffer.alloc(32), localIndex: name, remoteIndex: 0, created: 0, isInitiator })

  function slots(k: Keypairs): [number | null, number | null, number | null] {
    return [k.previous?.localIndex ?? null, k.current?.localIndex ?? null, k.next?.localIndex ?? null]
  }

  it('an initiator\'s session becomes current at once; the old one stays as previous', () => {
    const retired: number[] = []
    const k = new Keypairs((x) => retired.push(x.localIndex))
    k.insert(kp(1, true))
    assert.deepEqual(slots(k), [null, 1, null])
    k.insert(kp(2, true))
    assert.deepEqual(slots(k), [1, 2, null])
    k.insert(kp(3, true))
    assert.deepEqual(slots(k), [2, 3, null])
    assert.deepEqual(retired, [1])
  })

  it('a responder\'s session waits in next until the initiator uses it', () => {
    const retired: number[] = []
    const k = new Keypairs((x) => retired.push(x.localIndex))
    k.insert(kp(1, true))
    k.insert(kp(2, true))
    k.insert(kp(3, false))
    assert.deepEqual(slots(k), [null, 2, 3], 'previous dropped, current kept for sending')
    assert.deepEqual(retired, [1])
    assert.equal(k.receivedWith(k.current!), false)
    const next = k.next!
    assert.equal(k.receivedWith(next), true)
    assert.deepEqual(slots(k), [2, 3, null])
    assert.equal(k.receivedWith(next), false)
    // A second responder handshake before the first was confirmed replaces it.
    k.insert(kp(4, false))
    k.insert(kp(5, false))
    assert.deepEqual(slots(k), [null, 3, 5])
    assert.deepEqual(retired, [1, 2, 4])
  })

  it('an initiator session completing while next is unconfirmed keeps next as previous', () => {
    const retired: number[] = []
    const k = new Keypairs((x) => retired.push(x.localIndex))
    k.insert(kp(1, true))
    k.insert(kp(2, false))
    k.insert(kp(3, true))
    assert.deepEqual(slots(k), [2, 3, null])
    assert.deepEqual(retired, [1])
    assert.equal(k.find(2)?.localIndex, 2)
    assert.equal(k.find(9), null)
    k.clear()
    assert.deepEqual(slots(k), [null, null, null])
    assert.deepEqual(retired.sort(), [1, 2, 3])
  })
})
