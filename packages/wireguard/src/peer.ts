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
  /** Where to send: a 24-byte address record (udp.ts); `hasEndpoint` false until known. */
  readonly endpoint = new Uint8Array(ADDR_BYTES)
  hasEndpoint = false
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
