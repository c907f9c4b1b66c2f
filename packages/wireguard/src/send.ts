/**
 * The inside path: TUN -> UDP.
 *
 *   TUN batch ──> destination lookup in AllowedIps ──> peer
 *        peer has a live current session? ── no ──> stage the packet, start a handshake
 *        yes ──> copy + pad into the send buffer, seal in place, endpoint into the address array
 *   one sendmmsg for the whole batch ──> counters and timers per peer
 *
 * Buffers belong to the path and are reused for every batch; nothing is allocated per packet.
 */
import { AEAD_TAG_SIZE, MESSAGE_TRANSPORT_HEADER_SIZE } from './constants.js'
import type { DeviceContext } from './device-context.js'
import type { Keypair } from './keypair.js'
import { transportPaddingSize } from './messages.js'
import { ADDR_BYTES } from './native.js'
import type { Peer } from './peer.js'
import { BATCH_SIZE } from './tuning.js'

const OVERHEAD = MESSAGE_TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE + 16

export class InsidePath {
  private readonly slot: number
  private readonly out: Buffer
  private readonly offsets = new Uint32Array(BATCH_SIZE)
  private readonly lengths = new Uint32Array(BATCH_SIZE)
  private readonly addrs = new Uint8Array(BATCH_SIZE * ADDR_BYTES)
  /** Peers touched in this batch, to run their timers once per batch rather than per packet. */
  private readonly touched: Peer[] = []

  constructor(private readonly ctx: DeviceContext) {
    this.slot = ctx.mtu + OVERHEAD
    this.out = Buffer.alloc(BATCH_SIZE * this.slot)
  }

  /** TUN batch handler: packet i at `i * slotSize` of `buffer`. */
  readonly onPackets = (buffer: Buffer, lengths: Uint32Array, count: number, slotSize: number): void => {
    const ctx = this.ctx
    const now = ctx.now()
    let n = 0
    for (let i = 0; i < count; i++) {
      const off = i * slotSize
      const len = lengths[i] as number
      if (len < 20 || len > ctx.mtu) {
        ctx.drops.badInnerPacket++
        continue
      }
      const peer = ctx.allowedIps.lookupDestination(buffer, off, len)
      if (peer === undefined) {
        ctx.drops.noRoute++
        continue
      }
      const kp = this.sendableKeypair(peer, now)
      if (kp === null || !peer.hasEndpoint) {
        if (!peer.hasEndpoint) ctx.drops.noEndpoint++
        else if (!peer.stage(buffer, off, len)) ctx.drops.stagedOverflow++
        if (peer.hasEndpoint) ctx.sendHandshakeInitiation(peer, now, false)
        continue
      }
      const size = this.seal(kp, buffer, off, len, n)
      if (size < 0) {
        if (!peer.stage(buffer, off, len)) ctx.drops.stagedOverflow++
        ctx.sendHandshakeInitiation(peer, now, false)
        continue
      }
      this.addrs.set(peer.endpoint, n * ADDR_BYTES)
      this.lengths[n] = size
      peer.txBytes += size
      this.afterSeal(peer, kp, now)
      n++
    }
    this.flush(n, now)
  }

  /** Sends packets staged while a handshake was under way (or a keepalive when there are none). */
  sendStaged(peer: Peer, now: number, keepaliveIfEmpty: boolean): void {
    const kp = this.sendableKeypair(peer, now)
    if (kp === null || !peer.hasEndpoint) return
    const packets = peer.staged.splice(0)
    if (packets.length === 0 && !keepaliveIfEmpty) return
    let n = 0
    const send = (buf: Buffer, len: number): void => {
      const size = this.seal(kp, buf, 0, len, n)
      if (size < 0) return
      this.addrs.set(peer.endpoint, n * ADDR_BYTES)
      this.lengths[n] = size
      peer.txBytes += size
      this.afterSeal(peer, kp, now, len === 0)
      if (++n === BATCH_SIZE) n = this.flush(n, now)
    }
    if (packets.length === 0) send(this.out, 0)
    for (const p of packets) send(p, p.length)
    this.flush(n, now)
  }

  private sendableKeypair(peer: Peer, now: number): Keypair | null {
    const kp = peer.keypairs.current
    if (kp === null || !kp.canSend || kp.isExpired(now)) return null
    return kp
  }

  /** Seals `src[off, off+len)` as message `n` of the batch; returns its size or -1. */
  private seal(kp: Keypair, src: Uint8Array, off: number, len: number, n: number): number {
    const at = n * this.slot
    const body = at + MESSAGE_TRANSPORT_HEADER_SIZE
    const pad = len === 0 ? 0 : transportPaddingSize(len, this.ctx.mtu)
    if (len > 0) this.out.set(src.subarray(off, off + len), body)
    if (pad > 0) this.out.fill(0, body + len, body + len + pad)
    this.offsets[n] = at
    return kp.sealTransport(this.out, body, len + pad, this.out, at)
  }

  private afterSeal(peer: Peer, kp: Keypair, now: number, keepalive = false): void {
    if (peer.currentForCount !== kp) {
      peer.currentForCount = kp
      peer.sentOnCurrent = 0
    }
    peer.sentOnCurrent++
    if (!keepalive) peer.timers.onDataSent(now)
    peer.timers.onAnyAuthenticatedPacketSent()
    peer.timers.onAnyAuthenticatedPacketTraversal(now)
    if (kp.isInitiator && (kp.needsRekeyAfterSend(now) || peer.sentOnCurrent >= this.ctx.rekeyAfterMessages)) this.touched.push(peer)
  }

  private flush(n: number, now: number): number {
    if (n > 0) {
      const sent = this.ctx.udp.sendBatch(this.out, this.offsets, this.lengths, this.addrs, n)
      if (sent < n) this.ctx.drops.sendFailed += n - sent
    }
    // Rekeys found while sealing start after the batch went out (a handshake uses the socket too).
    while (this.touched.length > 0) this.ctx.sendHandshakeInitiation(this.touched.pop() as Peer, now, false)
    return 0
  }
}
