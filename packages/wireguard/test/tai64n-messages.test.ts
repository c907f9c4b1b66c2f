/**
 * TAI64N timestamps and the wire formats: field offsets, sizes, type checks and the in-place
 * transport header.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  decodeCookieReply,
  decodeInitiation,
  decodeResponse,
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
  messageType,
  readTransportCounter,
  readTransportCounterHi,
  readTransportCounterLo,
  readTransportReceiver,
  tai64nAfter,
  tai64nCompare,
  tai64nFromUnixMs,
  tai64nNow,
  tai64nToUnixMs,
  transportMessageSize,
  transportPaddingSize,
  writeTransportHeader,
} from '../src/index.js'

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

describe('TAI64N', () => {
  it('encodes the Unix epoch as 2^62 + 10 seconds', () => {
    assert.equal(hex(tai64nFromUnixMs(0)), '400000000000000a00000000')
    assert.equal(hex(tai64nFromUnixMs(1_000)), '400000000000000b00000000')
  })

  it('rounds the nanoseconds down to a multiple of 2^24 unless told not to', () => {
    const t = tai64nFromUnixMs(1_700_000_000_123)
    assert.equal(Buffer.from(t).readUInt32BE(8) % 0x1000000, 0)
    assert.equal(Buffer.from(tai64nFromUnixMs(1_700_000_000_123, undefined, 0, false)).readUInt32BE(8), 123_000_000)
    assert.equal(tai64nToUnixMs(tai64nFromUnixMs(1_700_000_000_123, undefined, 0, false)), 1_700_000_000_123)
    assert.ok(Math.abs(tai64nToUnixMs(t) - 1_700_000_000_123) < 17)
  })

  it('orders like time, and writes at an offset', () => {
    const a = tai64nFromUnixMs(1_700_000_000_000)
    const b = tai64nFromUnixMs(1_700_000_000_100)
    const c = tai64nFromUnixMs(1_700_000_001_000)
    assert.equal(tai64nCompare(a, b), -1)
    assert.equal(tai64nCompare(c, b), 1)
    assert.equal(tai64nCompare(b, b), 0)
    assert.ok(tai64nAfter(c, a) && !tai64nAfter(a, a))
    // Within one 16.8 ms step two times whiten to the same stamp: not "after".
    assert.ok(!tai64nAfter(tai64nFromUnixMs(1_700_000_000_001), a))
    const buf = Buffer.alloc(20, 0xff)
    tai64nFromUnixMs(0, buf, 4)
    assert.equal(hex(buf), 'ffffffff400000000000000a00000000ffffffff')
    assert.ok(Math.abs(tai64nToUnixMs(tai64nNow()) - Date.now()) < 1000)
    assert.throws(() => tai64nFromUnixMs(-1), RangeError)
  })
})

describe('handshake messages', () => {
  it('lays out an initiation as the whitepaper draws it', () => {
    const m = {
      sender: 0x04030201,
      ephemeral: Buffer.alloc(32, 0xe0),
      encryptedStatic: Buffer.alloc(48, 0x5a),
      encryptedTimestamp: Buffer.alloc(28, 0x7a),
      mac1: Buffer.alloc(16, 0x11),
      mac2: Buffer.alloc(16, 0x22),
    }
    const b = encodeInitiation(m)
    assert.equal(b.length, MESSAGE_INITIATION_SIZE)
    assert.equal(hex(b.subarray(0, 8)), '0100000001020304')
    assert.equal(b[8], 0xe0)
    assert.equal(b[40], 0x5a)
    assert.equal(b[88], 0x7a)
    assert.equal(b[116], 0x11)
    assert.equal(b[132], 0x22)
    const d = decodeInitiation(b)!
    assert.equal(d.sender, m.sender)
    for (const k of ['ephemeral', 'encryptedStatic', 'encryptedTimestamp', 'mac1', 'mac2'] as const) assert.equal(hex(d[k]), hex(m[k]))
  })

  it('lays out a response and a cookie reply, at an offset in a larger buffer', () => {
    const r = { sender: 1, receiver: 0xfffffffe, ephemeral: randomBytes(32), encryptedNothing: randomBytes(16), mac1: randomBytes(16), mac2: randomBytes(16) }
    const buf = Buffer.alloc(200)
    encodeResponse(r, buf, 50)
    assert.equal(hex(buf.subarray(50, 62)), '0200000001000000feffffff')
    const d = decodeResponse(buf, 50, MESSAGE_RESPONSE_SIZE)!
    assert.equal(d.receiver, 0xfffffffe)
    assert.equal(hex(d.ephemeral), hex(r.ephemeral))
    assert.equal(hex(d.mac2), hex(r.mac2))
    const c = { receiver: 0xdeadbeef, nonce: randomBytes(24), encryptedCookie: randomBytes(32) }
    const cb = encodeCookieReply(c)
    assert.equal(cb.length, MESSAGE_COOKIE_REPLY_SIZE)
    assert.equal(hex(cb.subarray(0, 8)), '03000000efbeadde')
    const dc = decodeCookieReply(cb)!
    assert.equal(dc.receiver, 0xdeadbeef)
    assert.equal(hex(dc.nonce), hex(c.nonce))
    assert.equal(hex(dc.encryptedCookie), hex(c.encryptedCookie))
    assert.throws(() => encodeCookieReply({ ...c, nonce: randomBytes(12) }), RangeError)
    assert.throws(() => encodeResponse(r, Buffer.alloc(91)), RangeError)
  })

  it('classifies messages by type and exact size, refusing set reserved bytes', () => {
    const sized = (type: number, len: number): Buffer => {
      const b = Buffer.alloc(len)
      b[0] = type
      return b
    }
    assert.equal(messageType(sized(1, 148)), 1)
    assert.equal(messageType(sized(1, 147)), 0)
    assert.equal(messageType(sized(2, 92)), 2)
    assert.equal(messageType(sized(2, 148)), 0)
    assert.equal(messageType(sized(3, 64)), 3)
    assert.equal(messageType(sized(4, 32)), 4)
    assert.equal(messageType(sized(4, 1500)), 4)
    assert.equal(messageType(sized(4, 31)), 0)
    assert.equal(messageType(sized(5, 64)), 0)
    assert.equal(messageType(sized(0, 64)), 0)
    assert.equal(messageType(Buffer.alloc(2)), 0)
    const reserved = sized(1, 148)
    reserved[3] = 1
    assert.equal(messageType(reserved), 0)
    assert.equal(decodeInitiation(reserved), null)
    assert.equal(decodeResponse(sized(1, 148)), null)
  })
})

describe('transport header', () => {
  it('is written and read in place', () => {
    const buf = Buffer.alloc(64, 0xaa)
    writeTransportHeader(buf, 8, 0x11223344, 0xffffffff, 0x01020304)
    assert.equal(hex(buf.subarray(8, 24)), '0400000044332211ffffffff04030201')
    assert.equal(readTransportReceiver(buf, 8), 0x11223344)
    assert.equal(readTransportCounterLo(buf, 8), 0xffffffff)
    assert.equal(readTransportCounterHi(buf, 8), 0x01020304)
    assert.equal(readTransportCounter(buf, 8), 0x01020304ffffffffn)
    assert.equal(buf[7], 0xaa)
    assert.equal(buf[24], 0xaa)
  })

  it('pads to a multiple of 16 without passing the MTU', () => {
    assert.equal(transportPaddingSize(0, 1420), 0)
    assert.equal(transportPaddingSize(1, 1420), 15)
    assert.equal(transportPaddingSize(16, 1420), 0)
    assert.equal(transportPaddingSize(1419, 1420), 1)
    assert.equal(transportPaddingSize(1420, 1420), 0)
    assert.equal(transportPaddingSize(1415, 1418), 3, 'stops at the MTU, not at 1424')
    assert.equal(transportPaddingSize(1421, 1420), 15, 'beyond the MTU the remainder is padded')
    assert.equal(transportPaddingSize(17, 0), 15)
    assert.equal(transportMessageSize(0), 32)
    assert.equal(transportMessageSize(1424), 1456)
  })
})
