/**
 * Transport messages sealed and opened a batch at a time. The per-message cost of node:crypto
 * (a new cipher object for every packet) is most of what a 1400-byte seal costs, so the data
 * path hands a whole batch to the addon, which reuses one OpenSSL context (Node's own OpenSSL)
 * for all of it. Where the addon lacks those calls (built without OpenSSL headers, or an older
 * build) the same layout is served by node:crypto one message at a time; both give the same bytes.
 *
 * Seal layout: message i is built in place at `buf[offsets[i]]`: a 16-byte gap for the header,
 * then lengths[i] plaintext bytes (padding included), then 16 free bytes for the tag. Counters
 * run upwards from the given one, one per message in order; the caller reserved them
 * (Keypair.reserveCounters), so no limit is checked here.
 *
 * Open layout: message i is the whole transport message `buf[offsets[i], offsets[i] + lengths[i])`,
 * opened with key keyIndex[i] of `keys` (32 bytes each; null: key 0 for all) and the counter in
 * its header. results[i] is the plaintext length, written at `out[outOffsets[i]]`, or -1 when it
 * does not authenticate. The replay window is not consulted: that is the caller's, after
 * authentication (Keypair.acceptCounter).
 */
import { AEAD_TAG_SIZE, KEY_SIZE, MESSAGE_TRANSPORT_HEADER_SIZE } from './constants.js'
import { aeadOpenWords, aeadSealWords } from './crypto.js'
import { readTransportCounterHi, readTransportCounterLo, writeTransportHeader } from './messages.js'
import { nativeBinding } from './native.js'

export type SealBatch = (
  key: Uint8Array,
  counterLo: number,
  counterHi: number,
  receiver: number,
  buf: Uint8Array,
  offsets: Uint32Array,
  lengths: Uint32Array,
  count: number,
) => number

export type OpenBatch = (
  keys: Uint8Array,
  keyIndex: Uint8Array | null,
  buf: Uint8Array,
  offsets: Uint32Array,
  lengths: Uint32Array,
  count: number,
  out: Uint8Array,
  outOffsets: Uint32Array,
  results: Int32Array,
) => number

export interface TransportAead {
  /** Returns the number of messages sealed (count). */
  readonly seal: SealBatch
  /** Returns the number of messages that authenticated. */
  readonly open: OpenBatch
  /** True when the addon does the work. */
  readonly native: boolean
}

/** node:crypto, one message at a time. */
export const sealBatchFallback: SealBatch = (key, counterLo, counterHi, receiver, buf, offsets, lengths, count) => {
  let lo = counterLo
  let hi = counterHi
  for (let i = 0; i < count; i++) {
    const at = offsets[i] as number
    writeTransportHeader(buf, at, receiver, lo, hi)
    const body = at + MESSAGE_TRANSPORT_HEADER_SIZE
    aeadSealWords(key, lo, hi, buf, body, lengths[i] as number, buf, body)
    if (lo === 0xffffffff) {
      lo = 0
      hi++
    } else {
      lo++
    }
  }
  return count
}

/** node:crypto, one message at a time. */
export const openBatchFallback: OpenBatch = (keys, keyIndex, buf, offsets, lengths, count, out, outOffsets, results) => {
  let ok = 0
  let keyed = -1
  let key = keys.subarray(0, KEY_SIZE)
  for (let i = 0; i < count; i++) {
    const at = offsets[i] as number
    const len = lengths[i] as number
    results[i] = -1
    if (len < MESSAGE_TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE) continue
    const k = keyIndex === null ? 0 : (keyIndex[i] as number)
    if (k !== keyed) {
      key = keys.subarray(k * KEY_SIZE, (k + 1) * KEY_SIZE)
      keyed = k
    }
    const n = aeadOpenWords(
      key,
      readTransportCounterLo(buf, at),
      readTransportCounterHi(buf, at),
      buf,
      at + MESSAGE_TRANSPORT_HEADER_SIZE,
      len - MESSAGE_TRANSPORT_HEADER_SIZE,
      out,
      outOffsets[i] as number,
    )
    results[i] = n
    if (n >= 0) ok++
  }
  return ok
}

const FALLBACK: TransportAead = Object.freeze({ seal: sealBatchFallback, open: openBatchFallback, native: false })
let chosen: TransportAead | undefined

/** The addon's batched AEAD when it has one, node:crypto otherwise; decided once. */
export function transportAead(): TransportAead {
  if (chosen) return chosen
  let binding: ReturnType<typeof nativeBinding> | undefined
  try {
    binding = nativeBinding()
  } catch {
    binding = undefined
  }
  const seal = binding?.sealBatch
  const open = binding?.openBatch
  chosen = seal && open ? Object.freeze({ seal, open, native: true }) : FALLBACK
  return chosen
}
