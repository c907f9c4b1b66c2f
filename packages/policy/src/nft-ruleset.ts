/**
 * The nftables ruleset of a node: the plan of `nft-plan.ts` written out as one `nft -f` input
 * that replaces flatnet's `inet` table in a single transaction:
 *
 *   table inet flatnet {}        create it if missing, so that the delete cannot fail
 *   delete table inet flatnet    drop whatever was there (an older ruleset, leftovers)
 *   table inet flatnet { ... }   the whole new table
 *
 * `nft -f` commits a file as one netlink batch, so packets see either the old table or the
 * new one, never a mix and never none.
 *
 * Every rule that decides carries a counter and `log group <g> prefix "<tag>:<rev>:<id>"`;
 * `rules[id]` says what the id stands for (tier, policy, rule, direction, endpoint). `rev` is
 * a hash of the ruleset, so a log record still in flight after the next apply is not read
 * against the wrong rule list.
 *
 * Pure: no I/O. The same snapshot content and input give the same text, byte for byte.
 */
import { formatIp, type IpFamily } from '@flatnet/core'
import {
  addressFromValue,
  familyBits,
  planNftRuleset,
  type AddressRange,
  type NftPlan,
  type NftRuleInfo,
  type NftRulesetInput,
  type PlanMatch,
  type PlanRule,
  type PlanVerdict,
  type PortRange,
} from './nft-plan.js'
import type { PolicySnapshot } from './snapshot.js'

export interface NftRuleset {
  readonly table: string
  /** One complete `nft -f` input. */
  readonly text: string
  /** Hash of the ruleset, part of every log prefix. */
  readonly rev: string
  /** Rule id -> what it stands for. */
  readonly rules: Readonly<Record<string, NftRuleInfo>>
  readonly logPrefixTag: string
  readonly logGroup: number
  /** Local endpoints the snapshot does not hold (yet): nothing is enforced for them. */
  readonly skipped: readonly string[]
}

/** How much of each logged packet goes to the log reader: enough for the IP and port headers. */
export const NFT_LOG_SNAPLEN = 128

const REV_MARK = '\u0000rev\u0000'

/** `<tag>:<rev>:<id>`: at most 32 + 1 + 7 + 1 + 10 characters, well under nft's 127. */
export function nftLogPrefix(tag: string, rev: string, id: string): string {
  return `${tag}:${rev}:${id}`
}

/** The parts of a log prefix written by `nftLogPrefix`, or undefined for any other text. */
export function parseNftLogPrefix(prefix: string): { tag: string; rev: string; id: string } | undefined {
  const m = /^([A-Za-z0-9_.-]{1,32}):([0-9a-z]{1,13}):([0-9]{1,10})$/.exec(prefix.trim())
  return m ? { tag: m[1]!, rev: m[2]!, id: m[3]! } : undefined
}

/** Renders the table for `snapshot` as seen from the local endpoints in `input`. */
export function renderNftRuleset(snapshot: PolicySnapshot, input: NftRulesetInput): NftRuleset {
  return renderNftPlan(planNftRuleset(snapshot, input))
}

export function renderNftPlan(plan: NftPlan): NftRuleset {
  const body = writeTable(plan)
  const rev = fnv1a(body).toString(36).padStart(7, '0')
  return {
    table: plan.table,
    text: body.split(REV_MARK).join(rev),
    rev,
    rules: plan.rules,
    logPrefixTag: plan.logPrefixTag,
    logGroup: plan.logGroup,
    skipped: plan.skipped,
  }
}

/** FNV-1a, 32 bits, over UTF-16 code units: a stable short tag, not a security measure. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

// ---------------------------------------------------------------------------------------------

const PROTOCOL_NAMES = { TCP: 'tcp', UDP: 'udp', SCTP: 'sctp' } as const
const ADDRESS_TYPE = { 4: 'ipv4_addr', 6: 'ipv6_addr' } as const
const IP_KEYWORD = { 4: 'ip', 6: 'ip6' } as const
const NFPROTO = { 4: 'ipv4', 6: 'ipv6' } as const
const ELEMENTS_PER_LINE = 6

/** Comments are for people reading `nft list`; anything that could end the string is replaced. */
function comment(text: string): string {
  return `"${text
    .slice(0, 120)
    .split(REV_MARK)
    .map((part) => part.replace(/[^\x20-\x7e]|["\\]/g, '_'))
    .join(REV_MARK)}"`
}

function formatValue(family: IpFamily, v: bigint): string {
  return formatIp(addressFromValue(family, v))
}

function formatRange(family: IpFamily, r: AddressRange): string {
  if (r.lo === r.hi) return formatValue(family, r.lo)
  const size = r.hi - r.lo + 1n
  if ((size & (size - 1n)) === 0n && r.lo % size === 0n) return `${formatValue(family, r.lo)}/${familyBits(family) - (size.toString(2).length - 1)}`
  return `${formatValue(family, r.lo)}-${formatValue(family, r.hi)}`
}

function formatPort(p: PortRange): string {
  return `${PROTOCOL_NAMES[p.protocol]} . ${p.from === p.to ? p.from : `${p.from}-${p.to}`}`
}

function elementLines(elements: readonly string[], indent: string): string[] {
  if (elements.length === 0) return []
  const lines: string[] = []
  for (let i = 0; i < elements.length; i += ELEMENTS_PER_LINE) lines.push(elements.slice(i, i + ELEMENTS_PER_LINE).join(', '))
  if (lines.length === 1) return [`${indent}elements = { ${lines[0]} }`]
  return [`${indent}elements = {`, ...lines.map((l, i) => `${indent}\t${l}${i < lines.length - 1 ? ',' : ''}`), `${indent}}`]
}

function matchText(m: PlanMatch): string {
  const parts: string[] = []
  const ip = m.family === undefined ? undefined : IP_KEYWORD[m.family]
  let familyShown = false
  if (m.inInterface !== undefined) parts.push(`iifname "${m.inInterface}"`)
  if (m.sourceNotIn !== undefined && m.family !== undefined) {
    parts.push(`${ip} saddr != { ${m.sourceNotIn.map((r) => formatRange(m.family!, r)).join(', ')} }`)
    familyShown = true
  }
  if (m.peer !== undefined) {
    parts.push(`${ip} ${m.peer.field} @${m.peer.set}`)
    familyShown = true
  }
  if (m.destinationPorts !== undefined) {
    parts.push(`${ip} daddr . meta l4proto . th dport @${m.destinationPorts}`)
    familyShown = true
  } else if (m.ports !== undefined) parts.push(`meta l4proto . th dport { ${m.ports.map(formatPort).join(', ')} }`)
  if (m.sourcePorts !== undefined) parts.push(`meta l4proto . th sport { ${m.sourcePorts.map(formatPort).join(', ')} }`)
  if (m.family !== undefined && !familyShown) parts.unshift(`meta nfproto ${NFPROTO[m.family]}`)
  return parts.join(' ')
}

function verdictText(v: PlanVerdict): string {
  return v.kind === 'goto' ? `goto ${v.chain}` : v.kind
}

function logText(plan: NftPlan, id: string): string {
  return `log prefix "${nftLogPrefix(plan.logPrefixTag, REV_MARK, id)}" group ${plan.logGroup} snaplen ${NFT_LOG_SNAPLEN}`
}

function ruleText(plan: NftPlan, r: PlanRule): string {
  const match = matchText(r.match)
  const account = r.id === undefined ? '' : `counter ${logText(plan, r.id)} `
  return `${match === '' ? '' : `${match} `}${account}${verdictText(r.verdict)}`
}

function writeTable(plan: NftPlan): string {
  const t = plan.table
  const out: string[] = [
    `# flatnet enforcement, rev ${REV_MARK}: replaces table inet ${t} in one transaction (nft -f).`,
    `table inet ${t} {}`,
    `delete table inet ${t}`,
    `table inet ${t} {`,
    `\tcomment ${comment(`flatnet policy enforcement, rev ${REV_MARK}; generated, do not edit`)}`,
  ]
  const block = (head: string, lines: readonly string[]): void => {
    out.push('', `\t${head} {`, ...lines.map((l) => `\t\t${l}`), '\t}')
  }

  for (const s of plan.addressSets) {
    block(`set ${s.name}`, [`type ${ADDRESS_TYPE[s.family]}`, 'flags interval', `comment ${comment(s.comment)}`, ...elementLines(s.ranges.map((r) => formatRange(s.family, r)), '')])
  }
  for (const s of plan.destinationPortSets) {
    const elements = s.elements.map((e) => `${formatValue(s.family, e.address)} . ${PROTOCOL_NAMES[e.protocol]} . ${e.port}`)
    block(`set ${s.name}`, [`type ${ADDRESS_TYPE[s.family]} . inet_proto . inet_service`, `comment ${comment(s.comment)}`, ...elementLines(elements, '')])
  }
  for (const direction of ['egress', 'ingress'] as const) {
    for (const family of [4, 6] as const) {
      const entries = plan.dispatch[direction][family].map((e) => `${formatValue(family, e.address)} : jump ${e.chain}`)
      block(`map ${direction}-v${family}`, [
        `type ${ADDRESS_TYPE[family]} : verdict`,
        `comment ${comment(`local endpoint addresses -> their ${direction} chain`)}`,
        ...elementLines(entries, ''),
      ])
    }
  }

  const invalid = `ct state invalid counter ${logText(plan, plan.invalidId)} drop`
  const established = 'ct state established,related counter accept'
  // Neighbour discovery must pass whatever a host endpoint's policies say, or IPv6 stops working.
  const nd = 'icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } counter accept'
  block('chain prerouting', [
    'type filter hook prerouting priority raw; policy accept;',
    `comment ${comment('anti-spoofing: runs before conntrack, so spoofed packets leave no entry')}`,
    ...plan.antiSpoofing.map((r) => ruleText(plan, r)),
  ])
  block('chain forward', ['type filter hook forward priority filter; policy accept;', established, invalid, 'jump dispatch'])
  block('chain input', ['type filter hook input priority filter; policy accept;', 'iifname "lo" counter accept', nd, established, invalid, 'jump dispatch'])
  block('chain output', ['type filter hook output priority filter; policy accept;', 'oifname "lo" counter accept', nd, established, invalid, 'jump dispatch'])
  block('chain dispatch', [
    `comment ${comment('egress of a local source first, then ingress of a local destination')}`,
    'ip saddr vmap @egress-v4',
    'ip6 saddr vmap @egress-v6',
    'ip daddr vmap @ingress-v4',
    'ip6 daddr vmap @ingress-v6',
  ])
  for (const c of plan.chains) block(`chain ${c.name}`, [`comment ${comment(c.comment)}`, ...c.rules.map((r) => ruleText(plan, r))])
  out.push('}', '')
  return out.join('\n')
}
