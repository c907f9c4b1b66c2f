/**
 * mac1, mac2 and cookie replies: WireGuard's defence against handshake floods (whitepaper
 * §5.4.4 and §5.4.7).
 *
 * Every handshake message ends in mac1 and mac2:
 *   mac1 = MAC(HASH("mac1----" || responder public key), message up to mac1)
 *   mac2 = MAC(cookie, message up to mac2), or zeros when the sender holds no fresh cookie
 * mac1 proves the sender knows our public key; a message with a bad mac1 gets no answer at all.
 * When under load, the responder also wants a valid mac2. The cookie is
 *   MAC(secret rotated every two minutes, sender IP || port)
 * and it travels back in a cookie reply, encrypted with XChaCha20-Poly1305 under
 * HASH("cookie--" || responder public key) with the message's mac1 as associated data, so only
 * the sender of that very message can use it. A valid mac2 then proves the sender owns its
 * source address, and per-address rate limits become meaningful.
 *
 * CookieChecker is the receiving side (one per device, keyed by our public key);
 * CookieGenerator the sending side (one per peer, keyed by the peer's public key).
 * Times are monotonic milliseconds.
 */
import { randomBytes } from 'node:crypto'
import {
  COOKIE_NONCE_SIZE,
  COOKIE_REFRESH_TIME_MS,
  COOKIE_SIZE,
  KEY_SIZE,
  MAC_SIZE,
  WG_LABEL_COOKIE,
  WG_LABEL_MAC1,
} from './constants.js'
import { constantTimeEqual, hash, mac, macInto, xaeadOpen, xaeadSeal } from './crypto.js'
import { decodeCookieReply, encodeCookieReply } from './messages.js'

const LABEL_MAC1 = Buffer.from(WG_LABEL_MAC1)
const LABEL_COOKIE = Buffer.from(WG_LABEL_COOKIE)

/** The key of mac1 for messages sent to the owner of `publicKey`. */
export function mac1Key(publicKey: Uint8Array): Buffer {
  return hash(LABEL_MAC1, publicKey)
}

/** The key that encrypts cookie replies sent by the owner of `publicKey`. */
export function cookieKey(publicKey: Uint8Array): Buffer {
  return hash(LABEL_COOKIE, publicKey)
}

/**
 * The bytes a cookie is bound to: source address (4 or 16 bytes) then port, big-endian. Only
 * the responder ever computes it, so the layout is ours to choose.
 */
export function endpointBytes(address: Uint8Array, port: number): Buffer {
  const out = Buffer.alloc(address.length + 2)
  out.set(address)
  out.writeUInt16BE(port, address.length)
  return out
}

function checkHandshakeLength(length: number): void {
  if (length < 2 * MAC_SIZE + 4) throw new RangeError(`a ${length}-byte message is too short to carry mac1 and mac2`)
}

export class CookieChecker {
  private readonly mac1Key: Buffer
  private readonly cookieKey: Buffer
  private readonly secret = Buffer.alloc(KEY_SIZE)
  private secretSet = Number.NEGATIVE_INFINITY

  /** `random` is replaceable so tests can fix the secret and nonces. */
  constructor(
    localPublicKey: Uint8Array,
    private readonly random: (size: number) => Uint8Array = randomBytes,
  ) {
    this.mac1Key = mac1Key(localPublicKey)
    this.cookieKey = cookieKey(localPublicKey)
  }

  /** Whether the handshake message `msg[offset, offset + length)` carries a valid mac1. */
  checkMac1(msg: Uint8Array, offset = 0, length = msg.length - offset): boolean {
    checkHandshakeLength(length)
    const macAt = offset + length - 2 * MAC_SIZE
    const expected = mac(this.mac1Key, msg.subarray(offset, macAt))
    return constantTimeEqual(expected, msg.subarray(macAt, macAt + MAC_SIZE))
  }

  /**
   * Whether the message carries a valid mac2 for the cookie this checker would give `source`
   * (see endpointBytes). Always false when the secret is older than two minutes.
   */
  checkMac2(msg: Uint8Array, source: Uint8Array, now: number, offset = 0, length = msg.length - offset): boolean {
    checkHandshakeLength(length)
    if (now - this.secretSet > COOKIE_REFRESH_TIME_MS) return false
    const cookie = mac(this.secret, source)
    const macAt = offset + length - MAC_SIZE
    const expected = mac(cookie, msg.subarray(offset, macAt))
    return constantTimeEqual(expected, msg.subarray(macAt, macAt + MAC_SIZE))
  }

  /**
   * The cookie reply (64 bytes, into `out` at `outOffset`) answering the handshake message
   * `msg[offset, offset + length)` that came from `source`. Its receiver is the message's
   * sender index. Rotates the secret first when it is older than two minutes.
   */
  createReply(
    msg: Uint8Array,
    source: Uint8Array,
    now: number,
    out?: Uint8Array,
    outOffset = 0,
    offset = 0,
    length = msg.length - offset,
  ): Uint8Array {
    checkHandshakeLength(length)
    if (now - this.secretSet > COOKIE_REFRESH_TIME_MS) {
      this.secret.set(this.random(KEY_SIZE).subarray(0, KEY_SIZE))
      this.secretSet = now
    }
    const cookie = mac(this.secret, source)
    const macAt = offset + length - 2 * MAC_SIZE
    const mac1 = msg.subarray(macAt, macAt + MAC_SIZE)
    const nonce = Buffer.from(this.random(COOKIE_NONCE_SIZE).subarray(0, COOKIE_NONCE_SIZE))
    const sender = (msg[offset + 4]! | (msg[offset + 5]! << 8) | (msg[offset + 6]! << 16) | (msg[offset + 7]! << 24)) >>> 0
    return encodeCookieReply({ receiver: sender, nonce, encryptedCookie: xaeadSeal(this.cookieKey, nonce, cookie, mac1) }, out, outOffset)
  }
}

export class CookieGenerator {
  private readonly mac1Key: Buffer
  private readonly cookieKey: Buffer
  private readonly cookie = Buffer.alloc(COOKIE_SIZE)
  private cookieSet = Number.NEGATIVE_INFINITY
  private readonly lastMac1 = Buffer.alloc(MAC_SIZE)
  private hasLastMac1 = false

  constructor(remotePublicKey: Uint8Array) {
    this.mac1Key = mac1Key(remotePublicKey)
    this.cookieKey = cookieKey(remotePublicKey)
  }

  /** Whether a cookie younger than two minutes is held, i.e. the next message will carry mac2. */
  hasCookie(now: number): boolean {
    return now - this.cookieSet <= COOKIE_REFRESH_TIME_MS
  }

  /**
   * Fills in mac1 and mac2 of the handshake message `msg[offset, offset + length)` in place.
   * mac1 is remembered: a cookie reply is only accepted for the latest message sent.
   */
  addMacs(msg: Uint8Array, now: number, offset = 0, length = msg.length - offset): void {
    checkHandshakeLength(length)
    const mac1At = offset + length - 2 * MAC_SIZE
    const mac2At = mac1At + MAC_SIZE
    macInto(this.mac1Key, msg, offset, mac1At - offset, msg, mac1At)
    this.lastMac1.set(msg.subarray(mac1At, mac2At))
    this.hasLastMac1 = true
    if (this.hasCookie(now)) macInto(this.cookie, msg, offset, mac2At - offset, msg, mac2At)
    else msg.fill(0, mac2At, mac2At + MAC_SIZE)
  }

  /**
   * Takes the cookie from a cookie reply answering our latest handshake message. False when it
   * does not decrypt (not for our latest message, or forged); the cookie is then unchanged.
   */
  consumeReply(reply: Uint8Array, now: number, offset = 0, length = reply.length - offset): boolean {
    if (!this.hasLastMac1) return false
    const decoded = decodeCookieReply(reply, offset, length)
    if (decoded === null) return false
    const cookie = xaeadOpen(this.cookieKey, decoded.nonce, decoded.encryptedCookie, this.lastMac1)
    if (cookie === null) return false
    this.cookie.set(cookie)
    this.cookieSet = now
    return true
  }
}
