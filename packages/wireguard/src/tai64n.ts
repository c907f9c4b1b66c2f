/**
 * TAI64N timestamps (12 bytes: big-endian seconds since 1970 plus 2^62 + 10, then big-endian
 * nanoseconds), which an initiation carries so the responder can refuse replayed initiations.
 *
 * Only their order matters to the protocol, so the leap-second offset is the fixed 10 that every
 * WireGuard implementation uses. The nanoseconds are rounded down to a multiple of 2^24 (about
 * 16.8 ms), as wireguard-go and Linux do, so that the timestamp does not give away the sender's
 * exact clock; the flood limit (one initiation per 20 ms) is coarser than that anyway.
 */
import { TIMESTAMP_SIZE } from './constants.js'

const TAI64_BASE_HI = 0x40000000 // 2^62 in the upper 32 bits of the seconds field
const TAI64_BASE_LO = 10
const WHITENER_MASK = 0xffffff

/** Writes the TAI64N of a Unix time in milliseconds (whitened unless `whiten` is false). */
export function tai64nFromUnixMs(ms: number, out: Uint8Array = Buffer.alloc(TIMESTAMP_SIZE), offset = 0, whiten = true): Uint8Array {
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`cannot express time ${ms} as TAI64N`)
  const seconds = Math.floor(ms / 1000)
  let nanos = Math.floor((ms - seconds * 1000) * 1e6)
  if (whiten) nanos = (nanos & ~WHITENER_MASK) >>> 0
  const lo = seconds % 0x100000000
  const sumLo = lo + TAI64_BASE_LO
  const carry = sumLo >= 0x100000000 ? 1 : 0
  const hi = TAI64_BASE_HI + Math.floor(seconds / 0x100000000) + carry
  const view = new DataView(out.buffer, out.byteOffset + offset, TIMESTAMP_SIZE)
  view.setUint32(0, hi >>> 0)
  view.setUint32(4, sumLo >>> 0)
  view.setUint32(8, nanos)
  return out
}

/** The current wall-clock time as TAI64N. */
export function tai64nNow(): Uint8Array {
  return tai64nFromUnixMs(Date.now())
}

/** The Unix time in milliseconds a TAI64N stands for. */
export function tai64nToUnixMs(t: Uint8Array, offset = 0): number {
  const view = new DataView(t.buffer, t.byteOffset + offset, TIMESTAMP_SIZE)
  const seconds = (view.getUint32(0) - TAI64_BASE_HI) * 0x100000000 + view.getUint32(4) - TAI64_BASE_LO
  return seconds * 1000 + Math.floor(view.getUint32(8) / 1e6)
}

/** -1, 0 or 1 as `a` is before, equal to or after `b` (big-endian byte order is time order). */
export function tai64nCompare(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < TIMESTAMP_SIZE; i++) {
    const d = a[i]! - b[i]!
    if (d !== 0) return d < 0 ? -1 : 1
  }
  return 0
}

/** True when `a` is strictly later than `b`. */
export function tai64nAfter(a: Uint8Array, b: Uint8Array): boolean {
  return tai64nCompare(a, b) > 0
}
