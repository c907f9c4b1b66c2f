/**
 * mac1/mac2 and cookie replies between a CookieGenerator (initiator) and a CookieChecker
 * (responder), including the two-minute lifetimes. (That wireguard-go accepts our cookie replies
 * and macs is checked in noise-vectors.test.ts.)
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import {
  COOKIE_REFRESH_TIME_MS,
  CookieChecker,
  CookieGenerator,
  endpointBytes,
  mac,
  mac1Key,
  StaticIdentity,
} from '../src/index.js'

const responder = StaticIdentity.generate()
const source = endpointBytes(Buffer.from([192, 168, 13, 37]), 51820)

function message(length = 148): Buffer {
  const m = randomBytes(length)
  m.writeUInt32LE(1, 0)
  return m
}

describe('cookies', () => {
  it('endpointBytes is the address then the port, big-endian', () => {
    assert.equal(source.toString('hex'), 'c0a80d25ca6c')
    assert.equal(endpointBytes(Buffer.alloc(16), 1).length, 18)
  })

  it('mac1 is MAC(HASH("mac1----" || responder key), message up to mac1)', () => {
    const gen = new CookieGenerator(responder.publicKey)
    const checker = new CookieChecker(responder.publicKey)
    for (const length of [148, 92]) {
      const m = message(length)
      gen.addMacs(m, 0)
      assert.equal(m.subarray(length - 32, length - 16).toString('hex'), mac(mac1Key(responder.publicKey), m.subarray(0, length - 32)).toString('hex'))
      assert.ok(m.subarray(length - 16).equals(Buffer.alloc(16)), 'no cookie, so mac2 is zero')
      assert.ok(checker.checkMac1(m))
      assert.ok(!checker.checkMac2(m, source, 0))
      m[5]! ^= 1
      assert.ok(!checker.checkMac1(m))
    }
    const forSomeoneElse = message()
    gen.addMacs(forSomeoneElse, 0)
    assert.ok(!new CookieChecker(StaticIdentity.generate().publicKey).checkMac1(forSomeoneElse))
  })

  it('a cookie reply gives the initiator a mac2 the responder accepts, for that source only', () => {
    const gen = new CookieGenerator(responder.publicKey)
    const checker = new CookieChecker(responder.publicKey)
    const first = message()
    gen.addMacs(first, 0)
    const reply = checker.createReply(first, source, 0)
    assert.equal(reply.length, 64)
    assert.equal(Buffer.from(reply).readUInt32LE(4), first.readUInt32LE(4), 'addressed to the message\'s sender index')
    assert.ok(gen.consumeReply(reply, 10))
    assert.ok(gen.hasCookie(10))

    const second = message()
    gen.addMacs(second, 20)
    assert.ok(checker.checkMac1(second))
    assert.ok(checker.checkMac2(second, source, 20))
    assert.ok(!checker.checkMac2(second, endpointBytes(Buffer.from([192, 168, 13, 37]), 51821), 20))
    assert.ok(!checker.checkMac2(second, endpointBytes(Buffer.from([192, 168, 13, 38]), 51820), 20))
    second[5]! ^= 0x20
    assert.ok(!checker.checkMac2(second, source, 20))
    // mac2 covers mac1.
    second[5]! ^= 0x20
    second[120]! ^= 1
    assert.ok(!checker.checkMac2(second, source, 20))
  })

  it('a cookie reply is only accepted for the latest message sent, and not when tampered with', () => {
    const gen = new CookieGenerator(responder.publicKey)
    const checker = new CookieChecker(responder.publicKey)
    const reply0 = checker.createReply(message(), source, 0)
    assert.ok(!gen.consumeReply(reply0, 0), 'nothing sent yet')
    const old = message()
    gen.addMacs(old, 0)
    const stale = checker.createReply(old, source, 0)
    gen.addMacs(message(), 1)
    assert.ok(!gen.consumeReply(stale, 1), 'answers an older message')
    const latest = message()
    gen.addMacs(latest, 2)
    const good = Buffer.from(checker.createReply(latest, source, 2))
    const bad = Buffer.from(good)
    bad[40]! ^= 1
    assert.ok(!gen.consumeReply(bad, 2))
    assert.ok(!gen.consumeReply(good.subarray(0, 63), 2))
    assert.ok(!gen.hasCookie(2))
    assert.ok(gen.consumeReply(good, 2))
    assert.ok(!new CookieGenerator(StaticIdentity.generate().publicKey).consumeReply(good, 2))
  })

  it('cookies last two minutes and the secret rotates after two minutes', () => {
    const gen = new CookieGenerator(responder.publicKey)
    const checker = new CookieChecker(responder.publicKey)
    const m = message()
    gen.addMacs(m, 0)
    assert.ok(gen.consumeReply(checker.createReply(m, source, 0), 0))
    const within = message()
    gen.addMacs(within, COOKIE_REFRESH_TIME_MS)
    assert.ok(checker.checkMac2(within, source, COOKIE_REFRESH_TIME_MS))
    assert.ok(!checker.checkMac2(within, source, COOKIE_REFRESH_TIME_MS + 1), 'the secret is too old')
    const after = message()
    gen.addMacs(after, COOKIE_REFRESH_TIME_MS + 1)
    assert.ok(after.subarray(132).equals(Buffer.alloc(16)), 'the cookie is too old to use')
    // A new reply rotates the secret: the old cookie no longer works.
    checker.createReply(after, source, COOKIE_REFRESH_TIME_MS + 1)
    assert.ok(!checker.checkMac2(within, source, COOKIE_REFRESH_TIME_MS + 2))
  })

  it('refuses messages too short to carry macs', () => {
    assert.throws(() => new CookieChecker(responder.publicKey).checkMac1(Buffer.alloc(20)), RangeError)
  })
})
