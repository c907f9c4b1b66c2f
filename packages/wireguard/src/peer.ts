/** A WireGuard peer as the userspace device holds it: keys, sessions, endpoint, timers, counters. */
import { ADDR_BYTES } from './native.js'
import { Keypairs, type Keypair } from './keypair.js'
import { HandshakeState } from './noise.js'
import { PeerTimers, type TimerDurations } from './timers.js'
import { QUEUE_STAGED_SIZE } from './tuning.js'
import { keyToBase64 } from './crypto.js'

export class Peer {
  readonly publicKeyBase64: string
  readonly handshake: HandshakeState<Peer>
  readonly keypairs: Keypairs
  readonly timers: PeerTimers
  /**
   * Where to send: a 24-byte address record, a UDP address (udp.ts) or the peer's relay link
   * (relay-path.ts); `hasEndpoint` false until known.
   */
  readonly endpoint = new Uint8Array(ADDR_BYTES)
  hasEndpoint = false
  /** The last UDP address configured or learnt for the peer, kept while it is relayed. */
  readonly directEndpoint = new Uint8Array(ADDR_BYTES)
  hasDirectEndpoint = false
  /** The relay link's address record, when the peer has one. */
  relayRecord: Uint8Array | null = null
  /** Monotonic ms of the last authenticated packet from the direct path. */
  lastDirectRxAt = -Infinity
  /** While relayed: when the direct endpoint is probed next. */
  nextDirectProbeAt = Infinity
  /** Times the peer moved from direct to relay and back. */
  relayFallbacks = 0
  directReturns = 0
  /** As configured, canonical CIDRs (the device's AllowedIps trie is the routing truth). */
  allowedIps: string[] = []
  /** Packets waiting for a session; copies, bounded (oldest dropped). */
  readonly staged: Buffer[] = []
  rxBytes = 0
  txBytes = 0
  /** Wall-clock milliseconds of the last completed handshake. */
  lastHandshakeWallMs: number | undefined
  /** Transport messages sent on the current session (for the test-only rekey trigger). */
  sentOnCurrent = 0
  currentForCount: Keypair | null = null

  constructor(
    readonly publicKey: Buffer,
    presharedKey: Buffer | undefined,
    durations: TimerDurations,
    onRetire: (kp: Keypair) => void,
  ) {
    this.publicKeyBase64 = keyToBase64(publicKey)
    this.handshake = new HandshakeState<Peer>(this, publicKey, presharedKey)
    this.keypairs = new Keypairs(onRetire)
    this.timers = new PeerTimers(durations)
  }

  get viaRelay(): boolean {
    return this.hasEndpoint && this.relayRecord !== null && sameRecord(this.endpoint, this.relayRecord)
  }

  /** Derived from the key itself, which setPeer may change. */
  get hasPresharedKey(): boolean {
    return this.handshake.presharedKey.some((b) => b !== 0)
  }

  /** Keeps a packet for when a session exists; returns false when the oldest had to go. */
  stage(packet: Uint8Array, offset: number, length: number): boolean {
    this.staged.push(Buffer.from(packet.subarray(offset, offset + length)))
    if (this.staged.length <= QUEUE_STAGED_SIZE) return true
    this.staged.shift()
    return false
  }
}

function sameRecord(a: Uint8Array, b: Uint8Array): boolean {
  for (let k = 0; k < ADDR_BYTES; k++) if (a[k] !== b[k]) return false
  return true
}
