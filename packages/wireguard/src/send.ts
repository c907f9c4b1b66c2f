/**
 * The inside path: TUN -> UDP.
 *
 *   TUN batch ──> destination lookup in AllowedIps ──> peer
 *        peer has a live current session? ── no ──> stage the packet, start a handshake
 *        yes ──> copy + pad into the send buffer, endpoint into the address array
 *   per keypair in the batch: reserve its counters, seal all its messages in one AEAD call
 *   one sendmmsg for the whole batch ──> counters and timers per peer
 *
 * Sealing a batch at a time is what lets the addon reuse one cipher context for every message
 * (transport-aead.ts): per-message crypto calls were the largest cost of this path.
 * Buffers belong to the path and are reused for every batch; nothing is allocated per packet.
 */
import { AEAD_TAG_SIZE, MESSAGE_TRANSPORT_HEADER_SIZE } from './constants.js'
import type { DeviceContext } from './device-context.js'
import type { Keypair } from './keypair.js'
import { transportPaddingSize } from './messages.js'
import { ADDR_BYTES } from './native.js'
import type { Peer } from './peer.js'
import { transportAead, type TransportAead } from './transport-aead.js'
import { BATCH_SIZE } from './tuning.js'

const OVERHEAD = MESSAGE_TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE + 16
const MESSAGE_OVERHEAD = MESSAGE_TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE

export class InsidePath {
  /** Room for the largest message; the batch buffer holds BATCH_SIZE of them. */
  private readonly slot: number
  private readonly out: Buffer
  private readonly offsets = new Uint32Array(BATCH_SIZE)
  private readonly lengths = new Uint32Array(BATCH_SIZE)
  private readonly addrs = new Uint8Array(BATCH_SIZE * ADDR_BYTES)
  /** Message i of the batch being built: its session (null once sealed) and peer. */
  private readonly slotKeypair: (Keypair | null)[] = new Array<Keypair | null>(BATCH_SIZE).fill(null)
  private readonly slotPeer: (Peer | null)[] = new Array<Peer | null>(BATCH_SIZE).fill(null)
  /** Plaintext to seal (padding included), and the packet's own length (for re-staging it). */
  private readonly plainLengths = new Uint32Array(BATCH_SIZE)
  private readonly packetLengths = new Uint32Array(BATCH_SIZE)
  /** The messages of one keypair, handed to the AEAD in one call. */
  private readonly groupSlots = new Uint32Array(BATCH_SIZE)
  private readonly groupOffsets = new Uint32Array(BATCH_SIZE)
  private readonly groupLengths = new Uint32Array(BATCH_SIZE)
  /** Peers touched in this batch, to run their timers once per batch rather than per packet. */
  private readonly touched: Peer[] = []
  private readonly aead: TransportAead

  constructor(private readonly ctx: DeviceContext) {
    this.slot = ctx.mtu + OVERHEAD
    this.out = Buffer.alloc(BATCH_SIZE * this.slot)
    this.aead = transportAead()
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
      this.place(peer, kp, buffer, off, len, n++)
    }
    this.flush(this.seal(n, now, true), now)
  }

  /** Sends packets staged while a handshake was under way (or a keepalive when there are none). */
  sendStaged(peer: Peer, now: number, keepaliveIfEmpty: boolean): void {
    const kp = this.sendableKeypair(peer, now)
    if (kp === null || !peer.hasEndpoint) return
    const packets = peer.staged.splice(0)
    if (packets.length === 0 && !keepaliveIfEmpty) return
    let n = 0
    if (packets.length === 0) this.place(peer, kp, this.out, 0, 0, n++)
    for (const p of packets) {
      this.place(peer, kp, p, 0, p.length, n++)
      if (n === BATCH_SIZE) n = this.flush(this.seal(n, now, false), now)
    }
    this.flush(this.seal(n, now, false), now)
  }

  /**
   * A keepalive to `endpoint` instead of the peer's current one: how a relayed peer's direct
   * path is probed (an authenticated packet, so the other side may move back to it too).
   */
  probe(peer: Peer, now: number, endpoint: Uint8Array): boolean {
    const kp = this.sendableKeypair(peer, now)
    if (kp === null) return false
    this.place(peer, kp, this.out, 0, 0, 0)
    this.addrs.set(endpoint, 0)
    this.flush(this.seal(1, now, false), now)
    return true
  }

  private sendableKeypair(peer: Peer, now: number): Keypair | null {
    const kp = peer.keypairs.current
    if (kp === null || !kp.canSend || kp.isExpired(now)) return null
    return kp
  }

  /**
   * Copies and pads `src[off, off+len)` into message `n` of the batch, to be sealed for `kp`.
   * Messages follow each other without gaps, so that a run of equal-sized ones to one endpoint
   * can leave as a single UDP GSO send.
   */
  private place(peer: Peer, kp: Keypair, src: Uint8Array, off: number, len: number, n: number): void {
    const at = n === 0 ? 0 : (this.offsets[n - 1] as number) + MESSAGE_OVERHEAD + (this.plainLengths[n - 1] as number)
    const body = at + MESSAGE_TRANSPORT_HEADER_SIZE
    const pad = len === 0 ? 0 : transportPaddingSize(len, this.ctx.mtu)
    if (len > 0) this.out.set(src.subarray(off, off + len), body)
    if (pad > 0) this.out.fill(0, body + len, body + len + pad)
    this.offsets[n] = at
    this.plainLengths[n] = len + pad
    this.packetLengths[n] = len
    this.slotKeypair[n] = kp
    this.slotPeer[n] = peer
    this.addrs.set(peer.endpoint, n * ADDR_BYTES)
  }

  /**
   * Seals the `n` placed messages, one AEAD call per keypair, with counters reserved in batch
   * order. Messages a session has no counters left for are dropped from the batch (re-staged
   * with a new handshake when `restage`). Returns how many messages remain, packed to the front.
   */
  private seal(n: number, now: number, restage: boolean): number {
    const ctx = this.ctx
    let dropped = 0
    for (let i = 0; i < n; i++) {
      const kp = this.slotKeypair[i] as Keypair | null
      if (kp === null) continue
      const peer = this.slotPeer[i] as Peer
      let k = 0
      for (let j = i; j < n; j++) {
        if (this.slotKeypair[j] !== kp) continue
        this.slotKeypair[j] = null
        this.groupSlots[k] = j
        this.groupOffsets[k] = this.offsets[j] as number
        this.groupLengths[k] = this.plainLengths[j] as number
        k++
      }
      const granted = kp.reserveCounters(k)
      const sealed = granted > 0 ? this.aead.seal(kp.sendKey, kp.reservedLo, kp.reservedHi, kp.remoteIndex, this.out, this.groupOffsets, this.groupLengths, granted) : 0
      for (let g = 0; g < k; g++) {
        const j = this.groupSlots[g] as number
        if (g < sealed) {
          const size = MESSAGE_OVERHEAD + (this.plainLengths[j] as number)
          this.lengths[j] = size
          peer.txBytes += size
          this.afterSeal(peer, kp, now, this.packetLengths[j] === 0)
          continue
        }
        this.lengths[j] = 0
        dropped++
        if (g < granted) ctx.drops.sendFailed++
        else if (restage && !peer.stage(this.out, (this.offsets[j] as number) + MESSAGE_TRANSPORT_HEADER_SIZE, this.packetLengths[j] as number)) ctx.drops.stagedOverflow++
      }
      if (granted < k && restage) ctx.sendHandshakeInitiation(peer, now, false)
    }
    this.slotPeer.fill(null, 0, n)
    return dropped === 0 ? n : this.compact(n)
  }

  /** Packs the messages that were sealed (length > 0) to the front of the batch. */
  private compact(n: number): number {
    let m = 0
    for (let i = 0; i < n; i++) {
      if (this.lengths[i] === 0) continue
      if (m !== i) {
        this.offsets[m] = this.offsets[i] as number
        this.lengths[m] = this.lengths[i] as number
        this.addrs.copyWithin(m * ADDR_BYTES, i * ADDR_BYTES, (i + 1) * ADDR_BYTES)
      }
      m++
    }
    return m
  }

  private afterSeal(peer: Peer, kp: Keypair, now: number, keepalive: boolean): void {
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
      const sent = this.ctx.out.sendBatch(this.out, this.offsets, this.lengths, this.addrs, n)
      if (sent < n) this.ctx.drops.sendFailed += n - sent
    }
    // Rekeys found while sealing start after the batch went out (a handshake uses the socket too).
    while (this.touched.length > 0) this.ctx.sendHandshakeInitiation(this.touched.pop() as Peer, now, false)
    return 0
  }
}
