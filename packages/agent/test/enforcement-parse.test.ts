/**
 * The pure parts of enforcement, without a kernel: conntrack lines and which entries a cut
 * deletes, nft's error output and counters, NFLOG records out of a pcap stream, packet headers,
 * the flow log's merging and attribution, and the errors when a tool is missing.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatIp, parseIp, type IpAddress } from '@flatnet/core'
import type { EnforcedVerdict, NftRuleInfo } from '@flatnet/policy'
import {
  ConntrackCommandError,
  countersFromJson,
  createConntrackCutter,
  createFlowLogReader,
  createNftTable,
  FlowLog,
  FlowLogReaderError,
  NftCommandError,
  parseConntrackLine,
  parseNftProblems,
  PcapFormatError,
  PcapNflogParser,
  planConntrackCut,
  summarizePacket,
  type ConntrackEntry,
  type NflogRecord,
} from '../src/enforcement/index.js'

const ip = (t: string): IpAddress => parseIp(t)!

describe('conntrack entries', () => {
  it('reads the original and reply tuples of TCP, UDP and IPv6 entries, and skips the rest', () => {
    const tcp = parseConntrackLine(
      'ipv4     2 tcp      6 431999 ESTABLISHED src=10.0.0.1 dst=10.96.0.10 sport=40000 dport=80 src=10.0.0.7 dst=10.0.0.1 sport=8080 dport=40000 [ASSURED] mark=0 use=1',
    )
    assert.deepEqual(tcp, {
      family: 4,
      protocol: 'TCP',
      original: { src: ip('10.0.0.1'), dst: ip('10.96.0.10'), sport: 40000, dport: 80 },
      reply: { src: ip('10.0.0.7'), dst: ip('10.0.0.1'), sport: 8080, dport: 40000 },
    })
    const udp6 = parseConntrackLine('ipv6     10 udp      17 25 src=fd00::1 dst=fd00::2 sport=5353 dport=53 [UNREPLIED] src=fd00::2 dst=fd00::1 sport=53 dport=5353 mark=0 use=1')
    assert.equal(udp6?.family, 6)
    assert.equal(udp6?.protocol, 'UDP')
    assert.deepEqual(udp6?.reply.src, ip('fd00::2'))
    assert.equal(parseConntrackLine('ipv4     2 icmp     1 29 src=10.0.0.1 dst=10.0.0.2 type=8 code=0 id=1 src=10.0.0.2 dst=10.0.0.1 type=0 code=0 id=1 mark=0 use=1'), undefined)
    assert.equal(parseConntrackLine('conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.'), undefined)
  })

  const entry = (src: string, dst: string, sport: number, dport: number): ConntrackEntry => ({
    family: 4,
    protocol: 'TCP',
    original: { src: ip(src), dst: ip(dst), sport, dport },
    reply: { src: ip(dst), dst: ip(src), sport: dport, dport: sport },
  })
  const verdict = (allowed: boolean): EnforcedVerdict => ({ allowed })

  it('deletes a whole group with one call when all of it is denied, else entry by entry', () => {
    const entries = [entry('10.0.0.1', '10.0.0.2', 1000, 80), entry('10.0.0.1', '10.0.0.2', 1001, 80), entry('10.0.0.3', '10.0.0.2', 1000, 80), entry('10.0.0.3', '10.0.0.2', 1001, 80), entry('10.0.0.4', '10.0.0.2', 1, 22)]
    // 10.0.0.3 from port 1001 stays allowed (as a failsafe source port would), 10.0.0.4 is allowed.
    const plan = planConntrackCut(entries, (e) => {
      const src = formatIp(e.original.src)
      return verdict(!(src === '10.0.0.1' || (src === '10.0.0.3' && e.original.sport === 1000)))
    })
    assert.equal(plan.denied.length, 3)
    assert.deepEqual(plan.deletions, [
      ['-f', 'ipv4', '-p', 'tcp', '-s', '10.0.0.1', '-d', '10.0.0.2', '--dport', '80'],
      ['-f', 'ipv4', '-p', 'tcp', '-s', '10.0.0.3', '-d', '10.0.0.2', '--sport', '1000', '--dport', '80'],
    ])
  })
})

describe('nft output', () => {
  it("names the ruleset line nft complains about", () => {
    const text = 'table inet flatnet {}\ndelete table inet flatnet\ntable inet flatnet {\n\tchain forward {\n\t\tjump nowhere\n\t}\n}\n'
    const problems = parseNftProblems('/dev/stdin:5:3-14: Error: Could not process rule: No such file or directory\n\t\tjump nowhere\n\t\t^^^^^^^^^^^^\n', text)
    assert.deepEqual(problems, [{ line: 5, message: 'Could not process rule: No such file or directory', text: '\t\tjump nowhere' }])
  })

  it('sums counters by the rule id in the log prefix, over every nft rule carrying it', () => {
    const rule = (prefix: string | undefined, packets: number): Record<string, unknown> => ({
      rule: { expr: [{ match: {} }, { counter: { packets, bytes: packets * 60 } }, ...(prefix ? [{ log: { prefix, group: 17 } }] : []), { accept: null }] },
    })
    const counters = countersFromJson({ nftables: [{ metainfo: {} }, rule('n1:0abc123:7', 2), rule('n1:0abc123:7', 3), rule('n1:0abc123:8', 1), rule(undefined, 99)] })
    assert.equal(counters.rev, '0abc123')
    assert.deepEqual([...counters.rules], [
      ['7', { packets: 5, bytes: 300 }],
      ['8', { packets: 1, bytes: 60 }],
    ])
    assert.throws(() => countersFromJson({}), NftCommandError)
  })
})

// ---------------------------------------------------------------------------------------------
// Synthetic NFLOG captures, laid out as tcpdump writes them on a little-endian host.

function tlv(type: number, value: Uint8Array): Buffer {
  const len = 4 + value.length
  const b = Buffer.alloc((len + 3) & ~3)
  b.writeUInt16LE(len, 0)
  b.writeUInt16LE(type, 2)
  Buffer.from(value).copy(b, 4)
  return b
}

function pcapHeader(): Buffer {
  const h = Buffer.alloc(24)
  h.writeUInt32LE(0xa1b2c3d4, 0)
  h.writeUInt16LE(2, 4)
  h.writeUInt16LE(4, 6)
  h.writeUInt32LE(262144, 16)
  h.writeUInt32LE(239, 20)
  return h
}

function pcapRecord(timeMs: number, group: number, prefix: string, payload: Uint8Array): Buffer {
  const nflog = Buffer.concat([Buffer.from([2, 0, group >> 8, group & 255]), tlv(1, Buffer.from([8, 0, 1, 0])), tlv(10, Buffer.from(`${prefix}\0`)), tlv(9, payload)])
  const h = Buffer.alloc(16)
  h.writeUInt32LE(Math.floor(timeMs / 1000), 0)
  h.writeUInt32LE((timeMs % 1000) * 1000, 4)
  h.writeUInt32LE(nflog.length, 8)
  h.writeUInt32LE(nflog.length, 12)
  return Buffer.concat([h, nflog])
}

function ipv4(src: string, dst: string, proto: number, sport: number, dport: number): Uint8Array {
  const p = Buffer.alloc(40)
  p[0] = 0x45
  p[9] = proto
  Buffer.from(src.split('.').map(Number)).copy(p, 12)
  Buffer.from(dst.split('.').map(Number)).copy(p, 16)
  p.writeUInt16BE(sport, 20)
  p.writeUInt16BE(dport, 22)
  return p
}

function ipv6WithHopByHop(src: IpAddress, dst: IpAddress, sport: number, dport: number): Uint8Array {
  const p = Buffer.alloc(40 + 8 + 8)
  p[0] = 0x60
  p[6] = 0 // hop-by-hop options first
  src.words.forEach((w, i) => p.writeUInt32BE(w, 8 + 4 * i))
  dst.words.forEach((w, i) => p.writeUInt32BE(w, 24 + 4 * i))
  p[40] = 17 // then UDP
  p[41] = 0
  p.writeUInt16BE(sport, 48)
  p.writeUInt16BE(dport, 50)
  return p
}

describe('NFLOG records from pcap', () => {
  it('reads prefix, group, time and packet, whatever the chunking', () => {
    const stream = Buffer.concat([pcapHeader(), pcapRecord(1_700_000_000_123, 17, 'n1:0abc123:5', ipv4('10.0.0.1', '10.0.0.2', 6, 40000, 80)), pcapRecord(1_700_000_000_124, 17, 'n1:0abc123:6', ipv4('10.0.0.3', '10.0.0.2', 17, 5000, 53))])
    for (const size of [1, 7, 64, stream.length]) {
      const parser = new PcapNflogParser()
      const records: NflogRecord[] = []
      for (let i = 0; i < stream.length; i += size) records.push(...parser.push(stream.subarray(i, i + size)))
      assert.deepEqual(
        records.map((r) => [r.time, r.group, r.prefix, summarizePacket(r.payload!)]),
        [
          [1_700_000_000_123, 17, 'n1:0abc123:5', { family: 4, src: '10.0.0.1', dst: '10.0.0.2', protocol: 'TCP', srcPort: 40000, dstPort: 80 }],
          [1_700_000_000_124, 17, 'n1:0abc123:6', { family: 4, src: '10.0.0.3', dst: '10.0.0.2', protocol: 'UDP', srcPort: 5000, dstPort: 53 }],
        ],
        `chunks of ${size} bytes`,
      )
    }
  })

  it('refuses a stream that is not an NFLOG capture', () => {
    const ethernet = pcapHeader()
    ethernet.writeUInt32LE(1, 20)
    assert.throws(() => new PcapNflogParser().push(ethernet), PcapFormatError)
    assert.throws(() => new PcapNflogParser().push(Buffer.alloc(24, 7)), PcapFormatError)
  })

  it('finds the ports behind IPv6 extension headers, and none in later IPv4 fragments or ICMP', () => {
    assert.deepEqual(summarizePacket(ipv6WithHopByHop(ip('fd00::1'), ip('fd00::2'), 1234, 53)), { family: 6, src: 'fd00::1', dst: 'fd00::2', protocol: 'UDP', srcPort: 1234, dstPort: 53 })
    const fragment = ipv4('10.0.0.1', '10.0.0.2', 17, 1, 2)
    fragment[7] = 10 // fragment offset 80 bytes
    assert.deepEqual(summarizePacket(fragment), { family: 4, src: '10.0.0.1', dst: '10.0.0.2', protocol: 'UDP' })
    assert.equal(summarizePacket(ipv4('10.0.0.1', '10.0.0.2', 1, 0, 0))?.protocol, 'ICMP')
    assert.equal(summarizePacket(new Uint8Array([0x45, 0])), undefined)
  })
})

describe('flow log', () => {
  const info = (id: string, fields: Partial<NftRuleInfo>): NftRuleInfo => ({ id, tier: 'Default', action: 'allow', description: `rule ${id}`, ...fields })
  const rules: Record<string, NftRuleInfo> = {
    '1': info('1', { tier: 'Default', action: 'allow', direction: 'egress', endpoint: 'x/a' }),
    '2': info('2', { tier: 'NetworkPolicy', action: 'allow', direction: 'ingress', endpoint: 'x/b', policy: 'x/allow', rule: 0 }),
    '3': info('3', { tier: 'Admin', action: 'deny', direction: 'ingress', endpoint: 'x/b', policy: 'guard', rule: 1 }),
    '4': info('4', { tier: 'Admin', action: 'pass', direction: 'ingress', endpoint: 'x/b', policy: 'guard', rule: 0 }),
  }
  const rec = (time: number, id: string, sport = 40000, rev = '0abc123'): NflogRecord => ({
    time,
    group: 17,
    prefix: `n1:${rev}:${id}`,
    payload: ipv4('10.0.0.1', '10.0.0.2', 6, sport, 80),
  })

  it("merges a packet's egress and ingress records into one flow, decided as evaluate decides", () => {
    const log = new FlowLog({ tag: 'n1' })
    log.remember({ rev: '0abc123', rules })
    log.add(rec(1000, '1'))
    log.add(rec(1000, '2'))
    log.add(rec(2000, '1', 40001))
    log.add(rec(2000, '4', 40001))
    log.add(rec(2000, '3', 40001))
    const [denied, allowed] = log.recent()
    assert.deepEqual([allowed?.verdict, allowed?.egress?.ruleId, allowed?.ingress?.ruleId, allowed?.decidedBy.policy], ['allow', '1', '2', 'x/allow'])
    assert.deepEqual([denied?.verdict, denied?.decidedBy.tier, denied?.decidedBy.policy, denied?.decidedBy.rule, denied?.srcPort], ['deny', 'Admin', 'guard', 1, 40001])
    assert.equal(log.recent({ verdict: 'deny' }).length, 1)
  })

  it('counts repeats of a flow instead of listing them, and keeps only the newest flows', () => {
    const log = new FlowLog({ tag: 'n1', capacity: 2 })
    log.remember({ rev: '0abc123', rules })
    for (const t of [0, 1000, 3000]) {
      log.add(rec(t, '1'))
      log.add(rec(t, '3'))
    }
    assert.equal(log.recent().length, 1)
    assert.equal(log.recent()[0]?.count, 3)
    log.add(rec(4000, '1', 1))
    log.add(rec(4000, '1', 2))
    assert.deepEqual(
      log.recent().map((f) => f.srcPort),
      [2, 1],
    )
  })

  it('attributes records of an earlier ruleset and ignores those of unknown ones or other tags', () => {
    const log = new FlowLog({ tag: 'n1', rulesetsKept: 2 })
    log.remember({ rev: 'old0000', rules })
    log.remember({ rev: 'mid0000', rules: {} })
    assert.equal(log.add(rec(0, '1', 1, 'old0000')), true)
    log.remember({ rev: 'new0000', rules: {} })
    assert.equal(log.add(rec(0, '1', 2, 'old0000')), false, 'forgotten after two newer rulesets')
    assert.equal(log.add({ ...rec(0, '1', 3, 'old0000'), prefix: 'other:old0000:1' }), false)
    assert.deepEqual(log.stats(), { recorded: 1, unattributed: 2, unparsable: 0 })
  })
})

describe('missing tools', () => {
  it('says which tool is missing and which Debian package has it', async () => {
    await assert.rejects(createNftTable({ nftPath: '/nonexistent/nft' }).counters(), (err: unknown) => err instanceof NftCommandError && err.code === 'ERR_NFT_COMMAND' && /nftables/.test(err.message))
    await assert.rejects(createConntrackCutter({ conntrackPath: '/nonexistent/conntrack' }).list(), (err: unknown) => err instanceof ConntrackCommandError && err.code === 'ERR_CONNTRACK_COMMAND' && /package conntrack/.test(err.message))
    const reader = createFlowLogReader(new FlowLog(), { group: 17, tcpdumpPath: '/nonexistent/tcpdump' })
    await assert.rejects(reader.start(), (err: unknown) => err instanceof FlowLogReaderError && err.code === 'ERR_FLOW_LOG_READER' && /not installed/.test(err.message))
    assert.equal(reader.running, false)
  })
})
