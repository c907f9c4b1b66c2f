/**
 * The four WireGuard messages (whitepaper §5.4). All integers are little-endian; the type is one
 * byte followed by three zero bytes, so implementations read the first four bytes as one
 * little-endian word and a message with non-zero reserved bytes is of no known type.
 *
 * Handshake initiation, type 1, 148 bytes:
 *
 *    0               1               2               3
 *   +---------------+---------------+---------------+---------------+
 *   | type = 1      |            reserved = 0 0 0                   |    0
 *   +---------------+---------------+---------------+---------------+
 *   |                         sender index                          |    4
 *   +---------------------------------------------------------------+
 *   |                  unencrypted ephemeral (32)                   |    8
 *   +---------------------------------------------------------------+
 *   |            encrypted static (32 + 16 tag = 48)                |   40
 *   +---------------------------------------------------------------+
 *   |           encrypted timestamp (12 + 16 tag = 28)              |   88
 *   +---------------------------------------------------------------+
 *   |                           mac1 (16)                           |  116
 *   +---------------------------------------------------------------+
 *   |                           mac2 (16)                           |  132
 *   +---------------------------------------------------------------+  148
 *
 * Handshake response, type 2, 92 bytes:
 *
 *   +---------------+-----------------------------------------------+
 *   | type = 2      |            reserved = 0 0 0                   |    0
 *   +---------------------------------------------------------------+
 *   |                         sender index                          |    4
 *   +---------------------------------------------------------------+
 *   |                        receiver index                         |    8
 *   +---------------------------------------------------------------+
 *   |                  unencrypted ephemeral (32)                   |   12
 *   +---------------------------------------------------------------+
 *   |               encrypted nothing (0 + 16 tag = 16)             |   44
 *   +---------------------------------------------------------------+
 *   |                           mac1 (16)                           |   60
 *   +---------------------------------------------------------------+
 *   |                           mac2 (16)                           |   76
 *   +---------------------------------------------------------------+   92
 *
 * Cookie reply, type 3, 64 bytes:
 *
 *   +---------------+-----------------------------------------------+
 *   | type = 3      |            reserved = 0 0 0                   |    0
 *   +---------------------------------------------------------------+
 *   |                        receiver index                         |    4
 *   +---------------------------------------------------------------+
 *   |                          nonce (24)                           |    8
 *   +---------------------------------------------------------------+
 *   |              encrypted cookie (16 + 16 tag = 32)              |   32
 *   +---------------------------------------------------------------+   64
 *
 * Transport data, type 4, 16-byte header then 16 * n + 16 bytes:
 *
 *   +---------------+-----------------------------------------------+
 *   | type = 4      |            reserved = 0 0 0                   |    0
 *   +---------------------------------------------------------------+
 *   |                        receiver index                         |    4
 *   +---------------------------------------------------------------+
 *   |                    counter (64-bit, LE)                       |    8
 *   +---------------------------------------------------------------+
 *   |     encrypted packet, zero-padded to a multiple of 16,        |   16
 *   |     then the 16-byte tag (a keepalive is the tag alone)       |
 *   +---------------------------------------------------------------+
 *
 * Handshake messages decode into views of the caller's buffer (no copy); the transport header
 * is read and written in place, with no allocation, because it is on the data path.
 */
import {
  AEAD_TAG_SIZE,
  COOKIE_NONCE_SIZE,
  KEY_SIZE,
  MAC_SIZE,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_COOKIE_REPLY_TYPE,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_INITIATION_TYPE,
  MESSAGE_RESPONSE_SIZE,
  MESSAGE_RESPONSE_TYPE,
  MESSAGE_TRANSPORT_HEADER_SIZE,
  MESSAGE_TRANSPORT_MIN_SIZE,
  MESSAGE_TRANSPORT_TYPE,
  PADDING_MULTIPLE,
  TIMESTAMP_SIZE,
} from './constants.js'

/** Byte offsets of the fields of each message. */
export const INITIATION_OFFSET = { type: 0, sender: 4, ephemeral: 8, static: 40, timestamp: 88, mac1: 116, mac2: 132 } as const
export const RESPONSE_OFFSET = { type: 0, sender: 4, receiver: 8, ephemeral: 12, empty: 44, mac1: 60, mac2: 76 } as const
export const COOKIE_REPLY_OFFSET = { type: 0, receiver: 4, nonce: 8, cookie: 32 } as const
export const TRANSPORT_OFFSET = { type: 0, receiver: 4, counter: 8, content: 16 } as const

export const ENCRYPTED_STATIC_SIZE = KEY_SIZE + AEAD_TAG_SIZE
export const ENCRYPTED_TIMESTAMP_SIZE = TIMESTAMP_SIZE + AEAD_TAG_SIZE
export const ENCRYPTED_NOTHING_SIZE = AEAD_TAG_SIZE
export const ENCRYPTED_COOKIE_SIZE = MAC_SIZE + AEAD_TAG_SIZE

export interface MessageInitiation {
  readonly sender: number
  readonly ephemeral: Uint8Array
  readonly encryptedStatic: Uint8Array
  readonly encryptedTimestamp: Uint8Array
  readonly mac1: Uint8Array
  readonly mac2: Uint8Array
}

export interface MessageResponse {
  readonly sender: number
  readonly receiver: number
  readonly ephemeral: Uint8Array
  readonly encryptedNothing: Uint8Array
  readonly mac1: Uint8Array
  readonly mac2: Uint8Array
}

export interface MessageCookieReply {
  readonly receiver: number
  readonly nonce: Uint8Array
  readonly encryptedCookie: Uint8Array
}

function readU32(buf: Uint8Array, off: number): number {
  return (buf[off]! | (buf[off + 1]! << 8) | (buf[off + 2]! << 16) | (buf[off + 3]! << 24)) >>> 0
}

function writeU32(buf: Uint8Array, off: number, value: number): void {
  buf[off] = value & 0xff
  buf[off + 1] = (value >>> 8) & 0xff
  buf[off + 2] = (value >>> 16) & 0xff
  buf[off + 3] = (value >>> 24) & 0xff
}

function put(out: Uint8Array, at: number, field: Uint8Array, size: number, name: string): void {
  if (field.length !== size) throw new RangeError(`${name} must be ${size} bytes, got ${field.length}`)
  out.set(field, at)
}

function checkRoom(out: Uint8Array, offset: number, size: number): void {
  if (offset < 0 || offset + size > out.length) throw new RangeError(`a ${size}-byte message does not fit at offset ${offset} of a ${out.length}-byte buffer`)
}

/**
 * The type of the message in `buf[offset, offset + length)`, or 0 when it is not a well-formed
 * WireGuard message: unknown type, reserved bytes set, or a length that type cannot have.
 */
export function messageType(buf: Uint8Array, offset = 0, length = buf.length - offset): number {
  if (length < 4) return 0
  const type = readU32(buf, offset)
  switch (type) {
    case MESSAGE_INITIATION_TYPE:
      return length === MESSAGE_INITIATION_SIZE ? type : 0
    case MESSAGE_RESPONSE_TYPE:
      return length === MESSAGE_RESPONSE_SIZE ? type : 0
    case MESSAGE_COOKIE_REPLY_TYPE:
      return length === MESSAGE_COOKIE_REPLY_SIZE ? type : 0
    case MESSAGE_TRANSPORT_TYPE:
      return length >= MESSAGE_TRANSPORT_MIN_SIZE ? type : 0
    default:
      return 0
  }
}

export function encodeInitiation(m: MessageInitiation, out: Uint8Array = Buffer.alloc(MESSAGE_INITIATION_SIZE), offset = 0): Uint8Array {
  checkRoom(out, offset, MESSAGE_INITIATION_SIZE)
  const o = INITIATION_OFFSET
  writeU32(out, offset + o.type, MESSAGE_INITIATION_TYPE)
  writeU32(out, offset + o.sender, m.sender)
  put(out, offset + o.ephemeral, m.ephemeral, KEY_SIZE, 'ephemeral')
  put(out, offset + o.static, m.encryptedStatic, ENCRYPTED_STATIC_SIZE, 'encrypted static')
  put(out, offset + o.timestamp, m.encryptedTimestamp, ENCRYPTED_TIMESTAMP_SIZE, 'encrypted timestamp')
  put(out, offset + o.mac1, m.mac1, MAC_SIZE, 'mac1')
  put(out, offset + o.mac2, m.mac2, MAC_SIZE, 'mac2')
  return out
}

/** Views into `buf`; null unless it holds exactly one initiation. */
export function decodeInitiation(buf: Uint8Array, offset = 0, length = buf.length - offset): MessageInitiation | null {
  if (messageType(buf, offset, length) !== MESSAGE_INITIATION_TYPE) return null
  const o = INITIATION_OFFSET
  const at = (from: number, size: number): Uint8Array => buf.subarray(offset + from, offset + from + size)
  return {
    sender: readU32(buf, offset + o.sender),
    ephemeral: at(o.ephemeral, KEY_SIZE),
    encryptedStatic: at(o.static, ENCRYPTED_STATIC_SIZE),
    encryptedTimestamp: at(o.timestamp, ENCRYPTED_TIMESTAMP_SIZE),
    mac1: at(o.mac1, MAC_SIZE),
    mac2: at(o.mac2, MAC_SIZE),
  }
}

export function encodeResponse(m: MessageResponse, out: Uint8Array = Buffer.alloc(MESSAGE_RESPONSE_SIZE), offset = 0): Uint8Array {
  checkRoom(out, offset, MESSAGE_RESPONSE_SIZE)
  const o = RESPONSE_OFFSET
  writeU32(out, offset + o.type, MESSAGE_RESPONSE_TYPE)
  writeU32(out, offset + o.sender, m.sender)
  writeU32(out, offset + o.receiver, m.receiver)
  put(out, offset + o.ephemeral, m.ephemeral, KEY_SIZE, 'ephemeral')
  put(out, offset + o.empty, m.encryptedNothing, ENCRYPTED_NOTHING_SIZE, 'encrypted nothing')
  put(out, offset + o.mac1, m.mac1, MAC_SIZE, 'mac1')
  put(out, offset + o.mac2, m.mac2, MAC_SIZE, 'mac2')
  return out
}

export function decodeResponse(buf: Uint8Array, offset = 0, length = buf.length - offset): MessageResponse | null {
  if (messageType(buf, offset, length) !== MESSAGE_RESPONSE_TYPE) return null
  const o = RESPONSE_OFFSET
  const at = (from: number, size: number): Uint8Array => buf.subarray(offset + from, offset + from + size)
  return {
    sender: readU32(buf, offset + o.sender),
    receiver: readU32(buf, offset + o.receiver),
    ephemeral: at(o.ephemeral, KEY_SIZE),
    encryptedNothing: at(o.empty, ENCRYPTED_NOTHING_SIZE),
    mac1: at(o.mac1, MAC_SIZE),
    mac2: at(o.mac2, MAC_SIZE),
  }
}

export function encodeCookieReply(m: MessageCookieReply, out: Uint8Array = Buffer.alloc(MESSAGE_COOKIE_REPLY_SIZE), offset = 0): Uint8Array {
  checkRoom(out, offset, MESSAGE_COOKIE_REPLY_SIZE)
  const o = COOKIE_REPLY_OFFSET
  writeU32(out, offset + o.type, MESSAGE_COOKIE_REPLY_TYPE)
  writeU32(out, offset + o.receiver, m.receiver)
  put(out, offset + o.nonce, m.nonce, COOKIE_NONCE_SIZE, 'nonce')
  put(out, offset + o.cookie, m.encryptedCookie, ENCRYPTED_COOKIE_SIZE, 'encrypted cookie')
  return out
}

export function decodeCookieReply(buf: Uint8Array, offset = 0, length = buf.length - offset): MessageCookieReply | null {
  if (messageType(buf, offset, length) !== MESSAGE_COOKIE_REPLY_TYPE) return null
  const o = COOKIE_REPLY_OFFSET
  return {
    receiver: readU32(buf, offset + o.receiver),
    nonce: buf.subarray(offset + o.nonce, offset + o.nonce + COOKIE_NONCE_SIZE),
    encryptedCookie: buf.subarray(offset + o.cookie, offset + o.cookie + ENCRYPTED_COOKIE_SIZE),
  }
}

// ---------------------------------------------------------------------------------------------
// Transport header, in place

/** Writes type 4, the receiver index and the counter (as two 32-bit halves) at `offset`. */
export function writeTransportHeader(buf: Uint8Array, offset: number, receiver: number, counterLo: number, counterHi: number): void {
  buf[offset] = MESSAGE_TRANSPORT_TYPE
  buf[offset + 1] = 0
  buf[offset + 2] = 0
  buf[offset + 3] = 0
  writeU32(buf, offset + TRANSPORT_OFFSET.receiver, receiver)
  writeU32(buf, offset + TRANSPORT_OFFSET.counter, counterLo)
  writeU32(buf, offset + TRANSPORT_OFFSET.counter + 4, counterHi)
}

/** The receiver index of a transport message (a cookie reply keeps it at the same offset). */
export function readTransportReceiver(buf: Uint8Array, offset = 0): number {
  return readU32(buf, offset + TRANSPORT_OFFSET.receiver)
}

export function readTransportCounterLo(buf: Uint8Array, offset = 0): number {
  return readU32(buf, offset + TRANSPORT_OFFSET.counter)
}

export function readTransportCounterHi(buf: Uint8Array, offset = 0): number {
  return readU32(buf, offset + TRANSPORT_OFFSET.counter + 4)
}

/** The counter as a bigint: for logs and tests, not the data path. */
export function readTransportCounter(buf: Uint8Array, offset = 0): bigint {
  return (BigInt(readTransportCounterHi(buf, offset)) << 32n) | BigInt(readTransportCounterLo(buf, offset))
}

/**
 * Zero bytes to append to an IP packet of `packetSize` bytes before encryption: up to the next
 * multiple of 16, but never past the MTU (mtu 0 means no limit), as other implementations pad.
 */
export function transportPaddingSize(packetSize: number, mtu: number): number {
  const round = (n: number): number => Math.ceil(n / PADDING_MULTIPLE) * PADDING_MULTIPLE
  if (mtu === 0) return round(packetSize) - packetSize
  let last = packetSize
  if (last > mtu) last %= mtu
  return Math.min(round(last), mtu) - last
}

/** Size of a transport message carrying `plaintextSize` bytes (already padded). */
export function transportMessageSize(plaintextSize: number): number {
  return MESSAGE_TRANSPORT_HEADER_SIZE + plaintextSize + AEAD_TAG_SIZE
}
