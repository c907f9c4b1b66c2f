/**
 * The data-plane addon (packages/wireguard/native): TUN devices and batched UDP through uv_poll
 * on the main loop. It is loaded on first use, so code that never opens a device (the protocol,
 * the CLI, the kernel backend) runs on machines where it was not built.
 *
 * Buffer ownership, for every reader in tun.ts and udp.ts: the receive buffer and its index
 * arrays belong to whoever opened the device and are handed to the addon once; the addon writes
 * into them on each wakeup and then calls the batch handler. A handler may read and even modify
 * the bytes in place, but must not keep a reference to them (or to a subarray) past its return:
 * the next batch overwrites them. Copy what has to outlive the call.
 */
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { FlatnetError, InvalidArgumentError } from '@flatnet/core'
import type { OpenBatch, SealBatch } from './transport-aead.js'

/** The addon could not be loaded: not built (run `npm run setup`), built for another Node, or stale. */
export class NativeAddonError extends FlatnetError {
  readonly code = 'ERR_NATIVE_ADDON'
}

/**
 * A system call of the data plane failed while setting up a TUN device or UDP socket, or a
 * reader stopped (e.g. its TUN interface was deleted). `sysCode` is the errno name (EPERM,
 * EADDRINUSE, ...); the message says what to do where there is something to do.
 */
export class DataPlaneIoError extends FlatnetError {
  readonly code = 'ERR_DATAPLANE_IO'
  constructor(
    message: string,
    readonly sysCode: string,
    readonly errno: number,
    readonly syscall: string,
  ) {
    super(message)
  }
}

/** Opaque reference to a native TUN device or UDP socket. */
export type NativeHandle = { readonly __nativeHandle: never }

/** Counters kept by the addon for one device or socket; drops are counted, never thrown. */
export interface DeviceStats {
  readonly rxPackets: number
  readonly rxBytes: number
  readonly rxBatches: number
  readonly rxErrors: number
  /** Datagrams larger than the receive slot (dropped). */
  readonly rxTruncated: number
  readonly txPackets: number
  readonly txBytes: number
  readonly txErrors: number
  /** Sends that found the socket or device buffer full (left to the caller). */
  readonly txWouldBlock: number
  /** Sends that carried a GSO train of more than one datagram. */
  readonly txGsoSends: number
  /** ICMP errors read from the error queue (sockets opened with recvErr). */
  readonly icmpErrors: number
  /** Pending socket errors (SO_ERROR) cleared so that reading could go on. */
  readonly socketErrors: number
  /** Times the poll handle was restarted after the kernel flagged an error on the socket. */
  readonly pollRestarts: number
  /** TUN with offloads: TSO super-packets read and split into packets. */
  readonly rxTsoPackets: number
  readonly lastRxErrno: number
  readonly lastTxErrno: number
  readonly lastIcmpErrno: number
}

export interface UdpInfo {
  readonly address: string
  readonly port: number
  readonly family: 4 | 6
  readonly gso: boolean
  readonly gro: boolean
  readonly recvErr: boolean
  readonly receiveBufferSize: number
  readonly sendBufferSize: number
}

export interface UdpOpenFlags {
  readonly receiveBufferSize?: number | undefined
  readonly sendBufferSize?: number | undefined
  readonly ipv6Only?: boolean | undefined
  readonly fwmark?: number | undefined
  readonly gso?: boolean | undefined
  readonly gro?: boolean | undefined
  readonly recvErr?: boolean | undefined
}

/** A reader's callback: n > 0 entries were written; n < 0 the reader stopped on errno -n. */
export type NativeReadCallback = (n: number) => void

export interface NativeBinding {
  tunOpen(name: string, multiQueue: boolean, vnetHdr: boolean): { handle: NativeHandle; name: string }
  tunSetOffload(h: NativeHandle, flags: number): void
  /** TSO and checksum offload with the virtio_net_hdr handled by the addon (see tun.ts, `offloads`). */
  tunEnableOffloads?(h: NativeHandle): void
  /** 1 written, 0 would block, -errno failed (counted). */
  tunWrite(h: NativeHandle, buf: Uint8Array, offset: number, length: number): number
  tunWriteBatch(h: NativeHandle, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number
  linkSet(name: string, mtu: number | undefined, up: boolean | undefined): void
  udpOpen(address: string, port: number, flags: UdpOpenFlags): NativeHandle
  udpSend(h: NativeHandle, buf: Uint8Array, offset: number, length: number, addrs: Uint8Array, index: number): number
  udpSendBatch(h: NativeHandle, buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, addrs: Uint8Array, count: number): number
  udpInfo(h: NativeHandle): UdpInfo
  startRead(
    h: NativeHandle,
    cb: NativeReadCallback,
    buf: Uint8Array,
    lengths: Uint32Array,
    offsets: Uint32Array | null,
    addrs: Uint8Array | null,
    batch: number,
    slotSize: number,
  ): void
  stopRead(h: NativeHandle): void
  setRef(h: NativeHandle, ref: boolean): void
  close(h: NativeHandle): void
  fd(h: NativeHandle): number
  stats(h: NativeHandle): DeviceStats
  /** Batched transport AEAD (see transport-aead.ts); absent when the addon was built without OpenSSL. */
  sealBatch?: SealBatch
  openBatch?: OpenBatch
  readonly constants: {
    readonly ADDR_BYTES: number
    readonly MAX_BATCH: number
    readonly TUN_F_CSUM: number
    readonly TUN_F_TSO4: number
    readonly TUN_F_TSO6: number
    readonly TUN_F_TSO_ECN: number
    readonly TUN_F_USO4: number
    readonly TUN_F_USO6: number
  }
}

/** Bytes per address record; see udp.ts for the layout. Checked against the addon at load. */
export const ADDR_BYTES = 24

/** Where the build step (scripts/setup.sh) puts the addon; FLATNET_NATIVE_ADDON overrides it. */
export const NATIVE_ADDON_PATH = fileURLToPath(new URL('../../native/build/Release/flatnet_native.node', import.meta.url))

let loaded: NativeBinding | undefined

/** The addon, loaded once. Throws NativeAddonError with the fix when it is missing. */
export function nativeBinding(): NativeBinding {
  if (loaded) return loaded
  const path = process.env.FLATNET_NATIVE_ADDON || NATIVE_ADDON_PATH
  if (process.platform !== 'linux') throw new NativeAddonError(`the flatnet data-plane addon needs Linux (this is ${process.platform})`)
  if (!existsSync(path)) {
    throw new NativeAddonError(`the flatnet data-plane addon is not built (${path} is missing): run npm run setup`)
  }
  let binding: NativeBinding
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding
  } catch (err) {
    throw new NativeAddonError(`the flatnet data-plane addon at ${path} failed to load (${(err as Error).message}): run npm run setup to rebuild it`)
  }
  if (binding.constants?.ADDR_BYTES !== ADDR_BYTES) {
    throw new NativeAddonError(`the flatnet data-plane addon at ${path} is stale: run npm run setup to rebuild it`)
  }
  loaded = binding
  return binding
}

interface SystemErrorLike {
  code?: unknown
  errno?: unknown
  syscall?: unknown
  message?: unknown
}

/** Turns an error thrown by the addon into the flatnet error for it; anything else is returned as is. */
export function translateNativeError(err: unknown): unknown {
  if (!(err instanceof Error)) return err
  const e = err as SystemErrorLike
  if (e.code === 'ERR_INVALID_ARGUMENT') return new InvalidArgumentError(err.message)
  if (typeof e.errno === 'number' && typeof e.syscall === 'string' && typeof e.code === 'string') {
    return new DataPlaneIoError(err.message, e.code, e.errno, e.syscall)
  }
  return err
}

/** Runs a set-up call into the addon, translating its errors. Not for the per-packet path. */
export function callNative<T>(fn: (binding: NativeBinding) => T): T {
  const binding = nativeBinding()
  try {
    return fn(binding)
  } catch (err) {
    throw translateNativeError(err)
  }
}

const ERRNO_NAMES: Record<number, string> = { 5: 'EIO', 9: 'EBADF', 77: 'EBADFD', 19: 'ENODEV', 22: 'EINVAL', 12: 'ENOMEM' }

/** The error a reader reports when it stops on errno `errno`. */
export function readerStoppedError(what: string, errno: number, syscall: string): DataPlaneIoError {
  const name = ERRNO_NAMES[errno] ?? `errno ${errno}`
  const why = errno === 77 || errno === 5 ? 'the interface was deleted or detached' : name
  return new DataPlaneIoError(`${what}: reading stopped: ${why}`, name, errno, syscall)
}
