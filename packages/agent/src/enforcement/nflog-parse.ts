/**
 * Reading NFLOG records out of a pcap stream (what `tcpdump -i nflog:<group> -w -` writes)
 * and the addresses and ports out of the logged packets. Pure: bytes in, records out.
 *
 *   pcap file header (24 bytes, link type 239 = NFLOG)
 *   per record: 16-byte record header, then
 *     NFLOG header: family (u8), version (u8), group (u16, big endian)
 *     TLVs: length (u16) and type (u16) in the capturing host's byte order, which is the
 *           byte order of the pcap header; length includes these 4 bytes; padded to 4 bytes.
 *       type 9  NFULA_PAYLOAD  the packet from its network header on
 *       type 10 NFULA_PREFIX   the rule's log prefix, NUL-terminated
 */
import { formatIp, type IpAddress } from '@flatnet/core'

export const LINKTYPE_NFLOG = 239
const NFULA_PAYLOAD = 9
const NFULA_PREFIX = 10

export interface NflogRecord {
  /** Capture time, ms since the epoch. */
  readonly time: number
  readonly group: number
  readonly prefix: string | undefined
  /** The logged packet (possibly cut at the rule's snaplen), from the IP header on. */
  readonly payload: Uint8Array | undefined
}

/** A stream that is not pcap with NFLOG records. */
export class PcapFormatError extends Error {}

/** Incremental parser: feed chunks in order, get whole records out. */
export class PcapNflogParser {
  private buffer: Buffer = Buffer.alloc(0)
  private littleEndian: boolean | undefined
  private nanoseconds = false

  push(chunk: Uint8Array): NflogRecord[] {
    this.buffer = this.buffer.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buffer, chunk])
    const out: NflogRecord[] = []
    let offset = 0
    if (this.littleEndian === undefined) {
      if (this.buffer.length < 24) return out
      this.readHeader(this.buffer)
      offset = 24
    }
    const le = this.littleEndian!
    while (this.buffer.length - offset >= 16) {
      const u32 = (at: number): number => (le ? this.buffer.readUInt32LE(at) : this.buffer.readUInt32BE(at))
      const sec = u32(offset)
      const frac = u32(offset + 4)
      const caplen = u32(offset + 8)
      if (caplen > 1 << 20) throw new PcapFormatError(`pcap record of ${caplen} bytes: the stream is corrupt`)
      if (this.buffer.length - offset - 16 < caplen) break
      const data = this.buffer.subarray(offset + 16, offset + 16 + caplen)
      out.push(this.readNflog(data, sec * 1000 + (this.nanoseconds ? frac / 1e6 : frac / 1e3)))
      offset += 16 + caplen
    }
    this.buffer = this.buffer.subarray(offset)
    return out
  }

  private readHeader(b: Buffer): void {
    const magicLe = b.readUInt32LE(0)
    if (magicLe === 0xa1b2c3d4 || magicLe === 0xa1b23c4d) this.littleEndian = true
    else if (b.readUInt32BE(0) === 0xa1b2c3d4 || b.readUInt32BE(0) === 0xa1b23c4d) this.littleEndian = false
    else throw new PcapFormatError(`not a pcap stream (magic 0x${b.readUInt32BE(0).toString(16)})`)
    const magic = this.littleEndian ? magicLe : b.readUInt32BE(0)
    this.nanoseconds = magic === 0xa1b23c4d
    const linktype = this.littleEndian ? b.readUInt32LE(20) : b.readUInt32BE(20)
    if ((linktype & 0xffff) !== LINKTYPE_NFLOG) throw new PcapFormatError(`pcap link type ${linktype}, expected ${LINKTYPE_NFLOG} (NFLOG)`)
  }

  private readNflog(data: Buffer, time: number): NflogRecord {
    const le = this.littleEndian!
    const group = data.length >= 4 ? data.readUInt16BE(2) : -1
    let prefix: string | undefined
    let payload: Uint8Array | undefined
    let at = 4
    while (at + 4 <= data.length) {
      const len = le ? data.readUInt16LE(at) : data.readUInt16BE(at)
      const type = (le ? data.readUInt16LE(at + 2) : data.readUInt16BE(at + 2)) & 0x7fff
      if (len < 4 || at + len > data.length) break
      const value = data.subarray(at + 4, at + len)
      if (type === NFULA_PREFIX) {
        const nul = value.indexOf(0)
        prefix = value.subarray(0, nul === -1 ? value.length : nul).toString('latin1')
      } else if (type === NFULA_PAYLOAD) payload = Uint8Array.from(value)
      at += (len + 3) & ~3
    }
    return { time, group, prefix, payload }
  }
}

export interface PacketSummary {
  readonly family: 4 | 6
  readonly src: string
  readonly dst: string
  /** TCP, UDP, SCTP, ICMP, ICMPv6, or the protocol number. */
  readonly protocol: string
  readonly srcPort?: number | undefined
  readonly dstPort?: number | undefined
}

const L4_NAMES: Record<number, string> = { 1: 'ICMP', 6: 'TCP', 17: 'UDP', 58: 'ICMPv6', 132: 'SCTP' }
const WITH_PORTS = new Set([6, 17, 132])
// IPv6 extension headers that may come before the transport header (hop-by-hop, routing, destination options).
const V6_EXTENSIONS = new Set([0, 43, 60])

function address(family: 4 | 6, b: Uint8Array, at: number): string {
  const dv = new DataView(b.buffer, b.byteOffset + at)
  const ip: IpAddress =
    family === 4 ? { family, words: [dv.getUint32(0), 0, 0, 0] } : { family, words: [dv.getUint32(0), dv.getUint32(4), dv.getUint32(8), dv.getUint32(12)] }
  return formatIp(ip)
}

/** Addresses, protocol and ports of an IPv4 or IPv6 packet; undefined when the header is cut short. */
export function summarizePacket(p: Uint8Array): PacketSummary | undefined {
  if (p.length < 1) return undefined
  const version = p[0]! >> 4
  let proto: number
  let l4: number
  let family: 4 | 6
  let fragmentTail = false
  if (version === 4) {
    if (p.length < 20) return undefined
    family = 4
    proto = p[9]!
    l4 = (p[0]! & 15) * 4
    fragmentTail = (((p[6]! & 0x1f) << 8) | p[7]!) !== 0
  } else if (version === 6) {
    if (p.length < 40) return undefined
    family = 6
    proto = p[6]!
    l4 = 40
    while (V6_EXTENSIONS.has(proto) && l4 + 8 <= p.length) {
      proto = p[l4]!
      l4 += (p[l4 + 1]! + 1) * 8
    }
    if (proto === 44 && l4 + 8 <= p.length) {
      fragmentTail = ((p[l4 + 2]! << 8) | (p[l4 + 3]! & 0xf8)) !== 0
      proto = p[l4]!
      l4 += 8
    }
  } else return undefined
  const src = address(family, p, family === 4 ? 12 : 8)
  const dst = address(family, p, family === 4 ? 16 : 24)
  const protocol = L4_NAMES[proto] ?? String(proto)
  if (!WITH_PORTS.has(proto) || fragmentTail || l4 + 4 > p.length) return { family, src, dst, protocol }
  return { family, src, dst, protocol, srcPort: (p[l4]! << 8) | p[l4 + 1]!, dstPort: (p[l4 + 2]! << 8) | p[l4 + 3]! }
}
