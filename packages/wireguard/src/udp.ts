/**
 * An unconnected UDP socket moved in batches: recvmmsg/sendmmsg, optionally UDP GSO (one send
 * carries a train of equal-sized datagrams) and GRO (one receive returns such a train, which the
 * addon splits back into datagrams). Nothing is allocated per datagram: payloads sit in one
 * buffer, and sources/destinations are fixed-size address records in a Uint8Array.
 *
 * Address record (ADDR_BYTES = 24 bytes each):
 *   [0, 16)  address: IPv4 in bytes 0..3 (rest zero), IPv6 in all 16
 *   [16, 18) port, big-endian
 *   [18]     family: 4 or 6 (0 = empty)
 *   [19]     zero
 *   [20, 24) IPv6 scope id, host byte order (0 = none)
 * IPv4 peers of a dual-stack (`::`) socket appear as family 4, not as ::ffff:a.b.c.d; a
 * family-4 record sent through an IPv6 socket goes out as IPv4.
 *
 * See native.ts for who owns the buffers.
 */
import { formatIp, InvalidArgumentError, parseIp } from '@flatnet/core'
import {
  ADDR_BYTES,
  callNative,
  nativeBinding,
  type NativeBinding,
  type NativeHandle,
  type UdpInfo,
} from './native.js'
import { NativeDevice } from './native-device.js'


/**
 * Called once per batch: datagram i is `buffer[offsets[i], offsets[i] + lengths[i])`, from the
 * address record i of `addrs`.
 */
export type DatagramBatchHandler = (buffer: Buffer, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number) => void

export interface UdpBindOptions {
  /** Local address: `0.0.0.0`, `::` (dual-stack unless ipv6Only), or a specific one; `fe80::1%eth0` takes a scope. */
  readonly address: string
  /** 0 or absent: the kernel picks a free port (see localPort). */
  readonly port?: number | undefined
  /** recvmmsg messages per wakeup and per handler call without GRO (default 64). */
  readonly batchSize?: number | undefined
  /** Bytes per receive slot: the largest datagram accepted, bigger ones are dropped (default 65536). */
  readonly slotSize?: number | undefined
  /** SO_RCVBUF/SO_SNDBUF in bytes (default 7 MiB each; forced past net.core.*mem_max when root). */
  readonly receiveBufferSize?: number | undefined
  readonly sendBufferSize?: number | undefined
  readonly ipv6Only?: boolean | undefined
  /** SO_MARK for policy routing (needs CAP_NET_ADMIN). */
  readonly fwmark?: number | undefined
  /** Coalesce contiguous same-destination, same-size datagrams of a sendBatch into UDP_SEGMENT sends. */
  readonly gso?: boolean | undefined
  /** Accept UDP_GRO trains on receive (split back into datagrams before the handler sees them). */
  readonly gro?: boolean | undefined
  /** IP_RECVERR: read ICMP errors from the error queue and count them (stats().icmpErrors). */
  readonly recvErr?: boolean | undefined
  /** Receive buffer to use instead of a new one (at least batchSize * slotSize bytes). */
  readonly buffer?: Buffer | undefined
  /** Index arrays to use instead of new ones (at least batchSize entries, batchSize * 64 with GRO). */
  readonly offsets?: Uint32Array | undefined
  readonly lengths?: Uint32Array | undefined
  readonly addrs?: Uint8Array | undefined
}

/** Segments one GRO receive may carry; sizes the index arrays so a full batch never splits. */
const GRO_SEGMENTS = 64

const DEFAULT_UDP_BATCH_SIZE = 64
const DEFAULT_UDP_SLOT_SIZE = 65536

/** Writes an address record: `address` is an IPv4 or IPv6 literal, optionally with `%scope` (numeric). */
export function encodeAddr(addrs: Uint8Array, index: number, address: string, port: number): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`port must be an integer in 0..65535, not ${port}`)
  const pct = address.indexOf('%')
  const text = pct === -1 ? address : address.slice(0, pct)
  let scope = 0
  if (pct !== -1) {
    const s = address.slice(pct + 1)
    if (!/^[0-9]+$/.test(s) || Number(s) > 0xffffffff) throw new InvalidArgumentError(`"${address}": the scope must be a numeric interface index here`)
    scope = Number(s)
  }
  const ip = parseIp(text)
  if (!ip || (pct !== -1 && ip.family !== 6)) throw new InvalidArgumentError(`invalid IP address "${address}"`)
  const base = index * ADDR_BYTES
  if (base < 0 || base + ADDR_BYTES > addrs.length) throw new InvalidArgumentError(`address index ${index} is outside the records`)
  addrs.fill(0, base, base + ADDR_BYTES)
  const words = ip.family === 4 ? 1 : 4
  for (let w = 0; w < words; w++) {
    const v = ip.words[w] as number
    addrs[base + w * 4] = v >>> 24
    addrs[base + w * 4 + 1] = (v >>> 16) & 255
    addrs[base + w * 4 + 2] = (v >>> 8) & 255
    addrs[base + w * 4 + 3] = v & 255
  }
  addrs[base + 16] = port >>> 8
  addrs[base + 17] = port & 255
  addrs[base + 18] = ip.family
  new DataView(addrs.buffer, addrs.byteOffset + base + 20, 4).setUint32(0, scope, true)
}

export interface DecodedAddr {
  readonly address: string
  readonly port: number
  readonly family: 4 | 6
  readonly scopeId: number
}

/** Reads address record `index`; undefined for an empty record. Allocates: not for the per-packet path. */
export function decodeAddr(addrs: Uint8Array, index: number): DecodedAddr | undefined {
  const base = index * ADDR_BYTES
  const family = addrs[base + 18]
  if (family !== 4 && family !== 6) return undefined
  const dv = new DataView(addrs.buffer, addrs.byteOffset + base, ADDR_BYTES)
  const port = dv.getUint16(16)
  if (family === 4) return { address: formatIp({ family: 4, words: [dv.getUint32(0), 0, 0, 0] }), port, family, scopeId: 0 }
  const address = formatIp({ family: 6, words: [dv.getUint32(0), dv.getUint32(4), dv.getUint32(8), dv.getUint32(12)] })
  return { address, port, family, scopeId: dv.getUint32(20, true) }
}

/** `1.2.3.4:51820` or `[fd00::1]:51820` for record `index` (empty string for an empty record). */
export function formatAddr(addrs: Uint8Array, index: number): string {
  const a = decodeAddr(addrs, index)
  if (!a) return ''
  if (a.family === 4) return `${a.address}:${a.port}`
  return `[${a.address}${a.scopeId ? `%${a.scopeId}` : ''}]:${a.port}`
}

/** True when records `i` of `a` and `j` of `b` name the same endpoint; no allocation. */
export function addrEquals(a: Uint8Array, i: number, b: Uint8Array, j: number): boolean {
  const x = i * ADDR_BYTES
  const y = j * ADDR_BYTES
  for (let k = 0; k < ADDR_BYTES; k++) if (a[x + k] !== b[y + k]) return false
  return true
}

export class UdpSocket extends NativeDevice {
  readonly localAddress: string
  readonly localPort: number
  readonly family: 4 | 6
  readonly batchSize: number
  readonly slotSize: number
  /** Receive buffer and index arrays handed to every handler call. */
  readonly buffer: Buffer
  readonly offsets: Uint32Array
  readonly lengths: Uint32Array
  readonly addrs: Uint8Array
  readonly #scratchAddr = new Uint8Array(ADDR_BYTES)

  private constructor(native: NativeBinding, handle: NativeHandle, info: UdpInfo, opts: UdpBindOptions, batchSize: number, slotSize: number) {
    super(native, handle, `UDP socket ${info.address}:${info.port}`, 'udp')
    this.localAddress = info.address
    this.localPort = info.port
    this.family = info.family
    this.batchSize = batchSize
    this.slotSize = slotSize
    const entries = info.gro ? batchSize * GRO_SEGMENTS : batchSize
    this.buffer = opts.buffer ?? Buffer.alloc(batchSize * slotSize)
    this.offsets = opts.offsets ?? new Uint32Array(entries)
    this.lengths = opts.lengths ?? new Uint32Array(entries)
    this.addrs = opts.addrs ?? new Uint8Array(entries * ADDR_BYTES)
  }

  /**
   * Creates the socket and binds it. Reading starts with onDatagrams(). (`override`: a class's
   * static `bind` shadows Function.prototype.bind, which TypeScript sees through the base class.)
   */
  static override bind(opts: UdpBindOptions): UdpSocket {
    const native = nativeBinding()
    if (typeof opts?.address !== 'string') throw new InvalidArgumentError('bind needs an address (e.g. 0.0.0.0 or ::)')
    const port = opts.port ?? 0
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new InvalidArgumentError(`port must be an integer in 0..65535, not ${port}`)
    const batchSize = opts.batchSize ?? DEFAULT_UDP_BATCH_SIZE
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > native.constants.MAX_BATCH) {
      throw new InvalidArgumentError(`batchSize must be an integer in 1..${native.constants.MAX_BATCH}, not ${batchSize}`)
    }
    const slotSize = opts.slotSize ?? DEFAULT_UDP_SLOT_SIZE
    if (!Number.isInteger(slotSize) || slotSize < 64 || slotSize > 65536) throw new InvalidArgumentError(`slotSize must be an integer in 64..65536, not ${slotSize}`)
    if (opts.buffer && opts.buffer.length < batchSize * slotSize) {
      throw new InvalidArgumentError(`buffer holds ${opts.buffer.length} bytes, batchSize * slotSize needs ${batchSize * slotSize}`)
    }
    for (const key of ['receiveBufferSize', 'sendBufferSize', 'fwmark'] as const) {
      const v = opts[key]
      if (v !== undefined && (!Number.isInteger(v) || v < 0 || v > 0xffffffff)) throw new InvalidArgumentError(`${key} must be a non-negative integer, not ${v}`)
    }
    const flags = {
      receiveBufferSize: opts.receiveBufferSize,
      sendBufferSize: opts.sendBufferSize,
      ipv6Only: opts.ipv6Only,
      fwmark: opts.fwmark,
      gso: opts.gso,
      gro: opts.gro,
      recvErr: opts.recvErr,
    }
    const handle = callNative((n) => n.udpOpen(opts.address, port, flags))
    try {
      const info = native.udpInfo(handle)
      return new UdpSocket(native, handle, info, opts, batchSize, slotSize)
    } catch (err) {
      native.close(handle)
      throw err
    }
  }

  /** What the kernel granted: buffer sizes, and whether GSO/GRO are in use (GSO turns itself off if the route cannot do it). */
  info(): UdpInfo {
    this.assertOpen()
    return this.native.udpInfo(this.handle)
  }

  /**
   * Starts delivering datagrams to `handler` (replacing any previous one); null stops reading.
   * While reading, the socket keeps the event loop alive unless unref() was called.
   */
  onDatagrams(handler: DatagramBatchHandler | null): void {
    const { buffer, offsets, lengths, addrs } = this
    this.read(handler && ((n) => handler(buffer, offsets, lengths, addrs, n)), 'recvmmsg', { buffer, lengths, offsets, addrs, batchSize: this.batchSize, slotSize: this.slotSize })
  }

  /**
   * Sends `buf[offset, offset + length)` to address record `index` of `addrs`. False when the
   * socket buffer is full or the send failed (counted in stats()).
   */
  send(buf: Uint8Array, offset: number, length: number, addrs: Uint8Array, index = 0): boolean {
    if (this.closed) return false
    return this.native.udpSend(this.handle, buf, offset, length, addrs, index) === 1
  }

  /** send() to an address given as text; parses it each call, so not for the per-packet path. */
  sendTo(buf: Uint8Array, address: string, port: number): boolean {
    encodeAddr(this.#scratchAddr, 0, address, port)
    return this.send(buf, 0, buf.length, this.#scratchAddr, 0)
  }

  /**
   * Sends `count` datagrams with sendmmsg (and GSO when enabled): datagram i is
   * `buf[offsets[i], offsets[i] + lengths[i])` to record i of `addrs`, or to record 0 for all
   * when `addrs` holds exactly one record. Returns how many were processed: `count` unless the
   * socket buffer filled up, then the index of the first one not sent (retry or drop the rest).
   * Datagrams that failed otherwise count as processed and show up in stats().txErrors.
   */
  sendBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number): number {
    if (this.closed) return 0
    return this.native.udpSendBatch(this.handle, buf, offsets, lengths, addrs, count)
  }
}
