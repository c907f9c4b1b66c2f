/**
 * `flatnet policy status`: which store revision each node enforces, how far behind the store it
 * is, and how long the current revision took to reach it.
 *
 * Agents report `NodePolicyStatus` records (from @flatnet/agent/client) into the store's status
 * hash, keyed by node name; a report's `peerId` (or a key that is a PeerId) links it to the
 * node's Node record. The store keeps no write times, so when the current revision was
 * written is estimated as the earliest moment any node is known to have had it (its
 * `observedAt`, else its `appliedAt`): lag and latency are measured from there, on the nodes'
 * clocks.
 */
import type { Command } from 'commander'
import { readNodePolicyStatus, type NodePolicyStatus } from '@flatnet/agent/client'
import type { FlatnetStore } from '@flatnet/store'
import { outputOption } from './cli-options.js'
import { formatData, paint, table, type Out, type OutputFormat } from './output.js'
import { withConnectionOptions, withStore, type ConnectionOptions } from './store-connection.js'

export type NodePolicyState = 'current' | 'behind' | 'failing' | 'ahead' | 'no-report' | 'invalid-report'

/** One row of `policy status`; also its JSON shape (fields are only ever added). */
export interface NodePolicyRow {
  /** The status key (the node's name), or the PeerId of an admitted node that never reported. */
  readonly node: string
  readonly hostname: string | null
  readonly peerId: string | null
  /** Whether the node's Node record is in the store. */
  readonly registered: boolean
  readonly state: NodePolicyState
  /** The revision the node enforces. */
  readonly revision: number | null
  /** Store revision minus the node's: revisions not yet enforced (negative: the store lost writes). */
  readonly behind: number | null
  /** 0 when current; when behind, seconds since the current revision was first seen by any node; null when unknown. */
  readonly lagSeconds: number | null
  /** For a current node: seconds from the current revision's first sighting to this node's apply. */
  readonly latencySeconds: number | null
  readonly appliedAt: string | null
  readonly observedRevision: number | null
  readonly reportedAt: string | null
  readonly error: string | null
  readonly version: string | null
  /** Why the report could not be read (state invalid-report). */
  readonly problem: string | null
}

export interface PolicyStatusView {
  /** The store's current revision. */
  readonly revision: number
  /** The estimate of when the current revision was written (earliest sighting by a node); null if no node has it. */
  readonly revisionSeenAt: string | null
  readonly nodes: readonly NodePolicyRow[]
}

/** What `policy status` needs of a Node object: read leniently, without verifying signatures. */
export interface NodeSummary {
  readonly peerId: string
  readonly hostname?: string | undefined
  readonly admitted: boolean
}

const seconds = (fromMs: number, toMs: number): number => Math.max(0, Math.round(toMs - fromMs) / 1000)

/** When the current revision was first known to exist: the earliest sighting in any report. */
function firstSighting(current: number, reports: readonly NodePolicyStatus[]): number | undefined {
  let earliest: number | undefined
  const consider = (iso: string | undefined): void => {
    if (iso === undefined) return
    const t = Date.parse(iso)
    if (earliest === undefined || t < earliest) earliest = t
  }
  for (const r of reports) {
    if ((r.observedRevision ?? r.revision) >= current) consider(r.observedAt)
    if (r.revision >= current) consider(r.appliedAt)
  }
  return earliest
}

/** Pure: the view from the store's revision, the raw reports, the registered nodes and the time now. */
export function policyStatusView(current: number, rawReports: ReadonlyMap<string, unknown>, nodes: readonly NodeSummary[], nowMs: number): PolicyStatusView {
  const parsed = new Map([...rawReports].map(([node, raw]) => [node, readNodePolicyStatus(raw)]))
  const valid = [...parsed.values()].flatMap((p) => (p.status ? [p.status] : []))
  const seenAt = firstSighting(current, valid)
  const byPeer = new Map(nodes.map((n) => [n.peerId, n]))
  const rows: NodePolicyRow[] = []
  const empty = { revision: null, behind: null, lagSeconds: null, latencySeconds: null, appliedAt: null, observedRevision: null, reportedAt: null, error: null, version: null, problem: null }
  const reported = new Set<string>()
  for (const [node, p] of parsed) {
    const peerId = p.status?.peerId ?? (byPeer.has(node) ? node : undefined)
    const n = peerId === undefined ? undefined : byPeer.get(peerId)
    if (peerId !== undefined) reported.add(peerId)
    const registered = n !== undefined
    if (!p.status) {
      rows.push({ ...empty, node, hostname: n?.hostname ?? null, peerId: peerId ?? null, registered, state: 'invalid-report', problem: p.problem })
      continue
    }
    const s = p.status
    const behind = current - s.revision
    const state: NodePolicyState = behind < 0 ? 'ahead' : behind === 0 ? 'current' : s.error ? 'failing' : 'behind'
    rows.push({
      node,
      hostname: s.hostname ?? n?.hostname ?? null,
      peerId: peerId ?? null,
      registered,
      state,
      revision: s.revision,
      behind,
      lagSeconds: behind <= 0 ? 0 : seenAt === undefined ? null : seconds(seenAt, nowMs),
      latencySeconds: behind === 0 && seenAt !== undefined ? seconds(seenAt, Date.parse(s.appliedAt)) : null,
      appliedAt: s.appliedAt,
      observedRevision: s.observedRevision ?? null,
      reportedAt: s.reportedAt ?? null,
      error: s.error ?? null,
      version: s.version ?? null,
      problem: null,
    })
  }
  // Admitted nodes that never reported enforce nothing flatnet knows of: show them too.
  for (const n of nodes) {
    if (n.admitted && !reported.has(n.peerId)) rows.push({ ...empty, node: n.peerId, hostname: n.hostname ?? null, peerId: n.peerId, registered: true, state: 'no-report' })
  }
  rows.sort((a, b) => (a.hostname ?? a.node).localeCompare(b.hostname ?? b.node) || a.node.localeCompare(b.node))
  return { revision: current, revisionSeenAt: seenAt === undefined ? null : new Date(seenAt).toISOString(), nodes: rows }
}

/** Node objects as far as this command needs them; a malformed one still names its PeerId. */
function summariseNode(peerId: string, value: unknown): NodeSummary {
  const v = (value ?? {}) as { admitted?: unknown; record?: { hostname?: unknown } }
  const hostname = typeof v.record?.hostname === 'string' ? v.record.hostname : undefined
  return { peerId, hostname, admitted: v.admitted === true }
}

/**
 * The raw reports, each parsed on its own: `store.listStatus()` would fail on the first report
 * that is not JSON, and one broken report must not hide the others.
 */
async function readReports(store: FlatnetStore): Promise<Map<string, unknown>> {
  const all = await store.call('status', () => store.client.hgetall(store.keys.status))
  const reports = new Map<string, unknown>()
  for (const [node, text] of Object.entries(all)) {
    try {
      reports.set(node, JSON.parse(text))
    } catch {
      reports.set(node, text)
    }
  }
  return reports
}

export function formatDuration(s: number): string {
  if (s < 10) return `${s.toFixed(1)}s`
  if (s < 60) return `${Math.round(s)}s`
  const t = Math.round(s)
  if (t < 3600) return `${Math.floor(t / 60)}m${t % 60 ? `${t % 60}s` : ''}`
  if (t < 86400) return `${Math.floor(t / 3600)}h${Math.floor((t % 3600) / 60) ? `${Math.floor((t % 3600) / 60)}m` : ''}`
  return `${Math.floor(t / 86400)}d${Math.floor((t % 86400) / 3600) ? `${Math.floor((t % 86400) / 3600)}h` : ''}`
}

/** PeerIds are long; node names are shown whole. */
function shortNode(name: string): string {
  return /^(12D3KooW|Qm)[1-9A-HJ-NP-Za-km-z]{30,}$/.test(name) ? `${name.slice(0, 8)}…${name.slice(-6)}` : name
}

function stateText(out: Out, r: NodePolicyRow): string {
  switch (r.state) {
    case 'current':
      return paint(out, 'green', 'current')
    case 'behind':
      return paint(out, 'yellow', 'behind')
    case 'failing':
      return paint(out, 'red', `failing: ${r.error}`)
    case 'ahead':
      return paint(out, 'red', 'ahead of the store (writes lost in a failover?)')
    case 'no-report':
      return paint(out, 'dim', 'no report')
    case 'invalid-report':
      return paint(out, 'red', `invalid report: ${r.problem}`)
  }
}

export function renderPolicyStatus(out: Out, view: PolicyStatusView, nowMs: number, wide: boolean): string {
  const dash = '-'
  const rows = view.nodes.map((r) => [
    wide ? r.node : shortNode(r.node),
    r.hostname ?? dash,
    r.revision === null ? dash : String(r.revision),
    r.behind === null ? dash : String(r.behind),
    r.lagSeconds === null ? (r.behind !== null && r.behind > 0 ? '?' : dash) : formatDuration(r.lagSeconds),
    r.latencySeconds === null ? dash : formatDuration(r.latencySeconds),
    r.appliedAt === null ? dash : `${formatDuration(seconds(Date.parse(r.appliedAt), nowMs))} ago`,
    stateText(out, r) + (r.registered ? '' : paint(out, 'dim', ' (not a registered node)')),
  ])
  return table(rows, ['NODE', 'HOSTNAME', 'REVISION', 'BEHIND', 'LAG', 'LATENCY', 'APPLIED', 'STATE'])
}

/** Adds `status` to the `flatnet policy` command; returns it. */
export function addPolicyStatusCommand(policy: Command, out: Out): Command {
  withConnectionOptions(
    policy
      .command('status')
      .description('which policy revision every node enforces, and how far behind the store each is')
      .option('--wide', 'full PeerIds')
      .addOption(outputOption()),
  ).action(async (opts: ConnectionOptions & { output: OutputFormat; wide?: boolean }) => {
    const now = Date.now()
    const view = await withStore(opts, async (store) => {
      const revision = await store.revision()
      const reports = await readReports(store)
      const nodes = (await store.list('Node')).map((o) => summariseNode(o.key, o.value))
      return policyStatusView(revision, reports, nodes, now)
    })
    if (opts.output !== 'table') return void out.write(formatData(view, opts.output))
    const seen = view.revisionSeenAt ? paint(out, 'dim', ` (first applied or seen by a node at ${view.revisionSeenAt})`) : ''
    out.write(`store revision ${view.revision}${seen}`)
    if (view.nodes.length === 0) return void out.error('no node has reported a policy revision, and no node is admitted')
    out.write(renderPolicyStatus(out, view, now, opts.wide === true))
  })
  return policy
}
