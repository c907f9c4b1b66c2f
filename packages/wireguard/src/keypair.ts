/**
 * Sessions. A Keypair is what one completed handshake yields: a send key with its counter, a
 * receive key with its replay window, and the two indices that route transport messages to it.
 * Keypairs holds a peer's current, previous and next sessions and rotates them the way
 * wireguard-go and Linux do, so that packets in flight during a rekey are not lost and the
 * responder never sends on a session before the initiator has proved it holds it.
 *
 * The send counter is two 32-bit halves rather than a bigint: it is bumped for every packet, and
 * REJECT_AFTER_MESSAGES (2^64 - 2^13 - 1) is beyond a double's exact range.
 */
import {
  MESSAGE_TRANSPORT_HEADER_SIZE,
  REJECT_AFTER_TIME_MS,
  REKEY_AFTER_TIME_MS,
  REKEY_AFTER_TIME_RECEIVING_MS,
} from './constants.js'
import { aeadOpenWords, aeadSealWords } from './crypto.js'
import { readTransportCounterHi, readTransportCounterLo, writeTransportHeader } from './messages.js'
import { ReplayWindow } from './replay.js'

const TWO_32 = 0x100000000
// REJECT_AFTER_MESSAGES = 2^64 - 2^13 - 1 in halves.
const REJECT_HI = 0xffffffff
const REJECT_LO = 0xffffdfff
// REKEY_AFTER_MESSAGES = 2^60 in halves.
const REKEY_HI = 0x10000000

/** openTransport() results below zero: why the message was dropped. */
export const TRANSPORT_AUTH_FAILED = -1
export const TRANSPORT_REPLAYED = -2

export interface KeypairInit {
  readonly sendKey: Uint8Array
  readonly receiveKey: Uint8Array
  readonly localIndex: number
  readonly remoteIndex: number
  /** Monotonic milliseconds at creation. */
  readonly created: number
  readonly isInitiator: boolean
}

export class Keypair {
  readonly sendKey: Buffer
  readonly receiveKey: Buffer
  readonly localIndex: number
  readonly remoteIndex: number
  readonly created: number
  readonly isInitiator: boolean
  readonly replay = new ReplayWindow()
  private sendLo = 0
  private sendHi = 0
  /** The first counter of the last reserveCounters() call, as halves. */
  reservedLo = 0
  reservedHi = 0

  constructor(init: KeypairInit) {
    this.sendKey = Buffer.from(init.sendKey)
    this.receiveKey = Buffer.from(init.receiveKey)
    this.localIndex = init.localIndex
    this.remoteIndex = init.remoteIndex
    this.created = init.created
    this.isInitiator = init.isInitiator
  }

  /** The counter the next sent message will carry. */
  get sendCounter(): bigint {
    return (BigInt(this.sendHi) << 32n) | BigInt(this.sendLo)
  }

  /** Moves the send counter; for tests that need to reach the limits. */
  setSendCounter(counter: bigint): void {
    if (counter < 0n || counter >= 1n << 64n) throw new RangeError(`send counter ${counter} is out of range`)
    this.sendLo = Number(counter & 0xffffffffn)
    this.sendHi = Number(counter >> 32n)
  }

  /** False once every counter below REJECT_AFTER_MESSAGES has been used. */
  get canSend(): boolean {
    return !(this.sendHi === REJECT_HI && this.sendLo >= REJECT_LO)
  }

  /** Older than REJECT_AFTER_TIME: may neither send nor receive. */
  isExpired(now: number): boolean {
    return now - this.created > REJECT_AFTER_TIME_MS
  }

  /**
   * After sending on this keypair, whether a new handshake should start: past
   * REKEY_AFTER_MESSAGES, or (initiator only) older than REKEY_AFTER_TIME.
   */
  needsRekeyAfterSend(now: number): boolean {
    const pastMessages = this.sendHi > REKEY_HI || (this.sendHi === REKEY_HI && this.sendLo > 0)
    return pastMessages || (this.isInitiator && now - this.created > REKEY_AFTER_TIME_MS)
  }

  /**
   * After receiving on this keypair, whether the initiator should start a new handshake before
   * the session expires (REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT).
   */
  needsRekeyAfterReceive(now: number): boolean {
    return this.isInitiator && now - this.created > REKEY_AFTER_TIME_RECEIVING_MS
  }

  /**
   * Builds a transport message at `out[outOffset]`: header, then the encrypted
   * `src[srcOffset, srcOffset + length)` (padded by the caller) and tag. The plaintext may
   * already sit at `outOffset + 16` (in place). Returns the message length, or -1 when the send
   * counter is exhausted (nothing is written). Does not check age: see isExpired().
   */
  sealTransport(src: Uint8Array, srcOffset: number, length: number, out: Uint8Array, outOffset: number): number {
    if (!this.canSend) return -1
    const lo = this.sendLo
    const hi = this.sendHi
    if (lo === TWO_32 - 1) {
      this.sendLo = 0
      this.sendHi = hi + 1
    } else {
      this.sendLo = lo + 1
    }
    writeTransportHeader(out, outOffset, this.remoteIndex, lo, hi)
    return MESSAGE_TRANSPORT_HEADER_SIZE + aeadSealWords(this.sendKey, lo, hi, src, srcOffset, length, out, outOffset + MESSAGE_TRANSPORT_HEADER_SIZE)
  }

  /**
   * Reserves up to `n` consecutive send counters for messages the caller seals itself (a batch);
   * the first is left in reservedLo/reservedHi. Returns how many were granted: `n`, or fewer
   * (0 included) once the counter nears REJECT_AFTER_MESSAGES. Counters are never handed out
   * twice, so a reservation that goes unused only leaves a gap, which receivers accept.
   */
  reserveCounters(n: number): number {
    if (!this.canSend || n <= 0) return 0
    const lo = this.sendLo
    const hi = this.sendHi
    // Counters left below the limit; inexact only where it is far beyond any n.
    const granted = Math.min(n, (REJECT_HI - hi) * TWO_32 + (REJECT_LO - lo))
    this.reservedLo = lo
    this.reservedHi = hi
    const next = lo + granted
    if (next >= TWO_32) {
      this.sendLo = next - TWO_32
      this.sendHi = hi + 1
    } else {
      this.sendLo = next
    }
    return granted
  }

  /**
   * The replay check for the transport message at `msg[offset]`, once it has authenticated
   * (decrypted elsewhere, e.g. in a batch): true when its counter is new, and records it.
   */
  acceptCounter(msg: Uint8Array, offset: number): boolean {
    return this.replay.checkWords(readTransportCounterLo(msg, offset), readTransportCounterHi(msg, offset))
  }

  /**
   * Authenticates and decrypts the transport message `msg[offset, offset + length)` into
   * `out[outOffset]`, then checks its counter against the replay window (only after
   * authentication, so forged packets cannot move the window). Returns the plaintext length
   * (padding included), TRANSPORT_AUTH_FAILED or TRANSPORT_REPLAYED. The caller has already
   * matched the receiver index to this keypair and checked isExpired().
   */
  openTransport(msg: Uint8Array, offset: number, length: number, out: Uint8Array, outOffset: number): number {
    const lo = readTransportCounterLo(msg, offset)
    const hi = readTransportCounterHi(msg, offset)
    const n = aeadOpenWords(this.receiveKey, lo, hi, msg, offset + MESSAGE_TRANSPORT_HEADER_SIZE, length - MESSAGE_TRANSPORT_HEADER_SIZE, out, outOffset)
    if (n < 0) return TRANSPORT_AUTH_FAILED
    if (!this.replay.checkWords(lo, hi)) return TRANSPORT_REPLAYED
    return n
  }

  /** Zeroes the keys; the keypair can no longer be used. */
  wipe(): void {
    this.sendKey.fill(0)
    this.receiveKey.fill(0)
    this.sendLo = REJECT_LO
    this.sendHi = REJECT_HI
  }
}

/**
 * A peer's sessions. `current` is used to send. `next` is a session this side completed as
 * responder and may not send on until the initiator has used it (receivedWith promotes it).
 * `previous` keeps the last session receivable while packets sent on it are still arriving.
 * Keypairs dropped from the slots go to `onRetire`, where the device deletes their index from
 * the IndexTable and wipes them.
 */
export class Keypairs {
  private currentKp: Keypair | null = null
  private previousKp: Keypair | null = null
  private nextKp: Keypair | null = null

  constructor(private readonly onRetire: (keypair: Keypair) => void = () => {}) {}

  get current(): Keypair | null {
    return this.currentKp
  }

  get previous(): Keypair | null {
    return this.previousKp
  }

  get next(): Keypair | null {
    return this.nextKp
  }

  /** Files a keypair fresh from beginSymmetricSession. */
  insert(keypair: Keypair): void {
    const { previousKp: previous, nextKp: next, currentKp: current } = this
    if (keypair.isInitiator) {
      // The initiator has key confirmation already (it received the response), so the new
      // session becomes current at once. An unconfirmed `next` is still kept receivable.
      if (next !== null) {
        this.nextKp = null
        this.previousKp = next
        this.retire(current)
      } else {
        this.previousKp = current
      }
      this.retire(previous)
      this.currentKp = keypair
    } else {
      this.nextKp = keypair
      this.retire(next)
      this.previousKp = null
      this.retire(previous)
    }
  }

  /**
   * Called after a transport message authenticated on `keypair`. Returns true when that was the
   * first use of `next`: it becomes current and the old current becomes previous.
   */
  receivedWith(keypair: Keypair): boolean {
    if (this.nextKp !== keypair) return false
    this.retire(this.previousKp)
    this.previousKp = this.currentKp
    this.currentKp = keypair
    this.nextKp = null
    return true
  }

  /** Retires all three sessions (peer removed, or all expired). */
  clear(): void {
    const { previousKp, currentKp, nextKp } = this
    this.previousKp = null
    this.currentKp = null
    this.nextKp = null
    this.retire(previousKp)
    this.retire(currentKp)
    this.retire(nextKp)
  }

  /** The slot holding the keypair with this local index, if any. */
  find(localIndex: number): Keypair | null {
    if (this.currentKp?.localIndex === localIndex) return this.currentKp
    if (this.previousKp?.localIndex === localIndex) return this.previousKp
    if (this.nextKp?.localIndex === localIndex) return this.nextKp
    return null
  }

  private retire(keypair: Keypair | null): void {
    if (keypair !== null) this.onRetire(keypair)
  }
}
