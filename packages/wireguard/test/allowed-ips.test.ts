/**
 * AllowedIps: named cases, then thousands of random prefixes, lookups and removals checked
 * against a naive reference (a list scanned for the longest containing prefix, using the core
 * package's cidrContains).
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cidrContains, formatCidr, parseCidr, parseIp, type Cidr, type IpAddress, type IpFamily } from '@flatnet/core'
import { AllowedIps } from '../src/index.js'

const cidr = (text: string): Cidr => parseCidr(text)!
const ip = (text: string): IpAddress => parseIp(text)!

function ipBytes(a: IpAddress): Buffer {
  const b = Buffer.alloc(a.family === 4 ? 4 : 16)
  if (a.family === 4) b.writeUInt32BE(a.words[0])
  else a.words.forEach((w, i) => b.writeUInt32BE(w, i * 4))
  return b
}

describe('AllowedIps', () => {
  it('picks the longest matching prefix, per family', () => {
    const t = new AllowedIps<string>()
    t.insert(cidr('10.0.0.0/8'), 'a')
    t.insert(cidr('10.1.0.0/16'), 'b')
    t.insert(cidr('10.1.2.3/32'), 'c')
    t.insert(cidr('0.0.0.0/0'), 'default')
    t.insert(cidr('fd00::/8'), 'v6')
    t.insert(cidr('fd00:1::/32'), 'v6b')
    assert.equal(t.lookup(ip('10.1.2.3')), 'c')
    assert.equal(t.lookup(ip('10.1.2.4')), 'b')
    assert.equal(t.lookup(ip('10.2.0.1')), 'a')
    assert.equal(t.lookup(ip('192.0.2.1')), 'default')
    assert.equal(t.lookup(ip('fd00:1::5')), 'v6b')
    assert.equal(t.lookup(ip('fd01::5')), 'v6')
    assert.equal(t.lookup(ip('2001:db8::1')), undefined, 'the IPv4 default does not cover IPv6')
    assert.equal(t.size, 6)
  })

  it('moves a prefix to the latest value and ignores host bits', () => {
    const t = new AllowedIps<string>()
    t.insert(cidr('10.0.0.0/24'), 'a')
    t.insert({ ...cidr('10.0.0.0/24'), network: ip('10.0.0.77') }, 'b')
    assert.equal(t.size, 1)
    assert.equal(t.lookup(ip('10.0.0.1')), 'b')
    assert.deepEqual(t.entriesFor('b').map(formatCidr), ['10.0.0.0/24'])
    assert.deepEqual(t.entriesFor('a'), [])
  })

  it('removes prefixes, and everything of one value', () => {
    const t = new AllowedIps<string>()
    for (const [c, v] of [['10.0.0.0/8', 'a'], ['10.1.0.0/16', 'b'], ['10.1.1.0/24', 'a'], ['fd00::/64', 'a'], ['fd00::1/128', 'b']] as const) t.insert(cidr(c), v)
    assert.ok(t.remove(cidr('10.1.0.0/16')))
    assert.ok(!t.remove(cidr('10.1.0.0/16')))
    assert.ok(!t.remove(cidr('10.1.0.0/17')))
    assert.equal(t.lookup(ip('10.1.2.3')), 'a')
    assert.equal(t.removeByValue('a'), 3)
    assert.equal(t.lookup(ip('10.1.1.1')), undefined)
    assert.equal(t.lookup(ip('fd00::1')), 'b')
    assert.equal(t.lookup(ip('fd00::2')), undefined)
    assert.deepEqual([...t.entries()].map(([c, v]) => `${formatCidr(c)}=${v}`), ['fd00::1/128=b'])
    t.clear()
    assert.equal(t.size, 0)
    assert.equal(t.lookup(ip('fd00::1')), undefined)
  })

  it('looks up packet addresses in place and rejects what is not an IP packet', () => {
    const t = new AllowedIps<string>()
    t.insert(cidr('10.0.0.2/32'), 'src-peer')
    t.insert(cidr('10.0.0.3/32'), 'dst-peer')
    t.insert(cidr('fd00::2/128'), 'src6')
    t.insert(cidr('fd00::3/128'), 'dst6')
    const v4 = Buffer.alloc(8 + 20)
    v4[8] = 0x45
    v4.set([10, 0, 0, 2], 8 + 12)
    v4.set([10, 0, 0, 3], 8 + 16)
    assert.equal(t.lookupSource(v4, 8), 'src-peer')
    assert.equal(t.lookupDestination(v4, 8), 'dst-peer')
    assert.equal(t.lookupDestination(v4, 8, 19), undefined, 'truncated')
    const v6 = Buffer.alloc(40)
    v6[0] = 0x60
    ipBytes(ip('fd00::2')).copy(v6, 8)
    ipBytes(ip('fd00::3')).copy(v6, 24)
    assert.equal(t.lookupSource(v6), 'src6')
    assert.equal(t.lookupDestination(v6), 'dst6')
    assert.equal(t.lookupDestination(Buffer.from([0x50, 0, 0, 0])), undefined)
    assert.equal(t.lookupDestination(Buffer.alloc(0)), undefined)
    t.insertBytes(Buffer.from([192, 0, 2, 0]), 24, 'bytes')
    assert.equal(t.lookupV4(Buffer.from([192, 0, 2, 200]), 0), 'bytes')
    assert.throws(() => t.insert({ ...cidr('10.0.0.0/8'), prefix: 33 }, 'x'), RangeError)
  })

  for (const family of [4, 6] as const) {
    it(`matches a naive reference on random IPv${family} input`, () => {
      let seed = family * 7919
      const rand = (n: number): number => {
        seed = (Math.imul(seed, 1103515245) + 12345) >>> 0
        return Math.floor((seed / 0x100000000) * n)
      }
      const bits = family === 4 ? 32 : 128
      // Addresses drawn from a few clusters so that prefixes nest and overlap.
      const clusters = Array.from({ length: 6 }, () => [rand(0x100000000), rand(0x100000000), rand(0x100000000), rand(0x100000000)])
      const randomAddress = (): IpAddress => {
        const c = clusters[rand(clusters.length)]!
        const words = c.map((w, i) => {
          if (family === 4 && i > 0) return 0
          const flip = rand(4) === 0 ? rand(0x100000000) : rand(1 << rand(16))
          return (w ^ flip) >>> 0
        }) as [number, number, number, number]
        return { family: family as IpFamily, words }
      }
      const randomCidr = (): Cidr => {
        const a = randomAddress()
        const prefix = rand(5) === 0 ? bits : rand(bits + 1)
        return parseCidr(`${a.family === 4 ? [a.words[0] >>> 24, (a.words[0] >>> 16) & 255, (a.words[0] >>> 8) & 255, a.words[0] & 255].join('.') : formatV6(a)}/${prefix}`)!
      }
      const t = new AllowedIps<number>()
      // Keyed by the prefix's text, so a re-insert replaces and a removal finds it.
      const reference = new Map<string, { c: Cidr; v: number }>()
      const key = (c: Cidr): string => formatCidr(c)
      const refLookup = (a: IpAddress): number | undefined => {
        let best: { c: Cidr; v: number } | undefined
        for (const e of reference.values()) if (cidrContains(e.c, a) && (best === undefined || e.c.prefix > best.c.prefix)) best = e
        return best?.v
      }
      // An address inside a held prefix, a few host bits flipped: reaches the long prefixes.
      const entries = (): Cidr[] => [...reference.values()].map((e) => e.c)
      const nearAddress = (c: Cidr): IpAddress => {
        const words = [...c.network.words] as [number, number, number, number]
        for (let n = rand(4); n > 0 && c.prefix < bits; n--) {
          const at = c.prefix + rand(bits - c.prefix)
          words[at >>> 5] = (words[at >>> 5]! ^ (1 << (31 - (at & 31)))) >>> 0
        }
        return { family: c.family, words }
      }
      const check = (round: string): void => {
        const held = entries()
        for (let i = 0; i < 1500; i++) {
          const a = i % 2 === 0 && held.length > 0 ? nearAddress(held[rand(held.length)]!) : randomAddress()
          const expected = refLookup(a)
          assert.equal(t.lookup(a), expected, `${round}: lookup`)
          const b = ipBytes(a)
          assert.equal(family === 4 ? t.lookupV4(b, 0) : t.lookupV6(b, 0), expected, `${round}: lookup from bytes`)
        }
        assert.equal(t.size, reference.size, `${round}: size`)
      }
      for (let i = 0; i < 3000; i++) {
        const c = randomCidr()
        const v = rand(40)
        t.insert(c, v)
        reference.set(key(c), { c, v })
      }
      check('after inserts')
      for (let i = 0; i < 1500; i++) {
        const present = [...reference.values()]
        const victim = rand(2) === 0 && present.length > 0 ? present[rand(present.length)]!.c : randomCidr()
        assert.equal(t.remove(victim), reference.delete(key(victim)), `remove ${key(victim)}`)
      }
      check('after removals')
      for (const v of [1, 2, 3, 5, 8, 13]) {
        const expected = [...reference.keys()].filter((k) => reference.get(k)!.v === v).sort()
        assert.deepEqual(t.entriesFor(v).map(key).sort(), expected, `entriesFor ${v}`)
        assert.equal(t.removeByValue(v), expected.length)
        for (const k of expected) reference.delete(k)
      }
      check('after removeByValue')
      for (let i = 0; i < 1000; i++) {
        const c = randomCidr()
        t.insert(c, 100 + i)
        reference.set(key(c), { c, v: 100 + i })
      }
      check('after more inserts')
      assert.deepEqual(
        [...t.entries()].map(([c, v]) => `${key(c)}=${v}`).sort(),
        [...reference].map(([k, e]) => `${k}=${e.v}`).sort(),
      )
    })
  }
})

function formatV6(a: IpAddress): string {
  return a.words.flatMap((w) => [(w >>> 16).toString(16), (w & 0xffff).toString(16)]).join(':')
}
