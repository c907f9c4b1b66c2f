/**
 * Receive-side replay protection for transport counters: the RFC 6479 sliding window as
 * WireGuard uses it (Linux, OpenBSD, wireguard-go). A ring of 128 blocks of 64 bits (8192 bits)
 * remembers which counters were seen; the window is one block less than the ring, 8128
 * counters, so that the block being cleared when the window moves is never one still in use.
 *
 * Counters are 64-bit. JS numbers are exact only to 2^53, so the data path passes the two
 * 32-bit halves as read from the packet (checkWords); check() takes a bigint or a safe integer.
 *
 * Call it only after the packet has authenticated: otherwise a forger could move the window.
 */
import { REPLAY_WINDOW_SIZE } from './constants.js'

const BLOCK_BITS_LOG = 6
const RING_BLOCKS = 128
const BLOCK_MASK = RING_BLOCKS - 1
const TWO_32 = 0x100000000
// REJECT_AFTER_MESSAGES = 2^64 - 2^13 - 1, split into halves.
const REJECT_HI = 0xffffffff
const REJECT_LO = 0xffffdfff

export class ReplayWindow {
  // Each 64-bit block is two 32-bit words, low bits first.
  private readonly ring = new Uint32Array(RING_BLOCKS * 2)
  private lastLo = 0
  private lastHi = 0

  reset(): void {
    this.ring.fill(0)
    this.lastLo = 0
    this.lastHi = 0
  }

  /**
   * True when `counter` is new (not seen, not older than the window, below
   * REJECT_AFTER_MESSAGES), and records it; false for a replay or an out-of-range counter.
   */
  check(counter: number | bigint): boolean {
    if (typeof counter === 'bigint') {
      if (counter < 0n || counter >= 1n << 64n) return false
      return this.checkWords(Number(counter & 0xffffffffn), Number(counter >> 32n))
    }
    if (!Number.isSafeInteger(counter) || counter < 0) return false
    const lo = counter % TWO_32
    return this.checkWords(lo, (counter - lo) / TWO_32)
  }

  /** check() with the counter as its low and high unsigned 32-bit halves. */
  checkWords(lo: number, hi: number): boolean {
    if (hi === REJECT_HI && lo >= REJECT_LO) return false
    const { ring } = this
    if (hi > this.lastHi || (hi === this.lastHi && lo > this.lastLo)) {
      // Moving forward: clear the blocks the window slides over (all of them after a big jump).
      let dHi = hi - this.lastHi
      let dLo = lo - this.lastLo
      if (dLo < 0) {
        dLo += TWO_32
        dHi -= 1
      }
      let blocks = RING_BLOCKS
      if (dHi === 0 && dLo < RING_BLOCKS << BLOCK_BITS_LOG) {
        blocks = Math.min(RING_BLOCKS, ((this.lastLo & 63) + dLo) >>> BLOCK_BITS_LOG)
      }
      const current = (this.lastLo >>> BLOCK_BITS_LOG) & BLOCK_MASK
      for (let i = 1; i <= blocks; i++) {
        const b = ((current + i) & BLOCK_MASK) << 1
        ring[b] = 0
        ring[b + 1] = 0
      }
      this.lastLo = lo
      this.lastHi = hi
    } else {
      let eHi = this.lastHi - hi
      let eLo = this.lastLo - lo
      if (eLo < 0) {
        eLo += TWO_32
        eHi -= 1
      }
      if (eHi > 0 || eLo > REPLAY_WINDOW_SIZE) return false
    }
    const block = (lo >>> BLOCK_BITS_LOG) & BLOCK_MASK
    const bit = lo & 63
    const word = (block << 1) | (bit >>> 5)
    const mask = (1 << (bit & 31)) >>> 0
    const old = ring[word]!
    if ((old & mask) !== 0) return false
    ring[word] = old | mask
    return true
  }
}
