/**
 * Cryptokey routing (whitepaper §2): a longest-prefix-match table from IP prefixes to peers.
 * Sending, the destination address picks the peer; receiving, the decrypted packet's source
 * address must map back to the peer it came from, or the packet is dropped.
 *
 * One path-compressed binary trie per address family. A node holds a prefix (address words,
 * most significant first, host bits clear, and a length); a node without a value only joins two
 * branches. Lookups read the address straight out of a packet buffer into a reused word array,
 * so the data path allocates nothing. Inserting a prefix that is already present moves it to the
 * new value, as `wg set ... allowed-ips` does.
 */
import type { Cidr, IpAddress, IpFamily } from '@flatnet/core'

class TrieNode<T> {
  child0: TrieNode<T> | null = null
  child1: TrieNode<T> | null = null
  hasValue = false
  value: T | undefined = undefined

  constructor(
    /** The prefix, host bits clear; four words for IPv6, word 0 only for IPv4. */
    readonly key: Uint32Array,
    readonly bits: number,
    public parent: TrieNode<T> | null,
  ) {}
}

function bitAt(words: ArrayLike<number>, index: number): number {
  return (words[index >>> 5]! >>> (31 - (index & 31))) & 1
}

/** Whether the first `bits` bits of `a` and `b` agree. */
function prefixMatches(a: Uint32Array, b: ArrayLike<number>, bits: number): boolean {
  let w = 0
  for (; bits >= 32; bits -= 32, w++) if (a[w] !== b[w]) return false
  return bits === 0 || (((a[w]! ^ b[w]!) >>> (32 - bits)) === 0)
}

/** Length of the common prefix of `a` and `b`, at most `max` bits. */
function commonPrefixLength(a: ArrayLike<number>, b: ArrayLike<number>, max: number): number {
  for (let w = 0; w * 32 < max; w++) {
    const x = (a[w]! ^ b[w]!) >>> 0
    if (x !== 0) return Math.min(max, w * 32 + Math.clz32(x))
  }
  return max
}

function maskedKey(words: ArrayLike<number>, bits: number): Uint32Array {
  const key = new Uint32Array(4)
  for (let w = 0; w < 4; w++) {
    const keep = Math.min(32, Math.max(0, bits - w * 32))
    key[w] = keep === 0 ? 0 : words[w]! & ((0xffffffff << (32 - keep)) >>> 0)
  }
  return key
}

class Trie<T> {
  root: TrieNode<T> | null = null
  size = 0

  constructor(readonly maxBits: number) {}

  insert(words: ArrayLike<number>, bits: number, value: T): void {
    const key = maskedKey(words, bits)
    let node = this.root
    if (node === null) {
      this.root = this.leaf(key, bits, value, null)
      return
    }
    for (;;) {
      const common = commonPrefixLength(node.key, key, Math.min(node.bits, bits))
      if (common === node.bits) {
        if (node.bits === bits) {
          if (!node.hasValue) this.size++
          node.hasValue = true
          node.value = value
          return
        }
        const next: TrieNode<T> | null = bitAt(key, node.bits) === 0 ? node.child0 : node.child1
        if (next === null) {
          const leaf = this.leaf(key, bits, value, node)
          if (bitAt(key, node.bits) === 0) node.child0 = leaf
          else node.child1 = leaf
          return
        }
        node = next
        continue
      }
      const parent = node.parent
      let replacement: TrieNode<T>
      if (common === bits) {
        // The new prefix is a proper prefix of this node's: it goes in above it.
        replacement = this.leaf(key, bits, value, parent)
        this.attach(replacement, node)
      } else {
        // The two part ways at bit `common`: a valueless node joins them.
        replacement = new TrieNode<T>(maskedKey(key, common), common, parent)
        this.attach(replacement, node)
        this.attach(replacement, this.leaf(key, bits, value, replacement))
      }
      this.replaceChild(parent, node, replacement)
      return
    }
  }

  remove(words: ArrayLike<number>, bits: number): boolean {
    const node = this.find(words, bits)
    if (node === null) return false
    this.removeNode(node)
    return true
  }

  find(words: ArrayLike<number>, bits: number): TrieNode<T> | null {
    let node = this.root
    while (node !== null && node.bits <= bits && prefixMatches(node.key, words, node.bits)) {
      if (node.bits === bits) return node.hasValue ? node : null
      node = bitAt(words, node.bits) === 0 ? node.child0 : node.child1
    }
    return null
  }

  lookup(address: ArrayLike<number>): T | undefined {
    let node = this.root
    let best: T | undefined
    while (node !== null && prefixMatches(node.key, address, node.bits)) {
      if (node.hasValue) best = node.value
      if (node.bits === this.maxBits) break
      node = bitAt(address, node.bits) === 0 ? node.child0 : node.child1
    }
    return best
  }

  /** Every node holding a value, parents before children. */
  *nodes(): IterableIterator<TrieNode<T>> {
    const stack: TrieNode<T>[] = this.root ? [this.root] : []
    while (stack.length > 0) {
      const node = stack.pop()!
      if (node.hasValue) yield node
      if (node.child1) stack.push(node.child1)
      if (node.child0) stack.push(node.child0)
    }
  }

  removeNode(node: TrieNode<T>): void {
    node.hasValue = false
    node.value = undefined
    this.size--
    this.prune(node)
  }

  private prune(node: TrieNode<T>): void {
    if (node.hasValue) return
    const { child0, child1, parent } = node
    if (child0 !== null && child1 !== null) return
    const only = child0 ?? child1
    if (only !== null) only.parent = parent
    this.replaceChild(parent, node, only)
    // A valueless parent left with one child no longer joins anything.
    if (only === null && parent !== null) this.prune(parent)
  }

  private leaf(key: Uint32Array, bits: number, value: T, parent: TrieNode<T> | null): TrieNode<T> {
    const node = new TrieNode<T>(key, bits, parent)
    node.hasValue = true
    node.value = value
    this.size++
    return node
  }

  private attach(parent: TrieNode<T>, child: TrieNode<T>): void {
    child.parent = parent
    if (bitAt(child.key, parent.bits) === 0) parent.child0 = child
    else parent.child1 = child
  }

  private replaceChild(parent: TrieNode<T> | null, old: TrieNode<T>, replacement: TrieNode<T> | null): void {
    if (parent === null) this.root = replacement
    else if (parent.child0 === old) parent.child0 = replacement
    else parent.child1 = replacement
  }
}

function toCidr(family: IpFamily, node: TrieNode<unknown>): Cidr {
  const words: [number, number, number, number] = [node.key[0]!, node.key[1]!, node.key[2]!, node.key[3]!]
  return { family, network: { family, words }, prefix: node.bits }
}

export class AllowedIps<T> {
  private readonly v4 = new Trie<T>(32)
  private readonly v6 = new Trie<T>(128)
  // Reused for every lookup from packet bytes.
  private readonly scratch = new Uint32Array(4)

  /** Number of prefixes held. */
  get size(): number {
    return this.v4.size + this.v6.size
  }

  /** Maps `cidr` to `value` (host bits are ignored), replacing what it mapped to before. */
  insert(cidr: Cidr, value: T): void {
    this.trie(cidr.family).insert(cidr.network.words, this.checkPrefix(cidr.family, cidr.prefix), value)
  }

  /** insert() from raw address bytes (4 or 16 of them at `offset`). */
  insertBytes(address: Uint8Array, prefix: number, value: T, offset = 0, family: IpFamily = address.length - offset === 16 ? 6 : 4): void {
    const words = this.readWords(address, offset, family)
    this.trie(family).insert(words, this.checkPrefix(family, prefix), value)
  }

  /** Removes exactly this prefix; false when it was not present. */
  remove(cidr: Cidr): boolean {
    return this.trie(cidr.family).remove(maskedKey(cidr.network.words, cidr.prefix), cidr.prefix)
  }

  /** Removes every prefix that maps to `value`; returns how many. */
  removeByValue(value: T): number {
    let removed = 0
    for (const trie of [this.v4, this.v6]) {
      const doomed = [...trie.nodes()].filter((n) => n.value === value)
      for (const node of doomed) trie.removeNode(node)
      removed += doomed.length
    }
    return removed
  }

  clear(): void {
    for (const trie of [this.v4, this.v6]) {
      trie.root = null
      trie.size = 0
    }
  }

  /** The prefixes that map to `value`, IPv4 first, each family in address order. */
  entriesFor(value: T): Cidr[] {
    const out: Cidr[] = []
    for (const [cidr, v] of this.entries()) if (v === value) out.push(cidr)
    return out
  }

  *entries(): IterableIterator<[Cidr, T]> {
    for (const node of this.v4.nodes()) yield [toCidr(4, node), node.value as T]
    for (const node of this.v6.nodes()) yield [toCidr(6, node), node.value as T]
  }

  lookup(ip: IpAddress): T | undefined {
    return this.trie(ip.family).lookup(ip.words)
  }

  /** Longest match for the IPv4 address in `buf[offset, offset + 4)`. */
  lookupV4(buf: Uint8Array, offset: number): T | undefined {
    const s = this.scratch
    s[0] = (buf[offset]! << 24) | (buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) | buf[offset + 3]!
    return this.v4.lookup(s)
  }

  /** Longest match for the IPv6 address in `buf[offset, offset + 16)`. */
  lookupV6(buf: Uint8Array, offset: number): T | undefined {
    const s = this.scratch
    for (let w = 0; w < 4; w++) {
      const o = offset + w * 4
      s[w] = (buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!
    }
    return this.v6.lookup(s)
  }

  /** The peer for an IP packet's destination (sending); undefined if none or not an IP packet. */
  lookupDestination(packet: Uint8Array, offset = 0, length = packet.length - offset): T | undefined {
    if (length < 1) return undefined
    const version = packet[offset]! >>> 4
    if (version === 4 && length >= 20) return this.lookupV4(packet, offset + 16)
    if (version === 6 && length >= 40) return this.lookupV6(packet, offset + 24)
    return undefined
  }

  /** The peer an IP packet's source belongs to (the receive-side check). */
  lookupSource(packet: Uint8Array, offset = 0, length = packet.length - offset): T | undefined {
    if (length < 1) return undefined
    const version = packet[offset]! >>> 4
    if (version === 4 && length >= 20) return this.lookupV4(packet, offset + 12)
    if (version === 6 && length >= 40) return this.lookupV6(packet, offset + 8)
    return undefined
  }

  private trie(family: IpFamily): Trie<T> {
    return family === 4 ? this.v4 : this.v6
  }

  private checkPrefix(family: IpFamily, prefix: number): number {
    const max = family === 4 ? 32 : 128
    if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new RangeError(`prefix length ${prefix} is not in 0..${max}`)
    return prefix
  }

  private readWords(buf: Uint8Array, offset: number, family: IpFamily): Uint32Array {
    const n = family === 4 ? 1 : 4
    if (offset < 0 || offset + n * 4 > buf.length) throw new RangeError(`an IPv${family} address needs ${n * 4} bytes`)
    const words = new Uint32Array(4)
    for (let w = 0; w < n; w++) {
      const o = offset + w * 4
      words[w] = (buf[o]! << 24) | (buf[o + 1]! << 16) | (buf[o + 2]! << 8) | buf[o + 3]!
    }
    return words
  }
}
