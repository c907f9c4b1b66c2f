/**
 * Fixed vectors recorded from a real wireguard-go (Debian wireguard-go 0.0.20220316) by
 * fixtures/capture-wireguard-go.sh: every message wireguard-go sent, and every message we sent
 * and it accepted. Our side used fixed keys, ephemerals, indices, timestamp and cookie secret
 * (fixtures/vector-keys.ts), so these tests rebuild our messages byte for byte and process
 * wireguard-go's with them. A change that breaks interoperability fails here without needing
 * wireguard-go or a network.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  beginSymmetricSession,
  consumeInitiation,
  consumeResponse,
  CookieChecker,
  createInitiation,
  createResponse,
  endpointBytes,
  HandshakeState,
  IndexTable,
  StaticIdentity,
  tai64nFromUnixMs,
  tai64nToUnixMs,
} from '../src/index.js'
import { fixedSequence, ipv4Udp, VECTOR_KEYS as K } from './fixtures/vector-keys.js'

interface Transcript {
  wireguardGoPort: number
  a: Record<'initiation1' | 'cookieReply' | 'initiation2' | 'response' | 'transportFromWg' | 'transportToWg', string>
  b: Record<'initiation' | 'response' | 'transportToWg' | 'transportFromWg', string>
}

const T = JSON.parse(readFileSync(new URL('../../test/fixtures/wireguard-go-transcript.json', import.meta.url), 'utf8')) as Transcript
const bytes = (h: string): Buffer => Buffer.from(h, 'hex')
const us = new StaticIdentity(K.ourPrivate)
const wg = new StaticIdentity(K.wgPrivate)
const wgSource = endpointBytes(Buffer.from([127, 0, 0, 1]), T.wireguardGoPort)

function udpPayload(plain: Buffer, n: number): { src: string; dst: string; payload: string } {
  assert.equal(plain[0], 0x45, 'an IPv4 packet without options')
  assert.equal(plain[9], 17, 'UDP')
  const total = plain.readUInt16BE(2)
  assert.ok(total <= n, 'the IP length fits in the decrypted bytes')
  assert.equal(n % 16, 0, 'padded to a multiple of 16')
  return { src: [...plain.subarray(12, 16)].join('.'), dst: [...plain.subarray(16, 20)].join('.'), payload: plain.subarray(28, total).toString() }
}

describe('wireguard-go as initiator, with a cookie round trip (scenario A)', () => {
  const checker = (): CookieChecker => new CookieChecker(us.publicKey, fixedSequence([K.cookieSecret, K.cookieNonce]))

  it('its initiations carry a valid mac1 and decrypt to its static key and a timestamp', () => {
    const c = checker()
    for (const name of ['initiation1', 'initiation2'] as const) {
      const msg = bytes(T.a[name])
      assert.equal(msg.length, 148)
      assert.ok(c.checkMac1(msg), `${name} mac1`)
      const hs = new HandshakeState('wg', wg.publicKey, K.psk)
      const r = consumeInitiation(us, msg, (pk) => (pk.equals(wg.publicKey) ? hs : undefined), 0)
      assert.ok(r.ok, `${name} consumed`)
      assert.ok(Math.abs(tai64nToUnixMs(hs.lastTimestamp) - Date.UTC(2025, 0, 1)) < 10 * 365 * 86400_000, 'a plausible wall-clock time')
    }
  })

  it('rebuilds our cookie reply byte for byte', () => {
    const reply = checker().createReply(bytes(T.a.initiation1), wgSource, 0)
    assert.equal(Buffer.from(reply).toString('hex'), T.a.cookieReply)
  })

  it('the retransmitted initiation carries a mac2 made with the cookie we sent', () => {
    const c = checker()
    c.createReply(bytes(T.a.initiation1), wgSource, 0)
    assert.ok(c.checkMac2(bytes(T.a.initiation2), wgSource, 1000))
    assert.ok(!c.checkMac2(bytes(T.a.initiation1), wgSource, 1000), 'the first one had none')
    assert.ok(!c.checkMac2(bytes(T.a.initiation2), endpointBytes(Buffer.from([127, 0, 0, 1]), T.wireguardGoPort + 1), 1000), 'bound to the source port')
  })

  it('rebuilds our response, then decrypts its transport data and rebuilds ours', () => {
    const table = new IndexTable<string>(fixedSequence([K.indexA]))
    const hs = new HandshakeState('wg', wg.publicKey, K.psk)
    const initiation2 = bytes(T.a.initiation2)
    const r = consumeInitiation(us, initiation2, () => hs, 0)
    assert.ok(r.ok)
    assert.equal(hs.remoteIndex, initiation2.readUInt32LE(4))
    const response = createResponse(hs, table, 0, { ephemeralPrivateKey: K.ephemeralA })!
    assert.equal(Buffer.from(response).toString('hex'), T.a.response)
    const kp = beginSymmetricSession(hs, table, 0)!
    assert.equal(kp.isInitiator, false)
    assert.equal(table.lookup(K.indexA)?.keypair, kp)

    const fromWg = bytes(T.a.transportFromWg)
    assert.equal(fromWg.readUInt32LE(4), K.indexA, 'addressed to our index')
    const plain = Buffer.alloc(fromWg.length)
    const n = kp.openTransport(fromWg, 0, fromWg.length, plain, 0)
    assert.deepEqual(udpPayload(plain, n), { src: '10.99.0.1', dst: '10.99.0.2', payload: K.payloadFromWg })

    const packet = ipv4Udp('10.99.0.2', 9000, '10.99.0.1', 7000, Buffer.from(K.payloadToWgA))
    const sealed = Buffer.alloc(16 + packet.length + 16)
    kp.sealTransport(packet, 0, packet.length, sealed, 0)
    assert.equal(sealed.toString('hex'), T.a.transportToWg)
  })
})

describe('wireguard-go as responder (scenario B)', () => {
  it('rebuilds our initiation, accepts its response and exchanges transport data', () => {
    const table = new IndexTable<string>(fixedSequence([K.indexB]))
    const hs = new HandshakeState('wg', wg.publicKey, K.psk)
    const initiation = createInitiation(us, hs, table, 0, { ephemeralPrivateKey: K.ephemeralB, timestamp: tai64nFromUnixMs(K.timestampB) })!
    assert.equal(Buffer.from(initiation).toString('hex'), T.b.initiation)

    const response = bytes(T.b.response)
    const checker = new CookieChecker(us.publicKey, fixedSequence([K.cookieSecret, K.cookieNonce]))
    assert.ok(checker.checkMac1(response), 'its response carries a valid mac1')
    checker.createReply(bytes(T.a.initiation1), wgSource, 0)
    assert.ok(checker.checkMac2(response, wgSource, 1000), 'and a mac2 from the cookie it got in scenario A')
    const r = consumeResponse(us, response, table)
    assert.ok(r.ok, r.ok ? '' : r.reason)
    const kp = beginSymmetricSession(hs, table, 0)!
    assert.equal(kp.isInitiator, true)
    assert.equal(kp.remoteIndex, response.readUInt32LE(4))

    const packet = ipv4Udp('10.99.0.2', 9001, '10.99.0.1', 7000, Buffer.from(K.payloadToWgB))
    const sealed = Buffer.alloc(16 + packet.length + 16)
    kp.sealTransport(packet, 0, packet.length, sealed, 0)
    assert.equal(sealed.toString('hex'), T.b.transportToWg)

    const fromWg = bytes(T.b.transportFromWg)
    const plain = Buffer.alloc(fromWg.length)
    const n = kp.openTransport(fromWg, 0, fromWg.length, plain, 0)
    assert.deepEqual(udpPayload(plain, n), { src: '10.99.0.1', dst: '10.99.0.2', payload: K.payloadFromWgB })
  })

  it('our initiation is also accepted by our own responder holding wireguard-go\'s key', () => {
    const hs = new HandshakeState('us', us.publicKey, K.psk)
    const r = consumeInitiation(wg, bytes(T.b.initiation), (pk) => (pk.equals(us.publicKey) ? hs : undefined), 0)
    assert.ok(r.ok)
    assert.equal(tai64nToUnixMs(hs.lastTimestamp), K.timestampB)
  })

  it('a wrong preshared key makes its response fail to authenticate', () => {
    const table = new IndexTable<string>(fixedSequence([K.indexB]))
    const hs = new HandshakeState('wg', wg.publicKey, Buffer.alloc(32, 1))
    createInitiation(us, hs, table, 0, { ephemeralPrivateKey: K.ephemeralB, timestamp: tai64nFromUnixMs(K.timestampB) })
    const r = consumeResponse(us, bytes(T.b.response), table)
    assert.deepEqual(r, { ok: false, reason: 'decrypt-empty' })
  })
})
