/**
 * IP addresses and CIDR prefixes, IPv4 and IPv6, without I/O.
 *
 * An address is held as four 32-bit words, most significant first (IPv4 uses word 0 only),
 * so that a prefix test is a few integer masks rather than string or BigInt work: prefix
 * tests run once per ipBlock peer per evaluated flow.
 */
export type IpFamily = 4 | 6

export interface IpAddress {
  readonly family: IpFamily
  readonly words: readonly [number, number, number, number]
}

export interface Cidr {
  readonly family: IpFamily
  /** The network address (host bits cleared). */
  readonly network: IpAddress
  readonly prefix: number
}

const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/

function parseIpv4Words(text: string): number | undefined {
  const parts = text.split('.')
  if (parts.length !== 4) return undefined
  let value = 0
  for (const part of parts) {
    // Leading zeros are refused: "010" is octal to some parsers and decimal to others.
    if (!IPV4_OCTET.test(part)) return undefined
    const n = Number(part)
    if (n > 255) return undefined
    value = value * 256 + n
  }
  return value >>> 0
}

function parseIpv6Words(text: string): [number, number, number, number] | undefined {
  if (text.length === 0 || text.includes('%')) return undefined
  const groups: number[] = []
  let tail = text
  // An embedded IPv4 address may end an IPv6 address (e.g. ::ffff:192.0.2.1).
  const lastColon = text.lastIndexOf(':')
  let v4: number | undefined
  if (text.indexOf('.', lastColon) !== -1) {
    v4 = parseIpv4Words(text.slice(lastColon + 1))
    if (v4 === undefined) return undefined
    tail = text.slice(0, lastColon + 1)
    if (!tail.endsWith('::')) tail = tail.slice(0, -1)
  }
  const halves = tail.split('::')
  if (halves.length > 2) return undefined
  const parseGroups = (s: string): number[] | undefined => {
    if (s === '') return []
    const out: number[] = []
    for (const g of s.split(':')) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined
      out.push(parseInt(g, 16))
    }
    return out
  }
  const head = parseGroups(halves[0] ?? '')
  const rest = halves.length === 2 ? parseGroups(halves[1] ?? '') : []
  if (!head || !rest) return undefined
  const wanted = v4 === undefined ? 8 : 6
  if (halves.length === 2) {
    const missing = wanted - head.length - rest.length
    if (missing < 1) return undefined
    groups.push(...head, ...new Array<number>(missing).fill(0), ...rest)
  } else {
    if (head.length !== wanted) return undefined
    groups.push(...head)
  }
  if (v4 !== undefined) groups.push(v4 >>> 16, v4 & 0xffff)
  const w = (i: number): number => (((groups[i] ?? 0) << 16) | (groups[i + 1] ?? 0)) >>> 0
  return [w(0), w(2), w(4), w(6)]
}

/** Parses an IPv4 or IPv6 address; undefined if `text` is not one. */
export function parseIp(text: string): IpAddress | undefined {
  if (text.includes(':')) {
    const words = parseIpv6Words(text)
    return words ? { family: 6, words } : undefined
  }
  const v4 = parseIpv4Words(text)
  return v4 === undefined ? undefined : { family: 4, words: [v4, 0, 0, 0] }
}

function maskWord(prefix: number, wordIndex: number): number {
  const bits = Math.min(32, Math.max(0, prefix - wordIndex * 32))
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0
}

/** Parses `addr/prefix`. `hostBitsSet` tells whether the address had bits beyond the prefix. */
export function parseCidr(text: string): (Cidr & { hostBitsSet: boolean }) | undefined {
  const slash = text.indexOf('/')
  if (slash === -1) return undefined
  const addr = parseIp(text.slice(0, slash))
  const prefixText = text.slice(slash + 1)
  if (!addr || !/^(0|[1-9][0-9]{0,2})$/.test(prefixText)) return undefined
  const prefix = Number(prefixText)
  if (prefix > (addr.family === 4 ? 32 : 128)) return undefined
  const words = addr.words.map((w, i) => (w & maskWord(prefix, i)) >>> 0) as [number, number, number, number]
  const hostBitsSet = words.some((w, i) => w !== addr.words[i])
  return { family: addr.family, network: { family: addr.family, words }, prefix, hostBitsSet }
}

export function cidrContains(cidr: Cidr, ip: IpAddress): boolean {
  if (cidr.family !== ip.family) return false
  const n = cidr.network.words
  const a = ip.words
  for (let i = 0; i < 4; i++) {
    const m = maskWord(cidr.prefix, i)
    if (m === 0) return true
    if (((a[i] as number) & m) >>> 0 !== n[i]) return false
  }
  return true
}

/** True when every address of `inner` lies in `outer`. */
export function cidrCovers(outer: Cidr, inner: Cidr): boolean {
  return outer.family === inner.family && inner.prefix >= outer.prefix && cidrContains(outer, inner.network)
}

export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) {
    const v = ip.words[0]
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`
  }
  const groups: number[] = []
  for (const w of ip.words) groups.push(w >>> 16, w & 0xffff)
  // RFC 5952: compress the longest run (length >= 2) of zero groups, the first one on ties.
  let bestStart = -1
  let bestLen = 1
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = (g: number[]): string => g.map((x) => x.toString(16)).join(':')
  if (bestStart === -1) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`
}

export function formatCidr(cidr: Cidr): string {
  return `${formatIp(cidr.network)}/${cidr.prefix}`
}

export function ipEquals(a: IpAddress, b: IpAddress): boolean {
  return a.family === b.family && a.words.every((w, i) => w === b.words[i])
}
