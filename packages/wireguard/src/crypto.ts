/**
 * The primitives WireGuard is built from (whitepaper §5.4): BLAKE2s HASH, keyed BLAKE2s-128 MAC,
 * HMAC-BLAKE2s, the HKDF-style KDF1/2/3, X25519, ChaCha20-Poly1305 with a 64-bit counter nonce,
 * and XChaCha20-Poly1305 for cookie replies.
 *
 * node:crypto (OpenSSL) does the heavy lifting where it can: unkeyed BLAKE2s-256, HMAC, X25519
 * and ChaCha20-Poly1305. It has no keyed BLAKE2s and no XChaCha20, so BLAKE2s (RFC 7693) and
 * HChaCha20 are written out here; both only run during handshakes.
 *
 * Failures on the data path return -1 or null rather than throwing: a forged packet is an
 * everyday event to be counted, not an exception.
 */
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  randomBytes,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto'
import { InvalidArgumentError } from '@flatnet/core'
import { AEAD_TAG_SIZE, KEY_SIZE, MAC_SIZE } from './constants.js'

// ---------------------------------------------------------------------------------------------
// BLAKE2s (RFC 7693)

const B2S_IV = new Uint32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
])

// Message word schedule, ten rounds of sixteen indices.
const B2S_SIGMA = new Uint8Array([
  0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
  14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3,
  11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4,
  7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8,
  9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13,
  2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9,
  12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11,
  13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10,
  6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5,
  10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0,
])

const B2S_BLOCK = 64

/** Incremental BLAKE2s with an optional key (up to 32 bytes) and output length 1..32. */
export class Blake2s {
  private readonly h = new Uint32Array(8)
  private readonly v = new Uint32Array(16)
  private readonly m = new Uint32Array(16)
  private readonly buf = new Uint8Array(B2S_BLOCK)
  private bufLen = 0
  // Bytes compressed so far; a double is exact far beyond anything hashed here.
  private counter = 0
  private finished = false

  constructor(
    readonly outLen: number = 32,
    key?: Uint8Array,
  ) {
    const keyLen = key?.length ?? 0
    if (!Number.isInteger(outLen) || outLen < 1 || outLen > 32) throw new RangeError(`BLAKE2s output length ${outLen} is not in 1..32`)
    if (keyLen > 32) throw new RangeError(`BLAKE2s key of ${keyLen} bytes is longer than 32`)
    this.h.set(B2S_IV)
    this.h[0]! ^= 0x01010000 ^ (keyLen << 8) ^ outLen
    if (key && keyLen > 0) {
      // The key, zero-padded, is the first block.
      this.buf.set(key)
      this.bufLen = B2S_BLOCK
    }
  }

  update(data: Uint8Array, offset = 0, length = data.length - offset): this {
    if (this.finished) throw new Error('BLAKE2s update after digest')
    let pos = offset
    const end = offset + length
    while (pos < end) {
      if (this.bufLen === B2S_BLOCK) {
        // The last block must be compressed with the final flag, so a full buffer waits until
        // more input proves it is not the last.
        this.counter += B2S_BLOCK
        this.compress(false)
        this.bufLen = 0
      }
      const take = Math.min(B2S_BLOCK - this.bufLen, end - pos)
      this.buf.set(data.subarray(pos, pos + take), this.bufLen)
      this.bufLen += take
      pos += take
    }
    return this
  }

  /** Writes the digest into `out` at `offset` (a new buffer when omitted) and returns `out`. */
  digest(out: Uint8Array = Buffer.alloc(this.outLen), offset = 0): Uint8Array {
    if (this.finished) throw new Error('BLAKE2s digest called twice')
    this.finished = true
    this.counter += this.bufLen
    this.buf.fill(0, this.bufLen)
    this.compress(true)
    for (let i = 0; i < this.outLen; i++) out[offset + i] = (this.h[i >>> 2]! >>> (8 * (i & 3))) & 0xff
    return out
  }

  private compress(last: boolean): void {
    const { h, v, m, buf } = this
    for (let i = 0; i < 16; i++) {
      const j = i * 4
      m[i] = buf[j]! | (buf[j + 1]! << 8) | (buf[j + 2]! << 16) | (buf[j + 3]! << 24)
    }
    for (let i = 0; i < 8; i++) {
      v[i] = h[i]!
      v[i + 8] = B2S_IV[i]!
    }
    v[12]! ^= this.counter >>> 0
    v[13]! ^= Math.floor(this.counter / 0x100000000) >>> 0
    if (last) v[14] = ~v[14]!
    for (let r = 0; r < 10; r++) {
      const s = r * 16
      g(v, m, 0, 4, 8, 12, B2S_SIGMA[s]!, B2S_SIGMA[s + 1]!)
      g(v, m, 1, 5, 9, 13, B2S_SIGMA[s + 2]!, B2S_SIGMA[s + 3]!)
      g(v, m, 2, 6, 10, 14, B2S_SIGMA[s + 4]!, B2S_SIGMA[s + 5]!)
      g(v, m, 3, 7, 11, 15, B2S_SIGMA[s + 6]!, B2S_SIGMA[s + 7]!)
      g(v, m, 0, 5, 10, 15, B2S_SIGMA[s + 8]!, B2S_SIGMA[s + 9]!)
      g(v, m, 1, 6, 11, 12, B2S_SIGMA[s + 10]!, B2S_SIGMA[s + 11]!)
      g(v, m, 2, 7, 8, 13, B2S_SIGMA[s + 12]!, B2S_SIGMA[s + 13]!)
      g(v, m, 3, 4, 9, 14, B2S_SIGMA[s + 14]!, B2S_SIGMA[s + 15]!)
    }
    for (let i = 0; i < 8; i++) h[i] = h[i]! ^ v[i]! ^ v[i + 8]!
  }
}

function g(v: Uint32Array, m: Uint32Array, a: number, b: number, c: number, d: number, x: number, y: number): void {
  let va = v[a]!
  let vb = v[b]!
  let vc = v[c]!
  let vd = v[d]!
  va = (va + vb + m[x]!) | 0
  vd ^= va
  vd = (vd >>> 16) | (vd << 16)
  vc = (vc + vd) | 0
  vb ^= vc
  vb = (vb >>> 12) | (vb << 20)
  va = (va + vb + m[y]!) | 0
  vd ^= va
  vd = (vd >>> 8) | (vd << 24)
  vc = (vc + vd) | 0
  vb ^= vc
  vb = (vb >>> 7) | (vb << 25)
  v[a] = va
  v[b] = vb
  v[c] = vc
  v[d] = vd
}

/** One-shot BLAKE2s of `data` with an optional key. */
export function blake2s(data: Uint8Array, outLen = 32, key?: Uint8Array): Buffer {
  return new Blake2s(outLen, key).update(data).digest() as Buffer
}

// ---------------------------------------------------------------------------------------------
// HASH, MAC, HMAC, KDF (whitepaper §5.4)

/** HASH(a || b || ...): unkeyed BLAKE2s-256. */
export function hash(...parts: Uint8Array[]): Buffer {
  const h = createHash('blake2s256')
  for (const p of parts) h.update(p)
  return h.digest()
}

/** MAC(key, a || b || ...): keyed BLAKE2s with a 16-byte output. */
export function mac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const m = new Blake2s(MAC_SIZE, key)
  for (const p of parts) m.update(p)
  return m.digest() as Buffer
}

/** MAC over `data[offset, offset + length)` written into `out` at `outOffset`. */
export function macInto(key: Uint8Array, data: Uint8Array, offset: number, length: number, out: Uint8Array, outOffset: number): void {
  new Blake2s(MAC_SIZE, key).update(data, offset, length).digest(out, outOffset)
}

/** HMAC(key, a || b || ...) with BLAKE2s-256 (block size 64). */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac('blake2s256', key)
  for (const p of parts) h.update(p)
  return h.digest()
}

const ONE = new Uint8Array([1])
const TWO = new Uint8Array([2])
const THREE = new Uint8Array([3])

export function kdf1(key: Uint8Array, input: Uint8Array): Buffer {
  const prk = hmac(key, input)
  return hmac(prk, ONE)
}

export function kdf2(key: Uint8Array, input: Uint8Array): [Buffer, Buffer] {
  const prk = hmac(key, input)
  const t0 = hmac(prk, ONE)
  const t1 = hmac(prk, t0, TWO)
  prk.fill(0)
  return [t0, t1]
}

export function kdf3(key: Uint8Array, input: Uint8Array): [Buffer, Buffer, Buffer] {
  const prk = hmac(key, input)
  const t0 = hmac(prk, ONE)
  const t1 = hmac(prk, t0, TWO)
  const t2 = hmac(prk, t1, THREE)
  prk.fill(0)
  return [t0, t1, t2]
}

// ---------------------------------------------------------------------------------------------
// X25519

// DER wrappers that let node:crypto import raw 32-byte X25519 keys (RFC 8410).
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
const SPKI_X25519_PREFIX = Buffer.from('302a300506032b656e032100', 'hex')

/** Clamps a private key in place the way WireGuard does when it generates one. */
export function clampPrivateKey(key: Uint8Array): Uint8Array {
  key[0]! &= 248
  key[31] = (key[31]! & 127) | 64
  return key
}

export function generatePrivateKey(): Buffer {
  return clampPrivateKey(randomBytes(KEY_SIZE)) as Buffer
}

export function x25519PrivateKeyObject(privateKey: Uint8Array): KeyObject {
  checkKeyLength(privateKey, 'private key')
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, privateKey]), format: 'der', type: 'pkcs8' })
}

export function x25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  checkKeyLength(publicKey, 'public key')
  return createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, publicKey]), format: 'der', type: 'spki' })
}

/** The X25519 public key of a private key (raw bytes or a key object from x25519PrivateKeyObject). */
export function publicKey(privateKey: Uint8Array | KeyObject): Buffer {
  const obj = privateKey instanceof Uint8Array ? x25519PrivateKeyObject(privateKey) : privateKey
  const der = createPublicKey(obj).export({ format: 'der', type: 'spki' })
  return Buffer.from(der.subarray(SPKI_X25519_PREFIX.length))
}

/**
 * X25519(private, public). Returns null when the result is all zeros, i.e. the public key is of
 * small order: WireGuard refuses such a handshake rather than derive keys from a known value.
 */
export function x25519(privateKey: Uint8Array | KeyObject, publicKey: Uint8Array | KeyObject): Buffer | null {
  let shared: Buffer
  try {
    shared = diffieHellman({
      privateKey: privateKey instanceof Uint8Array ? x25519PrivateKeyObject(privateKey) : privateKey,
      publicKey: publicKey instanceof Uint8Array ? x25519PublicKeyObject(publicKey) : publicKey,
    })
  } catch {
    // OpenSSL itself refuses an all-zero shared secret.
    return null
  }
  return isZero(shared) ? null : shared
}

// ---------------------------------------------------------------------------------------------
// ChaCha20-Poly1305 with WireGuard's nonce: 32 zero bits, then the 64-bit counter little-endian.

// One nonce buffer for every call: OpenSSL copies it when the cipher is created, and JS runs one
// call at a time, so sharing it saves an allocation per packet.
const NONCE = Buffer.alloc(12)

function setCounterNonce(lo: number, hi: number): void {
  NONCE.writeUInt32LE(lo >>> 0, 4)
  NONCE.writeUInt32LE(hi >>> 0, 8)
}

function splitCounter(counter: number | bigint): [number, number] {
  if (typeof counter === 'bigint') {
    if (counter < 0n || counter >= 1n << 64n) throw new RangeError(`AEAD counter ${counter} is out of range`)
    return [Number(counter & 0xffffffffn), Number(counter >> 32n)]
  }
  if (!Number.isSafeInteger(counter) || counter < 0) throw new RangeError(`AEAD counter ${counter} is not a safe non-negative integer`)
  const lo = counter % 0x100000000
  return [lo, (counter - lo) / 0x100000000]
}

function sealCurrentNonce(
  key: Uint8Array,
  src: Uint8Array,
  srcOffset: number,
  length: number,
  dst: Uint8Array,
  dstOffset: number,
  ad: Uint8Array | undefined,
  nonce: Buffer,
): number {
  const cipher = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_SIZE })
  if (ad && ad.length > 0) cipher.setAAD(ad, { plaintextLength: length })
  // node:crypto allocates the output; it is copied so that src and dst may be the same bytes.
  const body = cipher.update(src.subarray(srcOffset, srcOffset + length))
  cipher.final()
  dst.set(body, dstOffset)
  dst.set(cipher.getAuthTag(), dstOffset + length)
  return length + AEAD_TAG_SIZE
}

function openCurrentNonce(
  key: Uint8Array,
  src: Uint8Array,
  srcOffset: number,
  length: number,
  dst: Uint8Array,
  dstOffset: number,
  ad: Uint8Array | undefined,
  nonce: Buffer,
): number {
  const plainLength = length - AEAD_TAG_SIZE
  if (plainLength < 0) return -1
  const decipher = createDecipheriv('chacha20-poly1305', key, nonce, { authTagLength: AEAD_TAG_SIZE })
  decipher.setAuthTag(src.subarray(srcOffset + plainLength, srcOffset + length))
  if (ad && ad.length > 0) decipher.setAAD(ad, { plaintextLength: plainLength })
  const body = decipher.update(src.subarray(srcOffset, srcOffset + plainLength))
  try {
    decipher.final()
  } catch {
    return -1
  }
  // Copied only once authenticated: dst never holds unauthenticated plaintext.
  dst.set(body, dstOffset)
  return plainLength
}

/**
 * Encrypts `src[srcOffset, srcOffset + length)` under `key` and the counter nonce, writing
 * ciphertext and tag (length + 16 bytes) to `dst` at `dstOffset`. `dst` may be `src` (in place).
 * Returns the bytes written.
 */
export function aeadSeal(
  key: Uint8Array,
  counter: number | bigint,
  src: Uint8Array,
  srcOffset: number,
  length: number,
  dst: Uint8Array,
  dstOffset: number,
  ad?: Uint8Array,
): number {
  const [lo, hi] = splitCounter(counter)
  return aeadSealWords(key, lo, hi, src, srcOffset, length, dst, dstOffset, ad)
}

/** aeadSeal with the counter as two unsigned 32-bit halves, for the data path (no bigint). */
export function aeadSealWords(
  key: Uint8Array,
  counterLo: number,
  counterHi: number,
  src: Uint8Array,
  srcOffset: number,
  length: number,
  dst: Uint8Array,
  dstOffset: number,
  ad?: Uint8Array,
): number {
  setCounterNonce(counterLo, counterHi)
  return sealCurrentNonce(key, src, srcOffset, length, dst, dstOffset, ad, NONCE)
}

/**
 * Authenticates and decrypts `src[srcOffset, srcOffset + length)` (ciphertext then 16-byte tag),
 * writing the plaintext to `dst` at `dstOffset`. Returns the plaintext length, or -1 when the
 * message does not authenticate (then `dst` is untouched).
 */
export function aeadOpen(
  key: Uint8Array,
  counter: number | bigint,
  src: Uint8Array,
  srcOffset: number,
  length: number,
  dst: Uint8Array,
  dstOffset: number,
  ad?: Uint8Array,
): number {
  const [lo, hi] = splitCounter(counter)
  return aeadOpenWords(key, lo, hi, src, srcOffset, length, dst, dstOffset, ad)
}

/** aeadOpen with the counter as two unsigned 32-bit halves. */
export function aeadOpenWords(
  key: Uint8Array,
  counterLo: number,
  counterHi: number,
  src: Uint8Array,
  srcOffset: number,
  length: number,
  dst: Uint8Array,
  dstOffset: number,
  ad?: Uint8Array,
): number {
  setCounterNonce(counterLo, counterHi)
  return openCurrentNonce(key, src, srcOffset, length, dst, dstOffset, ad, NONCE)
}

/** Allocating form for handshake fields: returns ciphertext || tag. */
export function aeadSealBytes(key: Uint8Array, counter: number | bigint, plaintext: Uint8Array, ad?: Uint8Array): Buffer {
  const out = Buffer.alloc(plaintext.length + AEAD_TAG_SIZE)
  aeadSeal(key, counter, plaintext, 0, plaintext.length, out, 0, ad)
  return out
}

/** Allocating form for handshake fields: returns the plaintext, or null when it does not authenticate. */
export function aeadOpenBytes(key: Uint8Array, counter: number | bigint, ciphertext: Uint8Array, ad?: Uint8Array): Buffer | null {
  if (ciphertext.length < AEAD_TAG_SIZE) return null
  const out = Buffer.alloc(ciphertext.length - AEAD_TAG_SIZE)
  return aeadOpen(key, counter, ciphertext, 0, ciphertext.length, out, 0, ad) < 0 ? null : out
}

/** ChaCha20-Poly1305 (RFC 8439) with an arbitrary 12-byte nonce; returns ciphertext || tag. */
export function chachaPolySeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array): Buffer {
  if (nonce.length !== 12) throw new RangeError('ChaCha20-Poly1305 nonce must be 12 bytes')
  const out = Buffer.alloc(plaintext.length + AEAD_TAG_SIZE)
  sealCurrentNonce(key, plaintext, 0, plaintext.length, out, 0, ad, Buffer.from(nonce))
  return out
}

/** ChaCha20-Poly1305 (RFC 8439) with an arbitrary 12-byte nonce; null when it does not authenticate. */
export function chachaPolyOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad?: Uint8Array): Buffer | null {
  if (nonce.length !== 12) throw new RangeError('ChaCha20-Poly1305 nonce must be 12 bytes')
  if (ciphertext.length < AEAD_TAG_SIZE) return null
  const out = Buffer.alloc(ciphertext.length - AEAD_TAG_SIZE)
  return openCurrentNonce(key, ciphertext, 0, ciphertext.length, out, 0, ad, Buffer.from(nonce)) < 0 ? null : out
}

// ---------------------------------------------------------------------------------------------
// XChaCha20-Poly1305 (draft-irtf-cfrg-xchacha-03)

function quarterRound(s: Uint32Array, a: number, b: number, c: number, d: number): void {
  let x = s[a]!
  let y = s[b]!
  let z = s[c]!
  let w = s[d]!
  x = (x + y) | 0
  w ^= x
  w = (w << 16) | (w >>> 16)
  z = (z + w) | 0
  y ^= z
  y = (y << 12) | (y >>> 20)
  x = (x + y) | 0
  w ^= x
  w = (w << 8) | (w >>> 24)
  z = (z + w) | 0
  y ^= z
  y = (y << 7) | (y >>> 25)
  s[a] = x
  s[b] = y
  s[c] = z
  s[d] = w
}

function readU32LE(b: Uint8Array, i: number): number {
  return (b[i]! | (b[i + 1]! << 8) | (b[i + 2]! << 16) | (b[i + 3]! << 24)) >>> 0
}

/** HChaCha20: derives a 32-byte subkey from a key and the first 16 bytes of an extended nonce. */
export function hchacha20(key: Uint8Array, nonce16: Uint8Array): Buffer {
  checkKeyLength(key, 'HChaCha20 key')
  if (nonce16.length !== 16) throw new RangeError('HChaCha20 nonce must be 16 bytes')
  const s = new Uint32Array(16)
  s[0] = 0x61707865
  s[1] = 0x3320646e
  s[2] = 0x79622d32
  s[3] = 0x6b206574
  for (let i = 0; i < 8; i++) s[4 + i] = readU32LE(key, i * 4)
  for (let i = 0; i < 4; i++) s[12 + i] = readU32LE(nonce16, i * 4)
  for (let i = 0; i < 10; i++) {
    quarterRound(s, 0, 4, 8, 12)
    quarterRound(s, 1, 5, 9, 13)
    quarterRound(s, 2, 6, 10, 14)
    quarterRound(s, 3, 7, 11, 15)
    quarterRound(s, 0, 5, 10, 15)
    quarterRound(s, 1, 6, 11, 12)
    quarterRound(s, 2, 7, 8, 13)
    quarterRound(s, 3, 4, 9, 14)
  }
  const out = Buffer.alloc(32)
  for (let i = 0; i < 4; i++) {
    out.writeUInt32LE(s[i]!, i * 4)
    out.writeUInt32LE(s[12 + i]!, 16 + i * 4)
  }
  s.fill(0)
  return out
}

function xNonce(nonce: Uint8Array): Buffer {
  const n = Buffer.alloc(12)
  n.set(nonce.subarray(16, 24), 4)
  return n
}

function checkXNonce(nonce: Uint8Array): void {
  if (nonce.length !== 24) throw new RangeError('XChaCha20-Poly1305 nonce must be 24 bytes')
}

/** XChaCha20-Poly1305 with a 24-byte nonce; returns ciphertext || tag. */
export function xaeadSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad?: Uint8Array): Buffer {
  checkXNonce(nonce)
  const subkey = hchacha20(key, nonce.subarray(0, 16))
  const out = Buffer.alloc(plaintext.length + AEAD_TAG_SIZE)
  sealCurrentNonce(subkey, plaintext, 0, plaintext.length, out, 0, ad, xNonce(nonce))
  subkey.fill(0)
  return out
}

/** XChaCha20-Poly1305 with a 24-byte nonce; the plaintext, or null when it does not authenticate. */
export function xaeadOpen(key: Uint8Array, nonce: Uint8Array, ciphertext: Uint8Array, ad?: Uint8Array): Buffer | null {
  checkXNonce(nonce)
  if (ciphertext.length < AEAD_TAG_SIZE) return null
  const subkey = hchacha20(key, nonce.subarray(0, 16))
  const out = Buffer.alloc(ciphertext.length - AEAD_TAG_SIZE)
  const n = openCurrentNonce(subkey, ciphertext, 0, ciphertext.length, out, 0, ad, xNonce(nonce))
  subkey.fill(0)
  return n < 0 ? null : out
}

// ---------------------------------------------------------------------------------------------
// Keys as text, and small helpers

function checkKeyLength(key: Uint8Array, what: string): void {
  if (key.length !== KEY_SIZE) throw new InvalidArgumentError(`${what} must be ${KEY_SIZE} bytes, got ${key.length}`)
}

/** Base64 of a 32-byte key, as `wg` prints it (44 characters ending in "="). */
export function keyToBase64(key: Uint8Array): string {
  checkKeyLength(key, 'key')
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64')
}

const KEY_BASE64 = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/

/**
 * Decodes a key from base64. Only the canonical 44-character form of exactly 32 bytes is
 * accepted, so that one key has one spelling (Buffer.from would silently skip bad characters).
 */
export function keyFromBase64(text: string): Buffer {
  if (!KEY_BASE64.test(text)) throw new InvalidArgumentError('a WireGuard key must be base64 of 32 bytes: 44 characters ending in "="')
  return Buffer.from(text, 'base64')
}

/** Lower-case hex of a 32-byte key, as the `wg` configuration protocol (UAPI) carries it. */
export function keyToHex(key: Uint8Array): string {
  checkKeyLength(key, 'key')
  return Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('hex')
}

export function keyFromHex(text: string): Buffer {
  if (!/^[0-9a-fA-F]{64}$/.test(text)) throw new InvalidArgumentError('a WireGuard key in hex must be 64 hex digits')
  return Buffer.from(text, 'hex')
}

export function isZero(bytes: Uint8Array): boolean {
  let acc = 0
  for (let i = 0; i < bytes.length; i++) acc |= bytes[i]!
  return acc === 0
}

/** Constant-time equality of two byte ranges of the same length. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

/** Overwrites secret material; best effort, as anywhere in a garbage-collected runtime. */
export function wipe(...buffers: (Uint8Array | null | undefined)[]): void {
  for (const b of buffers) b?.fill(0)
}
