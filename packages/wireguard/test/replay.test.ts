/**
 * The replay window against the Linux kernel's self-test sequence
 * (drivers/net/wireguard/selftest/counter.c, transcribed T(n, v) for T(n, v)), and against a
 * naive model on random counter streams.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { REJECT_AFTER_MESSAGES, REPLAY_WINDOW_SIZE, ReplayWindow } from '../src/index.js'

const WINDOW = REPLAY_WINDOW_SIZE
const REJECT = REJECT_AFTER_MESSAGES

describe('ReplayWindow', () => {
  it('has the window of Linux, OpenBSD and wireguard-go', () => {
    assert.equal(WINDOW, 8128)
    assert.equal(REJECT, 18446744073709543423n)
  })

  it('passes the Linux counter self-test', () => {
    let w = new ReplayWindow()
    let n = 0
    const T = (counter: number | bigint, expected: boolean): void => {
      n++
      assert.equal(w.check(counter), expected, `self-test ${n}: counter ${counter}`)
    }
    const LIM = WINDOW + 1
    const R = REJECT
    /*  1 */ T(0, true)
    /*  2 */ T(1, true)
    /*  3 */ T(1, false)
    /*  4 */ T(9, true)
    /*  5 */ T(8, true)
    /*  6 */ T(7, true)
    /*  7 */ T(7, false)
    /*  8 */ T(LIM, true)
    /*  9 */ T(LIM - 1, true)
    /* 10 */ T(LIM - 1, false)
    /* 11 */ T(LIM - 2, true)
    /* 12 */ T(2, true)
    /* 13 */ T(2, false)
    /* 14 */ T(LIM + 16, true)
    /* 15 */ T(3, false)
    /* 16 */ T(LIM + 16, false)
    /* 17 */ T(LIM * 4, true)
    /* 18 */ T(LIM * 4 - (LIM - 1), true)
    /* 19 */ T(10, false)
    /* 20 */ T(LIM * 4 - LIM, false)
    /* 21 */ T(LIM * 4 - (LIM + 1), false)
    /* 22 */ T(LIM * 4 - (LIM - 2), true)
    /* 23 */ T(LIM * 4 + 1 - LIM, false)
    /* 24 */ T(0, false)
    /* 25 */ T(R, false)
    /* 26 */ T(R - 1n, true)
    /* 27 */ T(R, false)
    /* 28 */ T(R - 1n, false)
    /* 29 */ T(R - 2n, true)
    /* 30 */ T(R + 1n, false)
    /* 31 */ T(R + 2n, false)
    /* 32 */ T(R - 2n, false)
    /* 33 */ T(R - 3n, true)
    /* 34 */ T(0, false)

    w = new ReplayWindow()
    for (let i = 1; i <= WINDOW; i++) T(i, true)
    T(0, true)
    T(0, false)

    w = new ReplayWindow()
    for (let i = 2; i <= WINDOW + 1; i++) T(i, true)
    T(1, true)
    T(0, false)

    w = new ReplayWindow()
    for (let i = WINDOW + 1; i-- > 0; ) T(i, true)

    w = new ReplayWindow()
    for (let i = WINDOW + 2; i-- > 1; ) T(i, true)
    T(0, false)

    w = new ReplayWindow()
    for (let i = WINDOW + 1; i-- > 1; ) T(i, true)
    T(WINDOW + 1, true)
    T(0, false)

    w = new ReplayWindow()
    for (let i = WINDOW + 1; i-- > 1; ) T(i, true)
    T(0, true)
    T(WINDOW + 1, true)
  })

  it('agrees across bigint, number and 32-bit-halves forms, including the 2^32 boundary', () => {
    const a = new ReplayWindow()
    const b = new ReplayWindow()
    const c = new ReplayWindow()
    for (const v of [0xfffffff0, 0xffffffff, 0x100000000, 0x100000001, 0xfffffffe, 0x100000000 - WINDOW - 1, 0x1000003f0]) {
      const ra = a.check(BigInt(v))
      const rb = b.check(v)
      const rc = c.checkWords(v % 0x100000000, Math.floor(v / 0x100000000))
      assert.equal(ra, rb, `${v}`)
      assert.equal(ra, rc, `${v}`)
    }
    assert.equal(a.check(-1n), false)
    assert.equal(a.check(1n << 64n), false)
    assert.equal(a.check(-1), false)
    assert.equal(a.check(0.5), false)
  })

  it('matches a naive model on random streams', () => {
    let seed = 12345
    const rand = (n: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
      return seed % n
    }
    for (let round = 0; round < 20; round++) {
      const w = new ReplayWindow()
      const seen = new Set<number>()
      let last = -1
      let base = round % 2 === 0 ? 0 : 0xffffff00
      for (let i = 0; i < 20_000; i++) {
        const jump = rand(100)
        let counter: number
        if (jump < 60) counter = base + rand(64)
        else if (jump < 90) counter = Math.max(0, base - rand(WINDOW + 200))
        else counter = base + rand(20_000)
        if (jump === 99) base += 3 * WINDOW
        base = Math.max(base, counter)
        const fresh = counter > last ? true : last - counter <= WINDOW && !seen.has(counter)
        assert.equal(w.check(counter), fresh, `round ${round} step ${i} counter ${counter}`)
        if (fresh) {
          seen.add(counter)
          last = Math.max(last, counter)
        }
      }
    }
  })

  it('forgets everything on reset', () => {
    const w = new ReplayWindow()
    assert.ok(w.check(100_000))
    assert.ok(!w.check(100_000))
    assert.ok(!w.check(5))
    w.reset()
    assert.ok(w.check(5))
    assert.ok(w.check(100_000))
  })
})
