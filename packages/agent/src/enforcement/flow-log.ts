/**
 * Recent flows and what decided them: the data behind `flatnet flows`.
 *
 * Every deciding rule of the table logs the first packet of a connection to an NFLOG group
 * with the prefix `<tag>:<rev>:<id>` (see `renderNftRuleset`). The reader (nflog-reader.ts)
 * passes each record here; the flow log looks the rule up in the rule list of that rev and
 * keeps a bounded ring of flows:
 *
 *   - a packet between two local endpoints is logged twice, by the source's egress rule
 *     (`return`) and by the destination's ingress rule: the two records become one flow;
 *   - repeats of a flow (a SYN retransmitted into a drop, UDP before an answer) raise `count`;
 *   - the rule lists of the last few rulesets are kept, so a record still in flight after an
 *     apply is attributed to the ruleset that logged it.
 *
 * Pure bookkeeping: no I/O here.
 */
import type { Direction, NftRuleInfo, NftRuleset } from '@flatnet/policy'
import { parseNftLogPrefix } from '@flatnet/policy'
import { summarizePacket, type NflogRecord, type PacketSummary } from './nflog-parse.js'

/** What decided one direction of a flow. */
export interface FlowDecision extends Pick<NftRuleInfo, 'tier' | 'direction' | 'endpoint' | 'policyKind' | 'policy' | 'rule' | 'ruleName' | 'isolatedBy' | 'description'> {
  readonly ruleId: string
  readonly rev: string
  /** A pass is never a decision: the flow goes on to the next tier. */
  readonly action: 'allow' | 'deny'
}

export interface FlowRecord extends PacketSummary {
  /** ms since the epoch. */
  readonly firstSeen: number
  readonly lastSeen: number
  /** Packets logged for this flow: the first one, plus repeats before it was established or while it was dropped. */
  readonly count: number
  readonly verdict: 'allow' | 'deny'
  /** The source's egress decision, when the source is local. */
  readonly egress?: FlowDecision | undefined
  /** The destination's ingress decision, when the destination is local (and egress let it out). */
  readonly ingress?: FlowDecision | undefined
  /** The denying decision, else the one a policy made (ingress first), as `PolicySnapshot.evaluate` picks it. */
  readonly decidedBy: FlowDecision
}

export interface FlowLogOptions {
  /** Flows kept (oldest dropped first). */
  readonly capacity?: number | undefined
  /** Rule lists of this many recent rulesets are kept for attribution. */
  readonly rulesetsKept?: number | undefined
  /** The egress and ingress records of one packet arrive within this time. */
  readonly mergeWindowMs?: number | undefined
  /** A record equal to a flow's last one within this time is a repeat, not a new flow. */
  readonly repeatWindowMs?: number | undefined
  /** Only records with this prefix tag are read (others belong to another table or agent). */
  readonly tag?: string | undefined
}

export const FLOW_LOG_DEFAULTS = Object.freeze({ capacity: 1000, rulesetsKept: 8, mergeWindowMs: 500, repeatWindowMs: 10_000 })

export interface FlowLogStats {
  readonly recorded: number
  /** Records whose prefix or rule was not known (another tag, or a ruleset already forgotten). */
  readonly unattributed: number
  /** Records whose packet could not be read. */
  readonly unparsable: number
}

interface MutableFlow {
  firstSeen: number
  lastSeen: number
  count: number
  family: 4 | 6
  src: string
  dst: string
  protocol: string
  srcPort?: number | undefined
  dstPort?: number | undefined
  egress?: FlowDecision | undefined
  ingress?: FlowDecision | undefined
  key: string
}

export class FlowLog {
  private readonly capacity: number
  private readonly rulesetsKept: number
  private readonly mergeWindowMs: number
  private readonly repeatWindowMs: number
  private readonly tag: string | undefined
  private readonly rulesets = new Map<string, Readonly<Record<string, NftRuleInfo>>>()
  private readonly ring: MutableFlow[] = []
  private readonly latest = new Map<string, MutableFlow>()
  private counts = { recorded: 0, unattributed: 0, unparsable: 0 }

  constructor(options: FlowLogOptions = {}) {
    this.capacity = Math.max(1, options.capacity ?? FLOW_LOG_DEFAULTS.capacity)
    this.rulesetsKept = Math.max(1, options.rulesetsKept ?? FLOW_LOG_DEFAULTS.rulesetsKept)
    this.mergeWindowMs = options.mergeWindowMs ?? FLOW_LOG_DEFAULTS.mergeWindowMs
    this.repeatWindowMs = options.repeatWindowMs ?? FLOW_LOG_DEFAULTS.repeatWindowMs
    this.tag = options.tag
  }

  /** Makes the rules of a ruleset known; call it for every ruleset applied. */
  remember(ruleset: Pick<NftRuleset, 'rev' | 'rules'>): void {
    this.rulesets.delete(ruleset.rev)
    this.rulesets.set(ruleset.rev, ruleset.rules)
    while (this.rulesets.size > this.rulesetsKept) this.rulesets.delete(this.rulesets.keys().next().value as string)
  }

  /** Takes one NFLOG record; false when it could not be attributed or read. */
  add(record: NflogRecord): boolean {
    const parsed = record.prefix === undefined ? undefined : parseNftLogPrefix(record.prefix)
    const info = parsed && (this.tag === undefined || parsed.tag === this.tag) ? this.rulesets.get(parsed.rev)?.[parsed.id] : undefined
    if (!parsed || !info) {
      this.counts.unattributed++
      return false
    }
    // A Pass only hands over to the next tier, whose rule logs the decision.
    if (info.action === 'pass') return true
    const packet = record.payload === undefined ? undefined : summarizePacket(record.payload)
    if (!packet) {
      this.counts.unparsable++
      return false
    }
    this.counts.recorded++
    const decision: FlowDecision = {
      ruleId: info.id,
      rev: parsed.rev,
      tier: info.tier,
      action: info.action,
      direction: info.direction,
      endpoint: info.endpoint,
      policyKind: info.policyKind,
      policy: info.policy,
      rule: info.rule,
      ruleName: info.ruleName,
      isolatedBy: info.isolatedBy,
      description: info.description,
    }
    const direction: Direction = info.direction ?? 'egress'
    const key = `${packet.protocol} ${packet.src} ${packet.srcPort ?? '-'} ${packet.dst} ${packet.dstPort ?? '-'}`
    const t = record.time
    const last = this.latest.get(key)
    if (last && direction === 'ingress' && last.egress?.action === 'allow' && last.ingress === undefined && t - last.lastSeen <= this.mergeWindowMs) {
      last.ingress = decision
      return true
    }
    if (last && t - last.lastSeen <= this.repeatWindowMs && sameAs(last[direction], decision)) {
      // The first record of a packet counts it; an ingress record after an egress one is the same packet.
      if (direction === 'egress' || last.egress === undefined) {
        last.count++
        last.lastSeen = t
      }
      return true
    }
    const flow: MutableFlow = { firstSeen: t, lastSeen: t, count: 1, ...packet, key, [direction]: decision }
    this.ring.push(flow)
    this.latest.set(key, flow)
    if (this.ring.length > this.capacity) {
      const gone = this.ring.shift()!
      if (this.latest.get(gone.key) === gone) this.latest.delete(gone.key)
    }
    return true
  }

  /** The most recent flows first; `verdict` filters, `limit` caps the count. */
  recent(filter: { limit?: number | undefined; verdict?: 'allow' | 'deny' | undefined } = {}): FlowRecord[] {
    const out: FlowRecord[] = []
    for (let i = this.ring.length - 1; i >= 0 && out.length < (filter.limit ?? Infinity); i--) {
      const f = finish(this.ring[i]!)
      if (filter.verdict === undefined || f.verdict === filter.verdict) out.push(f)
    }
    return out
  }

  stats(): FlowLogStats {
    return { ...this.counts }
  }
}

function sameAs(a: FlowDecision | undefined, b: FlowDecision): boolean {
  return a !== undefined && a.ruleId === b.ruleId && a.rev === b.rev
}

function finish(f: MutableFlow): FlowRecord {
  const { egress, ingress } = f
  let decidedBy: FlowDecision
  if (egress?.action === 'deny') decidedBy = egress
  else if (ingress?.action === 'deny') decidedBy = ingress
  else if (ingress && (ingress.tier !== 'Default' || !egress || egress.tier === 'Default')) decidedBy = ingress
  else decidedBy = (egress ?? ingress)!
  return Object.freeze({
    firstSeen: f.firstSeen,
    lastSeen: f.lastSeen,
    count: f.count,
    family: f.family,
    src: f.src,
    dst: f.dst,
    protocol: f.protocol,
    srcPort: f.srcPort,
    dstPort: f.dstPort,
    verdict: decidedBy.action === 'deny' ? 'deny' : 'allow',
    egress,
    ingress,
    decidedBy,
  })
}
