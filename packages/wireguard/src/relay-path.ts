/**
 * Relay fallback inside the device: WireGuard messages to a peer whose direct UDP path does not
 * get through travel over a RelayLink (the mesh's packet channel through a third node) instead.
 * The messages are the same WireGuard messages, so the relay only ever sees ciphertext.
 *
 *   send:    message + address record ── family 4/6 ──> UDP socket (batched, GSO)
 *                                     └─ RELAY ─────> the link of the record's slot
 *   receive: link datagram ──> the outside path, with the slot's address record as its source
 *
 * A relay endpoint is an address record like a UDP one (udp.ts), so the paths, the roaming rule
 * and the cookie code carry it without knowing:
 *
 *    0               4                                    18   19            24
 *   +---------------+------------------------------------+----+-------------+
 *   | slot (u32 LE) |              zero                  | 'R'|    zero     |
 *   +---------------+------------------------------------+----+-------------+
 *
 * Which path a peer uses is decided by the device (device.ts): it falls back to the relay when
 * a handshake goes unanswered on the direct path, probes the direct endpoint while relayed, and
 * returns to it as soon as an authenticated packet arrives there (receive.ts).
 */
import { ADDR_BYTES } from './native.js'

/** The family byte of a relay address record (ASCII 'R'; UDP records hold 4 or 6). */
export const RELAY_FAMILY = 0x52
const FAMILY_AT = 18

/** What the device needs of a relay: the mesh's PacketChannel has this shape. */
export interface RelayLink {
  /** Queues one datagram (copied); false when it was dropped. */
  send(datagram: Uint8Array): boolean
  /** Calls `cb` with each datagram from the peer, a view valid during the call; returns an unsubscribe. */
  onDatagram(cb: (datagram: Uint8Array) => void): () => void
}

/** Sends of the device, whichever path they take. */
export interface DatagramOut {
  send(buf: Uint8Array, offset: number, length: number, addrs: Uint8Array, index: number): boolean
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number): number
}

/** Receives of the device: the outside path's batch handler. */
export type DatagramIn = (buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number) => void

export function isRelayRecord(addrs: Uint8Array, index: number): boolean {
  return addrs[index * ADDR_BYTES + FAMILY_AT] === RELAY_FAMILY
}

function slotOf(addrs: Uint8Array, base: number): number {
  return ((addrs[base] as number) | ((addrs[base + 1] as number) << 8) | ((addrs[base + 2] as number) << 16) | ((addrs[base + 3] as number) << 24)) >>> 0
}

interface Slot<P> {
  readonly peer: P
  readonly link: RelayLink
  readonly record: Uint8Array
  unsubscribe: () => void
  sent: number
  received: number
  dropped: number
}

export interface RelayLinkStats {
  readonly sent: number
  readonly received: number
  readonly dropped: number
}

/**
 * The relay links of one device, one per peer, and the send side that routes each message to
 * UDP or to its link. Slots are never reused while a link holds them, so a stale record cannot
 * reach another peer's link.
 */
export class RelayLinks<P> implements DatagramOut {
  private readonly slots = new Map<number, Slot<P>>()
  private nextSlot = 1
  /** A relayed datagram is handed to the outside path as a batch of one. */
  private readonly inOffsets = new Uint32Array(1)
  private readonly inLengths = new Uint32Array(1)

  constructor(
    private readonly udp: DatagramOut,
    private readonly deliver: () => DatagramIn | null,
  ) {}

  /** Attaches `link` for `peer` and returns the address record that names it. */
  attach(peer: P, link: RelayLink): Uint8Array {
    const slot = this.nextSlot++
    const record = new Uint8Array(ADDR_BYTES)
    record[0] = slot & 0xff
    record[1] = (slot >>> 8) & 0xff
    record[2] = (slot >>> 16) & 0xff
    record[3] = (slot >>> 24) & 0xff
    record[FAMILY_AT] = RELAY_FAMILY
    const entry: Slot<P> = { peer, link, record, unsubscribe: () => undefined, sent: 0, received: 0, dropped: 0 }
    this.slots.set(slot, entry)
    entry.unsubscribe = link.onDatagram((d) => this.receive(entry, d))
    return record
  }

  detach(record: Uint8Array): void {
    const slot = slotOf(record, 0)
    this.slots.get(slot)?.unsubscribe()
    this.slots.delete(slot)
  }

  /** The peer whose link record `index` of `addrs` names, if it is a live relay record. */
  peerOf(addrs: Uint8Array, index: number): P | undefined {
    const base = index * ADDR_BYTES
    if (addrs[base + FAMILY_AT] !== RELAY_FAMILY) return undefined
    return this.slots.get(slotOf(addrs, base))?.peer
  }

  stats(record: Uint8Array): RelayLinkStats | undefined {
    const s = this.slots.get(slotOf(record, 0))
    return s && { sent: s.sent, received: s.received, dropped: s.dropped }
  }

  send(buf: Uint8Array, offset: number, length: number, addrs: Uint8Array, index: number): boolean {
    if (!isRelayRecord(addrs, index)) return this.udp.send(buf, offset, length, addrs, index)
    return this.sendRelayed(buf, offset, length, addrs, index)
  }

  /**
   * Sends a batch: runs of UDP messages go out in one sendBatch each (the common case, no relay
   * record in the batch, is a single call with the caller's arrays); relayed messages go to
   * their link in between, keeping the batch's order per peer.
   */
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number): number {
    let first = -1
    for (let i = 0; i < count; i++) {
      if (addrs[i * ADDR_BYTES + FAMILY_AT] === RELAY_FAMILY) {
        first = i
        break
      }
    }
    if (first < 0) return this.udp.sendBatch(buf, offsets, lengths, addrs, count)
    let sent = 0
    let runStart = 0
    for (let i = first; i <= count; i++) {
      if (i < count && addrs[i * ADDR_BYTES + FAMILY_AT] !== RELAY_FAMILY) continue
      if (i > runStart) sent += this.udp.sendBatch(buf, offsets.subarray(runStart), lengths.subarray(runStart), addrs.subarray(runStart * ADDR_BYTES), i - runStart)
      if (i < count && this.sendRelayed(buf, offsets[i] as number, lengths[i] as number, addrs, i)) sent++
      runStart = i + 1
    }
    return sent
  }

  private sendRelayed(buf: Uint8Array, offset: number, length: number, addrs: Uint8Array, index: number): boolean {
    const s = this.slots.get(slotOf(addrs, index * ADDR_BYTES))
    if (s === undefined) return false
    if (s.link.send(buf.subarray(offset, offset + length))) {
      s.sent++
      return true
    }
    s.dropped++
    return false
  }

  private receive(entry: Slot<P>, datagram: Uint8Array): void {
    const deliver = this.deliver()
    // The slot may have been detached while the link still had datagrams queued for us.
    if (deliver === null || this.slots.get(slotOf(entry.record, 0)) !== entry) return
    entry.received++
    this.inOffsets[0] = 0
    this.inLengths[0] = datagram.byteLength
    deliver(Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength), this.inOffsets, this.inLengths, entry.record, 1)
  }
}
