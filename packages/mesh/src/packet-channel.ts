/**
 * The relay-fallback packet channel: WireGuard datagrams between two nodes over libp2p streams
 * (`/flatnet/wg-relay/1.0.0`), used when UDP between them cannot get through.
 *
 * Each direction has its own streams: a node only writes on streams it opened and only reads
 * from streams the peer opened. That keeps a path switch simple: the sender moves to a new
 * stream (a higher epoch in its header) and closes the old one once its queued bytes are out;
 * the receiver delivers the old stream to its end before anything from the newer one, so the
 * datagram order survives a relay -> direct move. Reordering is bounded (time and bytes): past
 * the bound the receiver gives up on order rather than stall, which WireGuard's replay window
 * tolerates.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { encodeStreamHeader, FrameReader, FrameWriter } from './framing.js'
import type { MeshLog } from './log.js'
import { MAX_DATAGRAM_BYTES } from './protocols.js'

export interface PacketChannelStats {
  /** Datagrams handed to a stream. */
  sent: number
  /** Datagrams delivered to onDatagram listeners. */
  received: number
  /** Datagrams refused or lost: queue full, too large, channel closed, no path, no listener. */
  dropped: number
  /** Bytes (with framing) waiting for a stream. */
  queuedBytes: number
  /** Streams opened to the peer so far (one per path change or reconnect). */
  streamsOpened: number
}

export interface PacketChannel {
  /** The remote node's PeerId. */
  readonly peerId: string
  /** True while datagrams to the peer go through a circuit relay (false once a direct connection carries them). */
  readonly viaRelay: boolean
  readonly closed: boolean
  readonly stats: Readonly<PacketChannelStats>
  /**
   * Queues one datagram (copied at once: the caller may reuse its buffer) and returns true, or
   * returns false when it is dropped (over MAX_DATAGRAM_BYTES, queue full, channel closed, or
   * the peer was unreachable within the last second). Datagrams queued in one tick leave in as
   * few stream writes as possible.
   */
  send(datagram: Uint8Array): boolean
  /**
   * Calls `cb` with each datagram the peer sends, in order. The datagram is a view into the
   * received data: read it during the call, copy it to keep it. Returns an unsubscribe function.
   */
  onDatagram(cb: (datagram: Uint8Array) => void): () => void
  /** Calls `cb` whenever the outgoing path changes between relayed and direct. */
  onPathChange(cb: (viaRelay: boolean) => void): () => void
  /** Resolves once every queued datagram has been handed to a stream (or dropped). */
  drain(): Promise<void>
  /** Closes the channel's streams (queued bytes are flushed first); sends are dropped afterwards. */
  close(): Promise<void>
}

export interface PacketChannelOptions {
  /** Bytes (with framing) a channel queues while its stream is busy or being opened; beyond it, send() drops. */
  readonly maxQueuedBytes: number
  /** How long a newer inbound stream waits for an older one to end before order is given up. */
  readonly reorderTimeoutMs: number
  /** Bytes a newer inbound stream holds back while an older one is still delivering. */
  readonly maxReorderBytes: number
  /** How long a stream write may wait for the peer to take data before the stream is given up. */
  readonly writeStallMs: number
}

export const PACKET_CHANNEL_DEFAULTS: PacketChannelOptions = Object.freeze({
  maxQueuedBytes: 4 * 1024 * 1024,
  reorderTimeoutMs: 2_000,
  maxReorderBytes: 4 * 1024 * 1024,
  writeStallMs: 10_000,
})

/** What a channel needs from the mesh node. */
export interface PacketChannelHost {
  /** A new wg-relay stream to the peer, on `conn` or else the best connection (direct first), dialing if needed. */
  openStream(peerId: string, conn?: Connection): Promise<{ stream: Stream; viaRelay: boolean }>
  channelClosed(channel: MeshPacketChannel): void
  /** Called after an outgoing relayed stream was replaced by a direct one and has been closed. */
  relayRetired(peerId: string): void
  readonly log: MeshLog
}

/** After a failed open, datagrams are dropped for this long instead of queueing behind a dead path. */
const REOPEN_BACKOFF_MS = 1_000
/** How long a retired stream gets to flush its queue before it is reset. */
const RETIRE_TIMEOUT_MS = 10_000

interface Outbound {
  readonly stream: Stream
  readonly epoch: number
  readonly viaRelay: boolean
}

class Inbound {
  readonly reader: FrameReader
  /** Datagrams held back while an older stream of the peer is still delivering. */
  held: Uint8Array[] | undefined
  heldBytes = 0
  /** False once ordering was given up for this stream: its datagrams are delivered as they come. */
  ordered = true
  ended = false
  timer: NodeJS.Timeout | undefined

  constructor(
    readonly stream: Stream,
    readonly viaRelay: boolean,
    onHeader: (inb: Inbound) => void,
    onFrame: (inb: Inbound, d: Uint8Array) => void,
  ) {
    this.reader = new FrameReader(
      () => onHeader(this),
      (d) => onFrame(this, d),
    )
  }

  get epoch(): number | undefined {
    return this.reader.epoch
  }
}

export class MeshPacketChannel implements PacketChannel {
  readonly stats: PacketChannelStats = { sent: 0, received: 0, dropped: 0, queuedBytes: 0, streamsOpened: 0 }
  private readonly writer = new FrameWriter()
  private out: Outbound | undefined
  private opening: Promise<Outbound> | undefined
  private epoch = 0
  private flushing = false
  private flushScheduled = false
  private reopenAfter = 0
  private isClosed = false
  private inbound: Inbound[] = []
  /** The ordered inbound stream with the lowest epoch: the only one delivering straight through. */
  private active: Inbound | undefined
  private readonly datagramListeners = new Set<(d: Uint8Array) => void>()
  private readonly pathListeners = new Set<(viaRelay: boolean) => void>()
  private drainWaiters: (() => void)[] = []
  private lastPath: boolean | undefined

  constructor(
    readonly peerId: string,
    private readonly host: PacketChannelHost,
    private readonly opts: PacketChannelOptions = PACKET_CHANNEL_DEFAULTS,
  ) {}

  get viaRelay(): boolean {
    if (this.out !== undefined) return this.out.viaRelay
    const newest = this.inbound[this.inbound.length - 1]
    return newest?.viaRelay ?? false
  }

  get closed(): boolean {
    return this.isClosed
  }

  send(datagram: Uint8Array): boolean {
    if (this.isClosed || datagram.byteLength > MAX_DATAGRAM_BYTES || this.writer.queuedBytes + 2 + datagram.byteLength > this.opts.maxQueuedBytes) {
      this.stats.dropped++
      return false
    }
    if (this.out === undefined && this.reopenAfter > Date.now()) {
      this.stats.dropped++
      return false
    }
    this.writer.add(datagram)
    this.stats.queuedBytes = this.writer.queuedBytes
    if (!this.flushScheduled && !this.flushing) {
      this.flushScheduled = true
      queueMicrotask(() => void this.flush())
    }
    return true
  }

  onDatagram(cb: (datagram: Uint8Array) => void): () => void {
    this.datagramListeners.add(cb)
    return () => this.datagramListeners.delete(cb)
  }

  onPathChange(cb: (viaRelay: boolean) => void): () => void {
    this.pathListeners.add(cb)
    return () => this.pathListeners.delete(cb)
  }

  drain(): Promise<void> {
    if (this.writer.queuedFrames === 0 || this.isClosed) return Promise.resolve()
    return new Promise((resolve) => this.drainWaiters.push(resolve))
  }

  async close(): Promise<void> {
    if (this.isClosed) return
    this.isClosed = true
    this.stats.dropped += this.writer.clear()
    this.stats.queuedBytes = 0
    this.resolveDrain()
    const out = this.out
    this.out = undefined
    for (const inb of this.inbound) {
      clearTimeout(inb.timer)
      inb.stream.abort(new Error('packet channel closed'))
    }
    this.inbound = []
    this.active = undefined
    this.host.channelClosed(this)
    if (out !== undefined) await closeStream(out.stream, RETIRE_TIMEOUT_MS)
  }

  /** Opens the outgoing stream now (dialling if needed) rather than on the first send; rejects when the peer is unreachable. */
  async ready(): Promise<void> {
    if (this.isClosed) throw new Error(`the packet channel to ${this.peerId} is closed`)
    if (this.out === undefined) await this.connect()
  }

  /** A direct connection to the peer appeared: move the outgoing side onto it if it is relayed now. */
  upgrade(conn: Connection): void {
    if (this.isClosed || this.out === undefined || !this.out.viaRelay || this.opening !== undefined) return
    this.connect(conn).catch((err: unknown) => {
      this.host.log.debug({ peer: this.peerId, err: (err as Error).message }, 'could not move the packet channel to the direct connection; staying on the relay')
    })
  }

  /** An inbound wg-relay stream from the peer. */
  attachInbound(stream: Stream, viaRelay: boolean): void {
    if (this.isClosed) {
      stream.abort(new Error('packet channel closed'))
      return
    }
    const inb = new Inbound(
      stream,
      viaRelay,
      () => this.reorder(),
      (i, d) => this.onFrame(i, d),
    )
    this.inbound.push(inb)
    stream.addEventListener('message', (evt) => {
      const data = evt.data
      try {
        inb.reader.push(data instanceof Uint8Array ? data : data.subarray())
      } catch (err) {
        stream.abort(err as Error)
      }
    })
    const done = (): void => this.inboundEnded(inb)
    stream.addEventListener('end', () => {
      done()
      // The peer has finished writing and this side never writes: release the stream.
      stream.close().catch(() => {})
    })
    stream.addEventListener('close', done)
  }

  private async flush(): Promise<void> {
    this.flushScheduled = false
    if (this.flushing) return
    this.flushing = true
    try {
      while (this.writer.queuedFrames > 0 && !this.isClosed) {
        const out = this.out
        if (out === undefined) {
          try {
            await this.connect()
          } catch (err) {
            this.stats.dropped += this.writer.clear()
            this.reopenAfter = Date.now() + REOPEN_BACKOFF_MS
            this.host.log.debug({ peer: this.peerId, err: (err as Error).message }, 'packet channel has no path to the peer; queued datagrams dropped')
            break
          }
          continue
        }
        const chunk = this.writer.take()!
        let writable: boolean
        try {
          writable = out.stream.send(chunk.bytes)
        } catch {
          // Never written: the stream closed under us. The chunk goes out on the next stream.
          this.writer.putBack(chunk)
          this.detach(out)
          continue
        }
        this.stats.sent += chunk.frames
        if (!writable) {
          try {
            await out.stream.onDrain({ signal: AbortSignal.timeout(this.opts.writeStallMs) })
          } catch (err) {
            out.stream.abort(err instanceof Error ? err : new Error(String(err)))
            this.detach(out)
          }
        }
      }
    } finally {
      this.flushing = false
      this.stats.queuedBytes = this.writer.queuedBytes
      if (this.writer.queuedFrames === 0 || this.isClosed) this.resolveDrain()
      else if (!this.flushScheduled) {
        this.flushScheduled = true
        queueMicrotask(() => void this.flush())
      }
    }
  }

  private resolveDrain(): void {
    const waiters = this.drainWaiters
    this.drainWaiters = []
    for (const w of waiters) w()
  }

  private connect(conn?: Connection): Promise<Outbound> {
    this.opening ??= this.openOutbound(conn).finally(() => {
      this.opening = undefined
    })
    return this.opening
  }

  private async openOutbound(conn?: Connection): Promise<Outbound> {
    const { stream, viaRelay } = await this.host.openStream(this.peerId, conn)
    if (this.isClosed) {
      stream.abort(new Error('packet channel closed'))
      throw new Error('packet channel closed')
    }
    this.epoch = this.epoch >= 0xffffffff ? 1 : this.epoch + 1
    const out: Outbound = { stream, epoch: this.epoch, viaRelay }
    stream.send(encodeStreamHeader(out.epoch))
    stream.addEventListener('close', () => this.detach(out))
    this.stats.streamsOpened++
    const previous = this.out
    this.out = out
    if (previous !== undefined) {
      // Whatever was handed to the old stream still goes out on it, then its end tells the
      // receiver to move on to this stream.
      void closeStream(previous.stream, RETIRE_TIMEOUT_MS).then(() => {
        if (previous.viaRelay && !viaRelay) this.host.relayRetired(this.peerId)
      })
    }
    if (this.lastPath !== viaRelay) {
      this.lastPath = viaRelay
      for (const cb of this.pathListeners) cb(viaRelay)
    }
    this.host.log.debug({ peer: this.peerId, viaRelay, epoch: out.epoch }, 'packet channel stream open')
    return out
  }

  private detach(out: Outbound): void {
    if (this.out !== out) return
    this.out = undefined
    if (this.writer.queuedFrames > 0 && !this.flushing && !this.flushScheduled && !this.isClosed) {
      this.flushScheduled = true
      queueMicrotask(() => void this.flush())
    }
  }

  private deliver(d: Uint8Array): void {
    if (this.datagramListeners.size === 0) {
      this.stats.dropped++
      return
    }
    this.stats.received++
    for (const cb of this.datagramListeners) {
      try {
        cb(d)
      } catch (err) {
        this.host.log.warn({ peer: this.peerId, err: (err as Error).message }, 'packet channel datagram listener threw')
      }
    }
  }

  private onFrame(inb: Inbound, d: Uint8Array): void {
    if (!inb.ordered || inb === this.active) {
      this.deliver(d)
      return
    }
    inb.held ??= []
    inb.held.push(d)
    inb.heldBytes += d.byteLength
    if (inb.heldBytes > this.opts.maxReorderBytes) this.giveUpOrder(inb)
    else inb.timer ??= setTimeout(() => this.giveUpOrder(inb), this.opts.reorderTimeoutMs).unref()
  }

  /** Delivery order can no longer wait for the streams older than `inb`: they deliver as they come from now on. */
  private giveUpOrder(inb: Inbound): void {
    const epoch = inb.epoch
    if (epoch === undefined) return
    for (const other of this.inbound) if (other !== inb && other.epoch !== undefined && other.epoch < epoch) other.ordered = false
    this.host.log.debug({ peer: this.peerId, epoch }, 'packet channel: older stream did not end in time; delivering out of order')
    this.reorder()
  }

  private inboundEnded(inb: Inbound): void {
    if (inb.ended) return
    inb.ended = true
    this.reorder()
  }

  /**
   * Makes the ordered stream with the lowest epoch the active one and releases what it (and any
   * stream no longer ordered) held back. An ended stream stays listed until its held datagrams
   * are out, so a newer stream that ends early still waits its turn.
   */
  private reorder(): void {
    for (;;) {
      let lowest: Inbound | undefined
      for (const inb of this.inbound) {
        if (!inb.ordered || inb.epoch === undefined) continue
        if (lowest === undefined || inb.epoch < lowest.epoch!) lowest = inb
      }
      this.active = lowest
      for (const inb of this.inbound) if (inb.held !== undefined && (!inb.ordered || inb === lowest)) this.release(inb)
      if (lowest === undefined || !lowest.ended) break
      this.remove(lowest)
    }
    for (const inb of [...this.inbound]) if (inb.ended && (!inb.ordered || inb.epoch === undefined)) this.remove(inb)
  }

  private release(inb: Inbound): void {
    clearTimeout(inb.timer)
    inb.timer = undefined
    const held = inb.held ?? []
    inb.held = undefined
    inb.heldBytes = 0
    for (const d of held) this.deliver(d)
  }

  private remove(inb: Inbound): void {
    clearTimeout(inb.timer)
    const i = this.inbound.indexOf(inb)
    if (i >= 0) this.inbound.splice(i, 1)
  }
}

/** Graceful close (flushes what was written) bounded by `ms`, then reset. Never throws. */
async function closeStream(stream: Stream, ms: number): Promise<void> {
  try {
    await stream.close({ signal: AbortSignal.timeout(ms) })
  } catch (err) {
    stream.abort(err instanceof Error ? err : new Error(String(err)))
  }
}
