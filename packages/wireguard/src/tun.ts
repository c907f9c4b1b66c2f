/**
 * A TUN device (IFF_TUN | IFF_NO_PI: every read and write is one bare IP packet) read in
 * batches: each readiness wakeup drains up to `batchSize` packets into fixed slots of one
 * buffer, packet i at `i * slotSize` with its length in `lengths[i]`, then calls the handler
 * once. See native.ts for who owns the buffers.
 */
import { execFile } from 'node:child_process'
import { InvalidArgumentError, parseCidr } from '@flatnet/core'
import { callNative, DataPlaneIoError, nativeBinding, type NativeBinding, type NativeHandle } from './native.js'
import { NativeDevice } from './native-device.js'

/** Called once per batch; `count` packets are in `buffer`, packet i at `i * slotSize`. */
export type PacketBatchHandler = (buffer: Buffer, lengths: Uint32Array, count: number) => void

export interface TunOpenOptions {
  /**
   * Interface name (at most 15 bytes). Opened if a TUN device of that name exists, created
   * otherwise; absent or empty lets the kernel choose (tun0, ...), and `%d` is a template.
   */
  readonly name?: string | undefined
  /** MTU set at once (by ioctl); also sizes the default slot. */
  readonly mtu?: number | undefined
  /** IFF_MULTI_QUEUE: several TunDevice objects may open the same name, one queue each. */
  readonly multiQueue?: boolean | undefined
  /** IFF_VNET_HDR: every packet is preceded by a 10-byte virtio_net_hdr (for offloads). */
  readonly vnetHdr?: boolean | undefined
  /**
   * TSO and checksum offload, with the virtio_net_hdr kept out of sight: the kernel hands over TCP
   * super-packets of up to 64 KiB, which the addon splits into MTU-sized packets (full
   * checksums) before the handler sees them, so reads cost one syscall per super-packet, not per
   * packet; writeBatch coalesces runs of segments of one TCP flow into one GSO write, so the
   * kernel runs TCP once per run. Packets look as without offloads on both reads and writes.
   * Not with `vnetHdr`; the open fails (DataPlaneIoError) where the kernel or the addon cannot
   * do it.
   */
  readonly offloads?: boolean | undefined
  /** Packets drained per wakeup and per handler call (default 64). */
  readonly batchSize?: number | undefined
  /** Bytes per packet slot; must hold the MTU (plus 10 with vnetHdr). */
  readonly slotSize?: number | undefined
  /** Receive buffer to use instead of a new one; at least batchSize * slotSize bytes. */
  readonly buffer?: Buffer | undefined
  /** Lengths array to use instead of a new one; at least batchSize entries. */
  readonly lengths?: Uint32Array | undefined
}

export interface TunConfigureOptions {
  /** Addresses with prefix, e.g. `10.8.0.1/24` or `fd00::1/64`; added (or kept) on the interface. */
  readonly addresses?: readonly string[] | undefined
  readonly mtu?: number | undefined
  /** Default true. */
  readonly up?: boolean | undefined
  /** Run `ip` in this network namespace (where the interface now lives). */
  readonly netns?: string | undefined
  /** Path of the `ip` binary (default `ip` from PATH). */
  readonly ipPath?: string | undefined
  readonly timeoutMs?: number | undefined
}

const DEFAULT_BATCH_SIZE = 64

/** TUNSETOFFLOAD flags (linux/if_tun.h), for TunDevice.setOffload. */
export const TUN_OFFLOAD = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08, USO4: 0x20, USO6: 0x40 } as const
const VNET_HDR_LEN = 10
const MIN_MTU = 68
const MAX_MTU = 65535

function checkMtu(mtu: number | undefined): void {
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU)) {
    throw new InvalidArgumentError(`mtu must be an integer in ${MIN_MTU}..${MAX_MTU}, not ${mtu}`)
  }
}

function checkBatch(batch: number, max: number): void {
  if (!Number.isInteger(batch) || batch < 1 || batch > max) throw new InvalidArgumentError(`batchSize must be an integer in 1..${max}, not ${batch}`)
}

function runIp(ipPath: string, args: readonly string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(ipPath, args, { timeout: timeoutMs }, (err, _stdout, stderr) => {
      if (!err) return resolve()
      const detail = String(stderr).trim() || err.message
      const code = (err as NodeJS.ErrnoException).code
      const sys = typeof code === 'string' ? code : 'EIO'
      reject(new DataPlaneIoError(`${ipPath} ${args.join(' ')}: ${detail}`, sys, 0, 'exec'))
    })
  })
}

export class TunDevice extends NativeDevice {
  /** The name the kernel gave the interface. */
  readonly name: string
  readonly batchSize: number
  readonly slotSize: number
  readonly vnetHdr: boolean
  /** TSO offloads are on (see TunOpenOptions.offloads). */
  readonly offloads: boolean
  readonly multiQueue: boolean
  /** The receive buffer handed to every handler call. */
  readonly buffer: Buffer
  readonly lengths: Uint32Array
  private constructor(native: NativeBinding, handle: NativeHandle, name: string, opts: TunOpenOptions, batchSize: number, slotSize: number) {
    super(native, handle, `TUN device ${name}`, 'tun')
    this.name = name
    this.batchSize = batchSize
    this.slotSize = slotSize
    this.vnetHdr = opts.vnetHdr ?? false
    this.offloads = opts.offloads ?? false
    this.multiQueue = opts.multiQueue ?? false
    this.buffer = opts.buffer ?? Buffer.alloc(batchSize * slotSize)
    this.lengths = opts.lengths ?? new Uint32Array(batchSize)
  }

  /** Opens (creating if missing) a TUN device. Needs CAP_NET_ADMIN. */
  static open(opts: TunOpenOptions = {}): TunDevice {
    const native = nativeBinding()
    checkMtu(opts.mtu)
    const batchSize = opts.batchSize ?? DEFAULT_BATCH_SIZE
    checkBatch(batchSize, native.constants.MAX_BATCH)
    if (opts.offloads && opts.vnetHdr) throw new InvalidArgumentError('offloads keep the virtio_net_hdr to themselves: do not ask for vnetHdr too')
    const enableOffloads = native.tunEnableOffloads
    if (opts.offloads && !enableOffloads) throw new DataPlaneIoError('the flatnet data-plane addon has no TUN offloads: run npm run setup to rebuild it', 'ENOTSUP', 95, 'tun')
    const headroom = opts.vnetHdr ? VNET_HDR_LEN : 0
    // With offloads the kernel hands over super-packets up to 64 KiB whatever the MTU.
    const defaultSlot = opts.vnetHdr ? MAX_MTU + headroom : Math.ceil(Math.max(opts.mtu ?? 1500, 1500) / 64) * 64
    const slotSize = opts.slotSize ?? defaultSlot
    if (!Number.isInteger(slotSize) || slotSize < MIN_MTU + headroom || slotSize > MAX_MTU + headroom + 64) {
      throw new InvalidArgumentError(`slotSize must be an integer in ${MIN_MTU + headroom}..${MAX_MTU + headroom + 64}, not ${slotSize}`)
    }
    if (opts.mtu !== undefined && opts.mtu + headroom > slotSize) {
      throw new InvalidArgumentError(`mtu ${opts.mtu} does not fit a slot of ${slotSize} bytes`)
    }
    if (opts.buffer && opts.buffer.length < batchSize * slotSize) {
      throw new InvalidArgumentError(`buffer holds ${opts.buffer.length} bytes, batchSize * slotSize needs ${batchSize * slotSize}`)
    }
    if (opts.lengths && opts.lengths.length < batchSize) {
      throw new InvalidArgumentError(`lengths holds ${opts.lengths.length} entries, batchSize needs ${batchSize}`)
    }
    const opened = callNative((n) => n.tunOpen(opts.name ?? '', opts.multiQueue ?? false, (opts.vnetHdr ?? false) || (opts.offloads ?? false)))
    const dev = new TunDevice(native, opened.handle, opened.name, opts, batchSize, slotSize)
    try {
      if (opts.offloads) callNative(() => enableOffloads?.(opened.handle))
      if (opts.mtu !== undefined) dev.setLink({ mtu: opts.mtu })
    } catch (err) {
      dev.close()
      throw err
    }
    return dev
  }

  /**
   * Starts delivering packets to `handler` (replacing any previous one); null stops reading.
   * While reading, the device keeps the event loop alive unless unref() was called.
   */
  onPackets(handler: PacketBatchHandler | null): void {
    const { buffer, lengths } = this
    this.read(handler && ((n) => handler(buffer, lengths, n)), 'read', { buffer, lengths, offsets: null, addrs: null, batchSize: this.batchSize, slotSize: this.slotSize })
  }

  /** Writes one packet. False when the device would block or the write failed (see stats()). */
  write(buf: Uint8Array, offset = 0, length = buf.length - offset): boolean {
    if (this.closed) return false
    return this.native.tunWrite(this.handle, buf, offset, length) === 1
  }

  /**
   * Writes `count` packets, packet i being `buf[offsets[i], offsets[i] + lengths[i])`. Returns how
   * many were processed: `count` unless the device would block; failed packets count as
   * processed and show up in stats().txErrors.
   */
  writeBatch(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    if (this.closed) return 0
    return this.native.tunWriteBatch(this.handle, buf, offsets, lengths, count)
  }

  /** Sets MTU and/or up/down by ioctl, in the namespace this process runs in. */
  setLink(opts: { mtu?: number | undefined; up?: boolean | undefined }): void {
    checkMtu(opts.mtu)
    if (opts.mtu !== undefined && opts.mtu + (this.vnetHdr ? VNET_HDR_LEN : 0) > this.slotSize) {
      throw new InvalidArgumentError(`mtu ${opts.mtu} does not fit this device's ${this.slotSize}-byte slots`)
    }
    callNative((n) => n.linkSet(this.name, opts.mtu, opts.up))
  }

  /** TUNSETOFFLOAD with TUN_F_* flags (TUN_OFFLOAD); needs a device opened with vnetHdr. */
  setOffload(flags: number): void {
    this.assertOpen()
    callNative((n) => n.tunSetOffload(this.handle, flags))
  }

  /**
   * Brings the interface up with `ip`: MTU, up, and each address (`ip addr replace`, so running
   * it twice is harmless). `netns` names the namespace the interface was moved to.
   */
  async configure(opts: TunConfigureOptions = {}): Promise<void> {
    checkMtu(opts.mtu)
    if (opts.mtu !== undefined && opts.mtu + (this.vnetHdr ? VNET_HDR_LEN : 0) > this.slotSize) {
      throw new InvalidArgumentError(`mtu ${opts.mtu} does not fit this device's ${this.slotSize}-byte slots`)
    }
    for (const a of opts.addresses ?? []) {
      if (!parseCidr(a)) throw new InvalidArgumentError(`invalid interface address "${a}" (expected address/prefix)`)
    }
    const ip = opts.ipPath ?? 'ip'
    const timeout = opts.timeoutMs ?? 10_000
    const ns = opts.netns ? ['-n', opts.netns] : []
    const link = ['link', 'set', 'dev', this.name]
    if (opts.mtu !== undefined) link.push('mtu', String(opts.mtu))
    if (opts.up ?? true) link.push('up')
    if (link.length > 4) await runIp(ip, [...ns, ...link], timeout)
    for (const a of opts.addresses ?? []) await runIp(ip, [...ns, 'addr', 'replace', a, 'dev', this.name], timeout)
  }

}
