/**
 * The device-wide map from our 32-bit session indices to what they stand for. Every handshake we
 * take part in and every session (keypair) gets a random index; the peer echoes it back as the
 * receiver index of responses, cookie replies and transport data, which is how an incoming
 * message finds its state in one lookup without revealing who we are talking to.
 *
 * An index first names a handshake; when the handshake completes, beginSymmetricSession() moves
 * the same index over to the new keypair. Index 0 is never handed out, so 0 can mean "none".
 */
import { randomInt } from 'node:crypto'
import type { Keypair } from './keypair.js'
import type { HandshakeState } from './noise.js'

export interface IndexEntry<P> {
  readonly peer: P
  /** Set while the index names a handshake in progress. */
  readonly handshake: HandshakeState<P> | null
  /** Set once the index names an established session. */
  readonly keypair: Keypair | null
}

/** A uniformly random index in 1..2^32-1. */
export function randomIndex(): number {
  return randomInt(1, 0x100000000)
}

export class IndexTable<P> {
  private readonly entries = new Map<number, IndexEntry<P>>()

  /** `random` is replaceable so that tests can fix the indices of a recorded handshake. */
  constructor(private readonly random: () => number = randomIndex) {}

  get size(): number {
    return this.entries.size
  }

  /** Allocates a fresh index for `handshake`, distinct from every index in use. */
  newIndexForHandshake(peer: P, handshake: HandshakeState<P>): number {
    for (;;) {
      const index = this.random() >>> 0
      if (index === 0 || this.entries.has(index)) continue
      this.entries.set(index, { peer, handshake, keypair: null })
      return index
    }
  }

  /** Points an index that named a handshake at the keypair that handshake produced. */
  swapIndexForKeypair(index: number, keypair: Keypair): void {
    const entry = this.entries.get(index)
    if (entry === undefined) return
    this.entries.set(index, { peer: entry.peer, handshake: null, keypair })
  }

  lookup(index: number): IndexEntry<P> | undefined {
    return this.entries.get(index >>> 0)
  }

  delete(index: number): void {
    if (index !== 0) this.entries.delete(index >>> 0)
  }

  /** Drops every index that belongs to `peer` (when the peer is removed). */
  deletePeer(peer: P): void {
    for (const [index, entry] of this.entries) if (entry.peer === peer) this.entries.delete(index)
  }
}
