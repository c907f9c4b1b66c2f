/**
 * The WireGuard handshake: Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s (whitepaper §5.4), as the
 * pattern `<- s ... -> e, es, s, ss, {t}  <- e, ee, se, psk, {}`. Pure computation, no I/O.
 *
 * API for the device layer
 * ------------------------
 * Per device: one StaticIdentity (our key pair), one IndexTable<P> (P is the device's peer type)
 * and one CookieChecker (cookie.ts). Per peer: one HandshakeState<P> (remote static key,
 * preshared key, handshake progress, replay/flood memory, and the peer's CookieGenerator) and one
 * Keypairs (keypair.ts). `now` is always monotonic milliseconds (e.g. performance.now()).
 *
 * Initiator, when a handshake is due (timers decide when):
 *   const msg = createInitiation(identity, hs, table, now)           // 148 bytes, macs filled
 *   send msg; on a type-2 message:
 *   const r = consumeResponse(identity, msg, table)                   // finds hs by receiver index
 *   if (r.ok) { const kp = beginSymmetricSession(r.handshake, table, now); peer.keypairs.insert(kp!) }
 *   then send something at once (a keepalive if nothing is queued): it confirms the session to
 *   the responder.
 *
 * Responder, on a type-1 message (after cookieChecker.checkMac1 passed, and checkMac2 too when
 * under load; otherwise answer with cookieChecker.createReply):
 *   const r = consumeInitiation(identity, msg, lookupByStaticKey, now)
 *   if (r.ok) {
 *     const resp = createResponse(r.handshake, table, now)  // 92 bytes, macs filled
 *     const kp = beginSymmetricSession(r.handshake, table, now); peer.keypairs.insert(kp!)
 *     send resp
 *   }
 *   The new session sits in keypairs.next until the first transport message arrives on it.
 *
 * Classify every datagram with messageType() (messages.ts) first; it checks type and size.
 * On a type-3 message: table.lookup(receiver)?.peer -> hs.cookieGenerator.consumeReply(msg, now).
 * On a type-4 message: table.lookup(receiver)?.keypair, drop if keypair.isExpired(now), then
 * keypair.openTransport(...) (authenticates, then checks replay), keypairs.receivedWith(keypair),
 * keypair.needsRekeyAfterReceive(now), and the AllowedIps source check on the inner packet.
 * Sending data: keypairs.current (none, or isExpired: queue and handshake), pad the packet with
 * transportPaddingSize(), keypair.sealTransport(...) (-1 once the counter is exhausted), then
 * keypair.needsRekeyAfterSend(now). Keypairs' retire callback should delete the keypair's index
 * from the IndexTable and wipe() it.
 *
 * Failures of received messages come back as `{ ok: false, reason }`, never as exceptions;
 * create* return null when the keys make a handshake impossible (a peer public key of small
 * order, or the wrong state).
 *
 * Deterministic tests (and recorded vectors) can fix the ephemeral key, the timestamp and, via
 * IndexTable's random source, the sender index.
 */
import type { KeyObject } from 'node:crypto'
import {
  KEY_SIZE,
  HANDSHAKE_INITIATION_RATE_MS,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
  NOISE_CONSTRUCTION,
  TIMESTAMP_SIZE,
  WG_IDENTIFIER,
} from './constants.js'
import { CookieGenerator } from './cookie.js'
import {
  aeadSeal,
  generatePrivateKey,
  hash,
  kdf1,
  kdf2,
  kdf3,
  aeadOpenBytes,
  publicKey,
  x25519,
  x25519PrivateKeyObject,
  x25519PublicKeyObject,
} from './crypto.js'
import type { IndexTable } from './index-table.js'
import { Keypair } from './keypair.js'
import { decodeInitiation, decodeResponse, INITIATION_OFFSET, RESPONSE_OFFSET } from './messages.js'
import { tai64nAfter, tai64nFromUnixMs } from './tai64n.js'
import { InvalidArgumentError } from '@flatnet/core'

/** HASH(Construction): the chaining key every handshake starts from. */
export const INITIAL_CHAIN_KEY: Buffer = hash(Buffer.from(NOISE_CONSTRUCTION))
/** HASH(HASH(Construction) || Identifier): the hash every handshake starts from. */
export const INITIAL_HASH: Buffer = hash(INITIAL_CHAIN_KEY, Buffer.from(WG_IDENTIFIER))

const EMPTY = new Uint8Array(0)

/** Our static key pair. */
export class StaticIdentity {
  readonly privateKey: Buffer
  readonly publicKey: Buffer
  /** @internal node:crypto form of the private key, made once. */
  readonly keyObject: KeyObject
  /** @internal HASH(INITIAL_HASH || our public key): where every initiation to us starts. */
  readonly responderHash: Buffer

  /** The key is clamped, as WireGuard does; a key that clamps to a different value is the same key. */
  constructor(privateKey: Uint8Array) {
    if (privateKey.length !== KEY_SIZE) throw new InvalidArgumentError(`private key must be ${KEY_SIZE} bytes, got ${privateKey.length}`)
    this.privateKey = Buffer.from(privateKey)
    this.privateKey[0]! &= 248
    this.privateKey[31] = (this.privateKey[31]! & 127) | 64
    this.keyObject = x25519PrivateKeyObject(this.privateKey)
    this.publicKey = publicKey(this.keyObject)
    this.responderHash = hash(INITIAL_HASH, this.publicKey)
  }

  static generate(): StaticIdentity {
    return new StaticIdentity(generatePrivateKey())
  }
}

export type HandshakeStage = 'zeroed' | 'initiation-created' | 'initiation-consumed' | 'response-created' | 'response-consumed'

/** Why a received handshake message was dropped. */
export type HandshakeDropReason =
  /** Wrong size or type. */
  | 'malformed'
  /** The sender's ephemeral key is of small order. */
  | 'bad-ephemeral'
  /** The encrypted static key did not decrypt: not meant for us, or corrupted. */
  | 'decrypt-static'
  /** The initiator's static key is not one of our peers. */
  | 'unknown-peer'
  /** The peer's static key is of small order, so no handshake with it can be trusted. */
  | 'bad-peer-key'
  /** The timestamp did not decrypt: the initiator does not hold the private key it claims. */
  | 'decrypt-timestamp'
  /** The timestamp is not newer than the last one accepted from this peer. */
  | 'replay'
  /** Less than HANDSHAKE_INITIATION_RATE since the last accepted initiation from this peer. */
  | 'flood'
  /** No handshake of ours has this receiver index. */
  | 'unknown-index'
  /** The handshake is not waiting for a response. */
  | 'wrong-state'
  /** The response did not authenticate (wrong keys or preshared key). */
  | 'decrypt-empty'

export type HandshakeResult<P> = { readonly ok: true; readonly handshake: HandshakeState<P> } | { readonly ok: false; readonly reason: HandshakeDropReason }

function drop(reason: HandshakeDropReason): { readonly ok: false; readonly reason: HandshakeDropReason } {
  return { ok: false, reason }
}

/** One peer's side of the handshake. */
export class HandshakeState<P = unknown> {
  readonly remoteStatic: Buffer
  /** Adds mac1/mac2 to what we send this peer and takes the cookies it sends us. */
  readonly cookieGenerator: CookieGenerator
  stage: HandshakeStage = 'zeroed'
  /** Our index for the handshake in progress (0 when none). */
  localIndex = 0
  /** The peer's index for it, learnt from its message. */
  remoteIndex = 0
  /** Largest TAI64N accepted from this peer's initiations. */
  readonly lastTimestamp = Buffer.alloc(TIMESTAMP_SIZE)
  /** Monotonic time of the last accepted initiation from this peer. */
  lastInitiationConsumption = Number.NEGATIVE_INFINITY
  /** Monotonic time our last initiation to this peer went out; kept by the device's timers. */
  lastSentHandshake = Number.NEGATIVE_INFINITY

  private psk: Buffer = Buffer.alloc(KEY_SIZE)
  private hashValue: Buffer = Buffer.alloc(32)
  private chainKey: Buffer = Buffer.alloc(32)
  private localEphemeral: KeyObject | null = null
  private readonly remoteEphemeral = Buffer.alloc(KEY_SIZE)
  private readonly remoteStaticObject: KeyObject
  private staticStaticFor: StaticIdentity | null = null
  private staticStatic: Buffer | null = null

  constructor(
    readonly peer: P,
    remoteStatic: Uint8Array,
    presharedKey?: Uint8Array,
  ) {
    if (remoteStatic.length !== KEY_SIZE) throw new InvalidArgumentError(`peer public key must be ${KEY_SIZE} bytes, got ${remoteStatic.length}`)
    this.remoteStatic = Buffer.from(remoteStatic)
    this.remoteStaticObject = x25519PublicKeyObject(this.remoteStatic)
    this.cookieGenerator = new CookieGenerator(this.remoteStatic)
    if (presharedKey) this.presharedKey = presharedKey
  }

  get presharedKey(): Buffer {
    return this.psk
  }

  /** All zeros means "no preshared key", which is what the protocol mixes in then. */
  set presharedKey(key: Uint8Array) {
    if (key.length !== KEY_SIZE) throw new InvalidArgumentError(`preshared key must be ${KEY_SIZE} bytes, got ${key.length}`)
    this.psk = Buffer.from(key)
  }

  /**
   * DH(our static, peer static), computed once per identity. Null when the peer's key is of
   * small order. Changing the identity (a new private key) recomputes it.
   */
  staticStaticSecret(local: StaticIdentity): Buffer | null {
    if (this.staticStaticFor !== local) {
      this.staticStatic = x25519(local.keyObject, this.remoteStaticObject)
      this.staticStaticFor = local
    }
    return this.staticStatic
  }

  /** Forgets the handshake in progress (not the replay and flood memory) and frees its index. */
  clear(table?: IndexTable<P>): void {
    this.hashValue.fill(0)
    this.chainKey.fill(0)
    this.remoteEphemeral.fill(0)
    this.localEphemeral = null
    if (table) table.delete(this.localIndex)
    this.localIndex = 0
    this.stage = 'zeroed'
  }

  /** @internal */
  setTranscript(hashValue: Buffer, chainKey: Buffer): void {
    this.hashValue = hashValue
    this.chainKey = chainKey
  }

  /** @internal */
  get transcriptHash(): Buffer {
    return this.hashValue
  }

  /** @internal */
  get chainingKey(): Buffer {
    return this.chainKey
  }

  /** @internal */
  setLocalEphemeral(key: KeyObject | null): void {
    this.localEphemeral = key
  }

  /** @internal */
  get localEphemeralKey(): KeyObject | null {
    return this.localEphemeral
  }

  /** @internal */
  get remoteStaticKey(): KeyObject {
    return this.remoteStaticObject
  }

  /** @internal */
  get remoteEphemeralKey(): Buffer {
    return this.remoteEphemeral
  }
}

export interface CreateOptions {
  /** Where to write the message (a new buffer when omitted). */
  readonly out?: Uint8Array
  readonly outOffset?: number
  /** Fixed ephemeral private key, for recorded vectors; random when omitted. */
  readonly ephemeralPrivateKey?: Uint8Array
}

export interface CreateInitiationOptions extends CreateOptions {
  /** The TAI64N to send; the current wall-clock time when omitted. */
  readonly timestamp?: Uint8Array
}

function ephemeralKey(fixed: Uint8Array | undefined): { obj: KeyObject; pub: Buffer } {
  const obj = x25519PrivateKeyObject(fixed ?? generatePrivateKey())
  return { obj, pub: publicKey(obj) }
}

/**
 * Starts a handshake with `hs`'s peer: returns the 148-byte initiation with mac1 and mac2 added,
 * or null when the peer's public key is of small order. Replaces any handshake in progress.
 */
export function createInitiation<P>(
  local: StaticIdentity,
  hs: HandshakeState<P>,
  table: IndexTable<P>,
  now: number,
  options: CreateInitiationOptions = {},
): Uint8Array | null {
  const ss = hs.staticStaticSecret(local)
  if (ss === null) return null
  const out = options.out ?? Buffer.alloc(MESSAGE_INITIATION_SIZE)
  const base = options.outOffset ?? 0
  if (base < 0 || base + MESSAGE_INITIATION_SIZE > out.length) throw new RangeError('initiation does not fit in the output buffer')
  const o = INITIATION_OFFSET

  let h = hash(INITIAL_HASH, hs.remoteStatic)
  let ck: Buffer = INITIAL_CHAIN_KEY
  const e = ephemeralKey(options.ephemeralPrivateKey)
  out.set(e.pub, base + o.ephemeral)
  ck = kdf1(ck, e.pub)
  h = hash(h, e.pub)

  const es = x25519(e.obj, hs.remoteStaticKey)
  if (es === null) return null
  let key: Buffer
  ;[ck, key] = kdf2(ck, es)
  aeadSeal(key, 0, local.publicKey, 0, KEY_SIZE, out, base + o.static, h)
  h = hash(h, out.subarray(base + o.static, base + o.timestamp))

  ;[ck, key] = kdf2(ck, ss)
  const timestamp = options.timestamp ?? tai64nFromUnixMs(Date.now())
  if (timestamp.length !== TIMESTAMP_SIZE) throw new RangeError(`timestamp must be ${TIMESTAMP_SIZE} bytes`)
  aeadSeal(key, 0, timestamp, 0, TIMESTAMP_SIZE, out, base + o.timestamp, h)
  h = hash(h, out.subarray(base + o.timestamp, base + o.mac1))
  key.fill(0)

  table.delete(hs.localIndex)
  hs.localIndex = table.newIndexForHandshake(hs.peer, hs)
  out[base] = 1
  out[base + 1] = 0
  out[base + 2] = 0
  out[base + 3] = 0
  new DataView(out.buffer, out.byteOffset + base).setUint32(o.sender, hs.localIndex, true)

  hs.setTranscript(h, ck)
  hs.setLocalEphemeral(e.obj)
  hs.stage = 'initiation-created'
  hs.cookieGenerator.addMacs(out, now, base, MESSAGE_INITIATION_SIZE)
  return base === 0 && out.length === MESSAGE_INITIATION_SIZE ? out : out.subarray(base, base + MESSAGE_INITIATION_SIZE)
}

/**
 * Processes an initiation sent to us. `lookup` maps the initiator's static public key to its
 * HandshakeState (undefined for a stranger). On success the state holds the initiator's
 * ephemeral key and index and is ready for createResponse. mac1/mac2 are not checked here: the
 * caller does that first, with its CookieChecker.
 */
export function consumeInitiation<P>(
  local: StaticIdentity,
  msg: Uint8Array,
  lookup: (remoteStatic: Buffer) => HandshakeState<P> | undefined,
  now: number,
  offset = 0,
  length = msg.length - offset,
): HandshakeResult<P> {
  const m = decodeInitiation(msg, offset, length)
  if (m === null) return drop('malformed')

  let h = hash(local.responderHash, m.ephemeral)
  let ck = kdf1(INITIAL_CHAIN_KEY, m.ephemeral)
  const es = x25519(local.keyObject, m.ephemeral)
  if (es === null) return drop('bad-ephemeral')
  let key: Buffer
  ;[ck, key] = kdf2(ck, es)
  const peerStatic = aeadOpenBytes(key, 0, m.encryptedStatic, h)
  if (peerStatic === null) return drop('decrypt-static')
  h = hash(h, m.encryptedStatic)

  const hs = lookup(peerStatic)
  if (hs === undefined) return drop('unknown-peer')
  const ss = hs.staticStaticSecret(local)
  if (ss === null) return drop('bad-peer-key')
  ;[ck, key] = kdf2(ck, ss)
  const timestamp = aeadOpenBytes(key, 0, m.encryptedTimestamp, h)
  key.fill(0)
  if (timestamp === null) return drop('decrypt-timestamp')
  h = hash(h, m.encryptedTimestamp)

  if (!tai64nAfter(timestamp, hs.lastTimestamp)) return drop('replay')
  if (now - hs.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE_MS) return drop('flood')

  hs.setTranscript(h, ck)
  hs.remoteIndex = m.sender
  hs.remoteEphemeralKey.set(m.ephemeral)
  hs.lastTimestamp.set(timestamp)
  if (now > hs.lastInitiationConsumption) hs.lastInitiationConsumption = now
  hs.stage = 'initiation-consumed'
  return { ok: true, handshake: hs }
}

/**
 * Answers the initiation just consumed into `hs`: returns the 92-byte response with mac1/mac2,
 * or null when `hs` is not in the initiation-consumed stage or a key is of small order.
 */
export function createResponse<P>(
  hs: HandshakeState<P>,
  table: IndexTable<P>,
  now: number,
  options: CreateOptions = {},
): Uint8Array | null {
  if (hs.stage !== 'initiation-consumed') return null
  const out = options.out ?? Buffer.alloc(MESSAGE_RESPONSE_SIZE)
  const base = options.outOffset ?? 0
  if (base < 0 || base + MESSAGE_RESPONSE_SIZE > out.length) throw new RangeError('response does not fit in the output buffer')
  const o = RESPONSE_OFFSET

  const e = ephemeralKey(options.ephemeralPrivateKey)
  let h = hash(hs.transcriptHash, e.pub)
  let ck = kdf1(hs.chainingKey, e.pub)
  const ee = x25519(e.obj, hs.remoteEphemeralKey)
  if (ee === null) return null
  ck = kdf1(ck, ee)
  const se = x25519(e.obj, hs.remoteStaticKey)
  if (se === null) return null
  ck = kdf1(ck, se)

  const [ck2, tau, key] = kdf3(ck, hs.presharedKey)
  ck = ck2
  h = hash(h, tau)
  aeadSeal(key, 0, EMPTY, 0, 0, out, base + o.empty, h)
  h = hash(h, out.subarray(base + o.empty, base + o.mac1))
  key.fill(0)
  tau.fill(0)

  table.delete(hs.localIndex)
  hs.localIndex = table.newIndexForHandshake(hs.peer, hs)
  out[base] = 2
  out[base + 1] = 0
  out[base + 2] = 0
  out[base + 3] = 0
  const view = new DataView(out.buffer, out.byteOffset + base)
  view.setUint32(o.sender, hs.localIndex, true)
  view.setUint32(o.receiver, hs.remoteIndex, true)
  out.set(e.pub, base + o.ephemeral)

  hs.setTranscript(h, ck)
  hs.setLocalEphemeral(e.obj)
  hs.stage = 'response-created'
  hs.cookieGenerator.addMacs(out, now, base, MESSAGE_RESPONSE_SIZE)
  return base === 0 && out.length === MESSAGE_RESPONSE_SIZE ? out : out.subarray(base, base + MESSAGE_RESPONSE_SIZE)
}

/**
 * Processes a response to one of our initiations, found by its receiver index in `table`. On
 * success the handshake is ready for beginSymmetricSession. mac1/mac2 are the caller's to check.
 */
export function consumeResponse<P>(
  local: StaticIdentity,
  msg: Uint8Array,
  table: IndexTable<P>,
  offset = 0,
  length = msg.length - offset,
): HandshakeResult<P> {
  const m = decodeResponse(msg, offset, length)
  if (m === null) return drop('malformed')
  const hs = table.lookup(m.receiver)?.handshake
  if (hs === null || hs === undefined) return drop('unknown-index')
  const ephemeral = hs.localEphemeralKey
  if (hs.stage !== 'initiation-created' || ephemeral === null) return drop('wrong-state')

  let h = hash(hs.transcriptHash, m.ephemeral)
  let ck = kdf1(hs.chainingKey, m.ephemeral)
  const ee = x25519(ephemeral, m.ephemeral)
  if (ee === null) return drop('bad-ephemeral')
  ck = kdf1(ck, ee)
  const se = x25519(local.keyObject, m.ephemeral)
  if (se === null) return drop('bad-ephemeral')
  ck = kdf1(ck, se)

  const [ck2, tau, key] = kdf3(ck, hs.presharedKey)
  ck = ck2
  h = hash(h, tau)
  const ok = aeadOpenBytes(key, 0, m.encryptedNothing, h) !== null
  key.fill(0)
  tau.fill(0)
  if (!ok) return drop('decrypt-empty')
  h = hash(h, m.encryptedNothing)

  hs.setTranscript(h, ck)
  hs.remoteIndex = m.sender
  hs.stage = 'response-consumed'
  return { ok: true, handshake: hs }
}

/**
 * Turns a finished handshake into a session: derives the transport keys, moves the handshake's
 * index in `table` over to the new keypair and wipes the handshake. Returns null unless `hs` is
 * in the response-created (responder) or response-consumed (initiator) stage. The caller files
 * the keypair with its Keypairs.insert().
 */
export function beginSymmetricSession<P>(hs: HandshakeState<P>, table: IndexTable<P>, now: number): Keypair | null {
  let sendKey: Buffer
  let receiveKey: Buffer
  let isInitiator: boolean
  if (hs.stage === 'response-consumed') {
    ;[sendKey, receiveKey] = kdf2(hs.chainingKey, EMPTY)
    isInitiator = true
  } else if (hs.stage === 'response-created') {
    ;[receiveKey, sendKey] = kdf2(hs.chainingKey, EMPTY)
    isInitiator = false
  } else {
    return null
  }
  const keypair = new Keypair({ sendKey, receiveKey, localIndex: hs.localIndex, remoteIndex: hs.remoteIndex, created: now, isInitiator })
  sendKey.fill(0)
  receiveKey.fill(0)
  table.swapIndexForKeypair(hs.localIndex, keypair)
  // The index now belongs to the keypair: clear() must not delete it.
  hs.localIndex = 0
  hs.clear()
  return keypair
}
