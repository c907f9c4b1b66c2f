/**
 * A peer's protocol timers, named after the events that arm and disarm them (whitepaper §6,
 * wireguard-go timers.go). Each timer is a deadline in monotonic milliseconds, Infinity when
 * disarmed; the device's ticker calls `due()` and runs what expired. Arming is a number store,
 * cheap enough for the data path, which only ever calls the `on*` methods.
 */
import { KEEPALIVE_TIMEOUT_MS, REJECT_AFTER_TIME_MS, REKEY_ATTEMPT_TIME_MS, REKEY_TIMEOUT_JITTER_MAX_MS, REKEY_TIMEOUT_MS } from './constants.js'

/** The durations the timers use; tests shorten them, the protocol never does. */
export interface TimerDurations {
  readonly rekeyTimeoutMs: number
  readonly keepaliveTimeoutMs: number
  readonly rejectAfterTimeMs: number
  readonly rekeyAttemptTimeMs: number
}

export const PROTOCOL_TIMER_DURATIONS: TimerDurations = Object.freeze({
  rekeyTimeoutMs: REKEY_TIMEOUT_MS,
  keepaliveTimeoutMs: KEEPALIVE_TIMEOUT_MS,
  rejectAfterTimeMs: REJECT_AFTER_TIME_MS,
  rekeyAttemptTimeMs: REKEY_ATTEMPT_TIME_MS,
})

export type TimerAction = 'retransmit-handshake' | 'give-up-handshake' | 'send-keepalive' | 'new-handshake' | 'zero-key-material' | 'persistent-keepalive'

const jitter = (): number => Math.random() * REKEY_TIMEOUT_JITTER_MAX_MS

export class PeerTimers {
  retransmitHandshakeAt = Infinity
  sendKeepaliveAt = Infinity
  newHandshakeAt = Infinity
  zeroKeyMaterialAt = Infinity
  persistentKeepaliveAt = Infinity
  handshakeAttempts = 0
  /** Data arrived while a keepalive was already pending: send one more after it. */
  private keepaliveNeedsAnother = false
  /** Milliseconds; 0 is off. */
  persistentKeepaliveMs = 0

  constructor(private readonly d: TimerDurations = PROTOCOL_TIMER_DURATIONS) {}

  get maxHandshakeAttempts(): number {
    return Math.ceil(this.d.rekeyAttemptTimeMs / this.d.rekeyTimeoutMs)
  }

  /** We sent data: expect an answer within keepalive + rekey timeout, or start a handshake. */
  onDataSent(now: number): void {
    if (this.newHandshakeAt === Infinity) this.newHandshakeAt = now + this.d.keepaliveTimeoutMs + this.d.rekeyTimeoutMs + jitter()
  }

  /** We received data: owe the peer a keepalive if we send nothing back in time. */
  onDataReceived(now: number): void {
    if (this.sendKeepaliveAt === Infinity) this.sendKeepaliveAt = now + this.d.keepaliveTimeoutMs
    else this.keepaliveNeedsAnother = true
  }

  /** Anything authenticated went out (data, keepalive or handshake): no keepalive owed. */
  onAnyAuthenticatedPacketSent(): void {
    this.sendKeepaliveAt = Infinity
  }

  /** Anything authenticated came in: the peer is alive, no new handshake needed for silence. */
  onAnyAuthenticatedPacketReceived(): void {
    this.newHandshakeAt = Infinity
  }

  /** Any authenticated packet either way: restart the persistent keepalive interval. */
  onAnyAuthenticatedPacketTraversal(now: number): void {
    if (this.persistentKeepaliveMs > 0) this.persistentKeepaliveAt = now + this.persistentKeepaliveMs
  }

  onHandshakeInitiated(now: number): void {
    this.retransmitHandshakeAt = now + this.d.rekeyTimeoutMs + jitter()
  }

  onHandshakeComplete(): void {
    this.retransmitHandshakeAt = Infinity
    this.handshakeAttempts = 0
  }

  /** A session was derived: its keys must be gone after three reject periods at the latest. */
  onSessionDerived(now: number): void {
    this.zeroKeyMaterialAt = now + this.d.rejectAfterTimeMs * 3
  }

  /** A handshake starting fresh (not a retry) counts its attempts from zero. */
  onFreshHandshake(): void {
    this.handshakeAttempts = 0
  }

  /** The actions due at `now`, each disarming (or re-arming) its timer. */
  due(now: number, out: TimerAction[]): void {
    if (now >= this.retransmitHandshakeAt) {
      this.retransmitHandshakeAt = Infinity
      if (this.handshakeAttempts >= this.maxHandshakeAttempts) {
        this.sendKeepaliveAt = Infinity
        if (this.zeroKeyMaterialAt === Infinity) this.zeroKeyMaterialAt = now + this.d.rejectAfterTimeMs * 3
        out.push('give-up-handshake')
      } else {
        this.handshakeAttempts++
        out.push('retransmit-handshake')
      }
    }
    if (now >= this.sendKeepaliveAt) {
      this.sendKeepaliveAt = Infinity
      out.push('send-keepalive')
      if (this.keepaliveNeedsAnother) {
        this.keepaliveNeedsAnother = false
        this.sendKeepaliveAt = now + this.d.keepaliveTimeoutMs
      }
    }
    if (now >= this.newHandshakeAt) {
      this.newHandshakeAt = Infinity
      out.push('new-handshake')
    }
    if (now >= this.zeroKeyMaterialAt) {
      this.zeroKeyMaterialAt = Infinity
      out.push('zero-key-material')
    }
    if (now >= this.persistentKeepaliveAt) {
      this.persistentKeepaliveAt = Infinity
      if (this.persistentKeepaliveMs > 0) out.push('persistent-keepalive')
    }
  }

  stopAll(): void {
    this.retransmitHandshakeAt = this.sendKeepaliveAt = this.newHandshakeAt = this.zeroKeyMaterialAt = this.persistentKeepaliveAt = Infinity
  }
}
