/**
 * The outside path: UDP -> TUN.
 *
 *   UDP batch ──> messageType()
 *     1 initiation ─> mac1 ─> (under load: mac2, else cookie reply) ─> per-source rate limit
 *                    ─> consumeInitiation ─> response, session in `next`, endpoint learnt
 *     2 response   ─> mac1 ─> (under load: mac2) ─> consumeResponse ─> session current, send staged
 *     3 cookie     ─> the peer's CookieGenerator keeps the cookie for the next initiation
 *     4 transport  ─> index ─> keypair ─> decrypt + authenticate ─> replay window ─> endpoint learnt
 *                    ─> keepalive? done : inner source must be in the peer's AllowedIPs ─> TUN batch
 *
 * Handshake messages are rare and allowed to allocate; transport messages are decrypted into
 * the path's own buffer and written to the TUN with one writeBatch per UDP batch.
 */
import { AEAD_TAG_SIZE, MESSAGE_COOKIE_REPLY_TYPE, MESSAGE_INITIATION_TYPE, MESSAGE_RESPONSE_TYPE, MESSAGE_TRANSPORT_HEADER_SIZE, MESSAGE_TRANSPORT_TYPE } from './constants.js'
import type { DeviceContext } from './device-context.js'
import { TRANSPORT_AUTH_FAILED, TRANSPORT_REPLAYED } from './keypair.js'
import { messageType, readTransportReceiver } from './messages.js'
import { ADDR_BYTES } from './native.js'
import { beginSymmetricSession, consumeInitiation, consumeResponse, createResponse } from './noise.js'
import type { Peer } from './peer.js'
import { BATCH_SIZE } from './tuning.js'

/** Address bytes and port of an address record: what a cookie is bound to. */
const SOURCE_BYTES = 18

export class OutsidePath {
  private readonly slot: number
  private readonly out: Buffer
  private readonly offsets = new Uint32Array(BATCH_SIZE)
  private readonly lengths = new Uint32Array(BATCH_SIZE)

  constructor(private readonly ctx: DeviceContext) {
    this.slot = Math.max(ctx.mtu, 1280) + 64
    this.out = Buffer.alloc(BATCH_SIZE * this.slot)
  }

  readonly onDatagrams = (buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number): void => {
    const ctx = this.ctx
    const now = ctx.now()
    let n = 0
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number
      const len = lengths[i] as number
      const type = messageType(buffer, off, len)
      if (type === MESSAGE_TRANSPORT_TYPE) {
        if (this.transport(buffer, off, len, addrs, i, n, now)) n++
        if (n === BATCH_SIZE) n = this.flush(n)
      } else if (type === 0) {
        ctx.drops.malformed++
      } else {
        this.handshake(type, buffer, off, len, addrs, i, now)
      }
    }
    this.flush(n)
  }

  /** Decrypts one transport message into slot `n`; true when a packet is ready for the TUN. */
  private transport(buffer: Buffer, off: number, len: number, addrs: Uint8Array, i: number, n: number, now: number): boolean {
    const ctx = this.ctx
    const entry = ctx.table.lookup(readTransportReceiver(buffer, off))
    const kp = entry?.keypair
    if (!entry || !kp) {
      ctx.drops.unknownIndex++
      return false
    }
    if (kp.isExpired(now)) {
      ctx.drops.expiredSession++
      return false
    }
    if (len - MESSAGE_TRANSPORT_HEADER_SIZE - AEAD_TAG_SIZE > this.slot) {
      ctx.drops.malformed++
      return false
    }
    const at = n * this.slot
    const plain = kp.openTransport(buffer, off, len, this.out, at)
    if (plain === TRANSPORT_AUTH_FAILED) {
      ctx.drops.authFailed++
      return false
    }
    if (plain === TRANSPORT_REPLAYED) {
      ctx.drops.replayed++
      return false
    }
    const peer = entry.peer
    // Only authenticated packets may move the endpoint (roaming).
    this.learnEndpoint(peer, addrs, i)
    peer.rxBytes += len
    if (peer.keypairs.receivedWith(kp)) {
      // First packet on a session we answered: the handshake is confirmed from our side too.
      peer.lastHandshakeWallMs = Date.now()
      peer.timers.onHandshakeComplete()
      ctx.sendStaged(peer, now, false)
    }
    if (kp.needsRekeyAfterReceive(now)) ctx.sendHandshakeInitiation(peer, now, false)
    peer.timers.onAnyAuthenticatedPacketReceived()
    peer.timers.onAnyAuthenticatedPacketTraversal(now)
    if (plain === 0) return false // keepalive
    peer.timers.onDataReceived(now)
    const size = innerPacketLength(this.out, at, plain)
    if (size === 0 || ctx.allowedIps.lookupSource(this.out, at, size) !== peer) {
      ctx.drops.sourceNotAllowed++
      return false
    }
    this.offsets[n] = at
    this.lengths[n] = size
    return true
  }

  private handshake(type: number, buffer: Buffer, off: number, len: number, addrs: Uint8Array, i: number, now: number): void {
    const ctx = this.ctx
    if (type === MESSAGE_COOKIE_REPLY_TYPE) {
      const entry = ctx.table.lookup(buffer.readUInt32LE(off + 4))
      if (!entry || !entry.peer.handshake.cookieGenerator.consumeReply(buffer, now, off, len)) ctx.drops.handshakeRejected++
      return
    }
    if (!ctx.cookieChecker.checkMac1(buffer, off, len)) {
      ctx.drops.badMac1++
      return
    }
    const source = addrs.subarray(i * ADDR_BYTES, i * ADDR_BYTES + SOURCE_BYTES)
    if (ctx.underLoad(now)) {
      if (!ctx.cookieChecker.checkMac2(buffer, source, now, off, len)) {
        ctx.sendTo(ctx.cookieChecker.createReply(buffer, source, now, undefined, 0, off, len), addrs, i)
        ctx.drops.cookieSent++
        return
      }
      if (!ctx.allowHandshakeFrom(source, now)) {
        ctx.drops.rateLimited++
        return
      }
    }
    if (type === MESSAGE_INITIATION_TYPE) {
      const r = consumeInitiation(ctx.identity, buffer, (key) => ctx.handshakeFor(key), now, off, len)
      if (!r.ok) {
        ctx.drops.handshakeRejected++
        return
      }
      const hs = r.handshake
      const peer = hs.peer
      this.learnEndpoint(peer, addrs, i)
      const response = createResponse(hs, ctx.table, now)
      const kp = response === null ? null : beginSymmetricSession(hs, ctx.table, now)
      if (response === null || kp === null) {
        ctx.drops.handshakeRejected++
        return
      }
      peer.keypairs.insert(kp)
      peer.timers.onSessionDerived(now)
      peer.timers.onAnyAuthenticatedPacketReceived()
      peer.timers.onAnyAuthenticatedPacketTraversal(now)
      ctx.sendTo(response, peer.endpoint, 0)
      peer.timers.onAnyAuthenticatedPacketSent()
      return
    }
    if (type === MESSAGE_RESPONSE_TYPE) {
      const r = consumeResponse(ctx.identity, buffer, ctx.table, off, len)
      if (!r.ok) {
        ctx.drops.handshakeRejected++
        return
      }
      const hs = r.handshake
      const peer = hs.peer
      const kp = beginSymmetricSession(hs, ctx.table, now)
      if (kp === null) {
        ctx.drops.handshakeRejected++
        return
      }
      this.learnEndpoint(peer, addrs, i)
      peer.keypairs.insert(kp)
      peer.lastHandshakeWallMs = Date.now()
      peer.timers.onHandshakeComplete()
      peer.timers.onSessionDerived(now)
      peer.timers.onAnyAuthenticatedPacketReceived()
      peer.timers.onAnyAuthenticatedPacketTraversal(now)
      // Confirm the session to the responder at once: staged data, or a keepalive.
      ctx.sendStaged(peer, now, true)
    }
  }

  private learnEndpoint(peer: Peer, addrs: Uint8Array, i: number): void {
    const base = i * ADDR_BYTES
    if (peer.hasEndpoint && sameRecord(peer.endpoint, addrs, base)) return
    peer.endpoint.set(addrs.subarray(base, base + ADDR_BYTES))
    peer.hasEndpoint = true
  }

  private flush(n: number): number {
    if (n > 0) {
      const written = this.ctx.tun.writeBatch(this.out, this.offsets, this.lengths, n)
      if (written < n) this.ctx.drops.sendFailed += n - written
    }
    return 0
  }
}

function sameRecord(a: Uint8Array, b: Uint8Array, base: number): boolean {
  for (let k = 0; k < ADDR_BYTES; k++) if (a[k] !== b[base + k]) return false
  return true
}

/** The IP packet's own length (padding removed), or 0 when it is not a sane IPv4/IPv6 packet. */
function innerPacketLength(buf: Buffer, at: number, plain: number): number {
  if (plain < 1) return 0
  const version = (buf[at] as number) >>> 4
  if (version === 4 && plain >= 20) {
    const total = ((buf[at + 2] as number) << 8) | (buf[at + 3] as number)
    return total >= 20 && total <= plain ? total : 0
  }
  if (version === 6 && plain >= 40) {
    const total = 40 + (((buf[at + 4] as number) << 8) | (buf[at + 5] as number))
    return total <= plain ? total : 0
  }
  return 0
}
