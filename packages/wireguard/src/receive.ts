/**
 * The outside path: UDP -> TUN.
 *
 *   UDP batch ──> messageType()
 *     1 initiation ─> mac1 ─> (under load: mac2, else cookie reply) ─> per-source rate limit
 *                    ─> consumeInitiation ─> response, session in `next`, endpoint learnt
 *     2 response   ─> mac1 ─> (under load: mac2) ─> consumeResponse ─> session current, send staged
 *     3 cookie     ─> the peer's CookieGenerator keeps the cookie for the next initiation
 *     4 transport  ─> index ─> keypair ─> queued
 *   queued transport messages, one AEAD call for all of them (a key per message) ─> then each in
 *   order: authenticated? ─> replay window ─> endpoint learnt
 *                    ─> keepalive? done : inner source must be in the peer's AllowedIPs ─> TUN batch
 *
 * The queue is opened before any handshake message of the batch is handled and whenever it is
 * full, so every message still sees the sessions that the ones before it left, as if each were
 * handled alone. Handshake messages are rare and allowed to allocate; transport messages are
 * decrypted into the path's own buffer and written to the TUN with one writeBatch per queue.
 */
import { AEAD_TAG_SIZE, KEY_SIZE, MESSAGE_COOKIE_REPLY_TYPE, MESSAGE_INITIATION_TYPE, MESSAGE_RESPONSE_TYPE, MESSAGE_TRANSPORT_HEADER_SIZE, MESSAGE_TRANSPORT_TYPE } from './constants.js'
import type { DeviceContext } from './device-context.js'
import type { Keypair } from './keypair.js'
import { messageType, readTransportReceiver } from './messages.js'
import { ADDR_BYTES } from './native.js'
import { beginSymmetricSession, consumeInitiation, consumeResponse, createResponse } from './noise.js'
import type { Peer } from './peer.js'
import { transportAead, type TransportAead } from './transport-aead.js'
import { isRelayRecord } from './relay-path.js'
import { BATCH_SIZE, DIRECT_PATH_FRESH_MS } from './tuning.js'

type Roam = 0 | 1 | 2
const ROAM_NONE: Roam = 0
/** A relay link delivered a packet that authenticated as another peer. */
const ROAM_FOREIGN_RELAY: Roam = 1
/** The peer was relayed and its packet came over the direct path. */
const ROAM_BACK_TO_DIRECT: Roam = 2

/** Address bytes and port of an address record: what a cookie is bound to. */
const SOURCE_BYTES = 18

export class OutsidePath {
  private readonly slot: number
  private readonly out: Buffer
  /** Packets ready for the TUN. */
  private readonly offsets = new Uint32Array(BATCH_SIZE)
  private readonly lengths = new Uint32Array(BATCH_SIZE)
  /** Queued transport message q: where it is, its source record, session and peer. */
  private readonly msgOffsets = new Uint32Array(BATCH_SIZE)
  private readonly msgLengths = new Uint32Array(BATCH_SIZE)
  private readonly msgSources = new Uint32Array(BATCH_SIZE)
  private readonly msgKeypairs: (Keypair | null)[] = new Array<Keypair | null>(BATCH_SIZE).fill(null)
  private readonly msgPeers: (Peer | null)[] = new Array<Peer | null>(BATCH_SIZE).fill(null)
  /** Message q decrypts into slot q; results[q] is its plaintext length or -1. */
  private readonly outOffsets = new Uint32Array(BATCH_SIZE)
  private readonly results = new Int32Array(BATCH_SIZE)
  /** The receive keys of the queued messages' sessions (zeroed once used) and which is whose. */
  private readonly keys = Buffer.alloc(BATCH_SIZE * KEY_SIZE)
  private readonly keyIndex = new Uint8Array(BATCH_SIZE)
  private readonly keyed: Keypair[] = []
  private readonly aead: TransportAead

  constructor(private readonly ctx: DeviceContext) {
    this.slot = Math.max(ctx.mtu, 1280) + 64
    this.out = Buffer.alloc(BATCH_SIZE * this.slot)
    for (let q = 0; q < BATCH_SIZE; q++) this.outOffsets[q] = q * this.slot
    this.aead = transportAead()
  }

  readonly onDatagrams = (buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number): void => {
    const ctx = this.ctx
    const now = ctx.now()
    let q = 0
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number
      const len = lengths[i] as number
      const type = messageType(buffer, off, len)
      if (type === MESSAGE_TRANSPORT_TYPE) {
        if (this.queue(buffer, off, len, i, q, now)) q++
        if (q === BATCH_SIZE) q = this.openQueued(buffer, addrs, q, now)
      } else if (type === 0) {
        ctx.drops.malformed++
      } else {
        q = this.openQueued(buffer, addrs, q, now)
        this.handshake(type, buffer, off, len, addrs, i, now)
      }
    }
    this.openQueued(buffer, addrs, q, now)
  }

  /** Finds the session of one transport message and queues it as message `q`; false when dropped. */
  private queue(buffer: Buffer, off: number, len: number, i: number, q: number, now: number): boolean {
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
    let k = this.keyed.indexOf(kp)
    if (k < 0) {
      k = this.keyed.length
      this.keyed.push(kp)
      this.keys.set(kp.receiveKey, k * KEY_SIZE)
    }
    this.keyIndex[q] = k
    this.msgOffsets[q] = off
    this.msgLengths[q] = len
    this.msgSources[q] = i
    this.msgKeypairs[q] = kp
    this.msgPeers[q] = entry.peer
    return true
  }

  /** Opens the `count` queued messages in one call, then handles each in order. Returns 0. */
  private openQueued(buffer: Buffer, addrs: Uint8Array, count: number, now: number): number {
    if (count === 0) return 0
    const ctx = this.ctx
    this.aead.open(this.keys, this.keyIndex, buffer, this.msgOffsets, this.msgLengths, count, this.out, this.outOffsets, this.results)
    this.keys.fill(0, 0, this.keyed.length * KEY_SIZE)
    this.keyed.length = 0
    let n = 0
    // Once a message promotes a session, the one it displaces is retired: later messages for it
    // must find their index gone, as they would have, had each been handled alone.
    let promoted = false
    for (let q = 0; q < count; q++) {
      const kp = this.msgKeypairs[q] as Keypair
      const peer = this.msgPeers[q] as Peer
      this.msgKeypairs[q] = null
      this.msgPeers[q] = null
      const off = this.msgOffsets[q] as number
      if (promoted && ctx.table.lookup(readTransportReceiver(buffer, off))?.keypair !== kp) {
        ctx.drops.unknownIndex++
        continue
      }
      const plain = this.results[q] as number
      if (plain < 0) {
        ctx.drops.authFailed++
        continue
      }
      // Only after authentication, so forged packets cannot move the window.
      if (!kp.acceptCounter(buffer, off)) {
        ctx.drops.replayed++
        continue
      }
      // Only authenticated packets may move the endpoint (roaming).
      const roam = this.learnEndpoint(peer, addrs, this.msgSources[q] as number, now)
      if (roam === ROAM_FOREIGN_RELAY) {
        ctx.drops.relayPeerMismatch++
        continue
      }
      peer.rxBytes += this.msgLengths[q] as number
      if (peer.keypairs.receivedWith(kp)) {
        promoted = true
        // First packet on a session we answered: the handshake is confirmed from our side too.
        peer.lastHandshakeWallMs = Date.now()
        peer.timers.onHandshakeComplete()
        ctx.sendStaged(peer, now, false)
      }
      if (kp.needsRekeyAfterReceive(now)) ctx.sendHandshakeInitiation(peer, now, false)
      peer.timers.onAnyAuthenticatedPacketReceived()
      peer.timers.onAnyAuthenticatedPacketTraversal(now)
      if (roam === ROAM_BACK_TO_DIRECT) ctx.directPathRestored(peer, now)
      if (plain === 0) continue // keepalive
      peer.timers.onDataReceived(now)
      const at = this.outOffsets[q] as number
      const size = innerPacketLength(this.out, at, plain)
      if (size === 0 || ctx.allowedIps.lookupSource(this.out, at, size) !== peer) {
        ctx.drops.sourceNotAllowed++
        continue
      }
      this.offsets[n] = at
      this.lengths[n] = size
      n++
    }
    this.flush(n)
    return 0
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
      if (this.learnEndpoint(peer, addrs, i, now) === ROAM_FOREIGN_RELAY) {
        ctx.drops.relayPeerMismatch++
        return
      }
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
      const relayPeer = ctx.relayPeer(addrs, i)
      if (relayPeer !== undefined && relayPeer !== peer) {
        ctx.drops.relayPeerMismatch++
        return
      }
      const kp = beginSymmetricSession(hs, ctx.table, now)
      if (kp === null) {
        ctx.drops.handshakeRejected++
        return
      }
      this.learnEndpoint(peer, addrs, i, now)
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

  /**
   * Roaming: the peer's endpoint becomes the source of its latest authenticated packet, UDP
   * address or relay link alike, with two exceptions. A relay link speaks only for the peer it
   * was opened to. And a direct path heard from within DIRECT_PATH_FRESH_MS wins over the relay,
   * so relayed datagrams still in flight after a move back to direct do not undo it.
   */
  private learnEndpoint(peer: Peer, addrs: Uint8Array, i: number, now: number): Roam {
    const base = i * ADDR_BYTES
    const relayed = isRelayRecord(addrs, i)
    if (relayed) {
      if (this.ctx.relayPeer(addrs, i) !== peer) return ROAM_FOREIGN_RELAY
      if (now - peer.lastDirectRxAt < DIRECT_PATH_FRESH_MS) return ROAM_NONE
    } else {
      peer.lastDirectRxAt = now
    }
    // The common case, per packet: nothing moved. (While a peer is direct, its directEndpoint
    // equals its endpoint: setPeer, setPeerRelay and the lines below keep them so.)
    if (peer.hasEndpoint && sameRecord(peer.endpoint, addrs, base)) return ROAM_NONE
    const wasRelayed = peer.viaRelay
    const source = addrs.subarray(base, base + ADDR_BYTES)
    peer.endpoint.set(source)
    peer.hasEndpoint = true
    if (relayed) return ROAM_NONE
    peer.directEndpoint.set(source)
    peer.hasDirectEndpoint = true
    return wasRelayed ? ROAM_BACK_TO_DIRECT : ROAM_NONE
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
