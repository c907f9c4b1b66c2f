/**
 * Enforcement as the agent drives it: one pass renders the table for a snapshot (pure),
 * applies it (the only kernel write besides conntrack deletions), then cuts the connections it
 * no longer allows. A ruleset equal to the one last applied is not applied again, so per-rule
 * counters keep counting while nothing changes.
 *
 * The object fits the agent's `Enforcer` (src/enforcer.ts): `start`, `apply(snapshot, local
 * endpoint records)`, `stop({ removeRules })`. Nothing is flushed at start: a table left by
 * an earlier run keeps enforcing until the first apply replaces it (fail-static).
 */
import type { EndpointRecord, NftLocalEndpoint, NftRuleset, NftRulesetInput, PolicySnapshot } from '@flatnet/policy'
import { renderNftRuleset } from '@flatnet/policy'
import type { ConntrackCutResult, ConntrackCutter } from './conntrack-cut.js'
import type { FlowLog } from './flow-log.js'
import type { FlowLogReader } from './nflog-reader.js'
import type { NftTable } from './nft-table.js'
import type { EnforcementHooks, EnforcementReport } from '../enforcer.js'

export interface NftEnforcerComponents {
  readonly table: NftTable
  readonly conntrack: ConntrackCutter
  /** Told every ruleset before it is applied, so that its log records can be attributed. */
  readonly flowLog?: FlowLog | undefined
  /** Started by `start()`, stopped by `stop()`. */
  readonly flowLogReader?: FlowLogReader | undefined
}

export interface NftEnforcerOptions {
  /** Everything of the ruleset input but the endpoints (failsafe, protected ports, log tag and group). */
  readonly ruleset?: Omit<NftRulesetInput, 'localEndpoints' | 'table'> | undefined
  /**
   * How a local endpoint is enforced. Default: a Pod is a workload (without anti-spoofing, as
   * its host interface is not known here), anything else a host endpoint.
   */
  readonly describeLocal?: ((record: EndpointRecord) => NftLocalEndpoint) | undefined
}

export interface EnforcementPass {
  readonly ruleset: NftRuleset
  /** False when the kernel already held this exact ruleset. */
  readonly applied: boolean
  /** Undefined when nothing was applied. */
  readonly cut: ConntrackCutResult | undefined
}

export interface NftEnforcer {
  start(): Promise<void>
  /** One pass for the agent: the local endpoints as records of the snapshot. */
  /** One pass for the agent: returns once the rules are loaded; the connection cut follows behind (`onConnectionsCut`). */
  apply(snapshot: PolicySnapshot, local: readonly EndpointRecord[], hooks?: EnforcementHooks): Promise<EnforcementReport>
  /** One pass with a complete ruleset input, the cut included. */
  enforce(snapshot: PolicySnapshot, input: NftRulesetInput): Promise<EnforcementPass>
  stop(options: { removeRules: boolean }): Promise<void>
  /** The ruleset last applied. */
  readonly current: NftRuleset | undefined
}

export function defaultDescribeLocal(record: EndpointRecord): NftLocalEndpoint {
  return { key: record.key, kind: record.endpoint.kind === 'Pod' ? 'workload' : 'host' }
}

export function createNftEnforcer(components: NftEnforcerComponents, options: NftEnforcerOptions = {}): NftEnforcer {
  const describe = options.describeLocal ?? defaultDescribeLocal
  let current: NftRuleset | undefined

  /** Renders the table and loads it; `applied` false when the kernel already held this exact ruleset. */
  async function load(snapshot: PolicySnapshot, input: NftRulesetInput): Promise<{ ruleset: NftRuleset; applied: boolean }> {
    const ruleset = renderNftRuleset(snapshot, { ...input, table: components.table.table })
    if (current !== undefined && current.text === ruleset.text) return { ruleset, applied: false }
    components.flowLog?.remember(ruleset)
    await components.table.apply(ruleset)
    current = ruleset
    return { ruleset, applied: true }
  }

  async function enforce(snapshot: PolicySnapshot, input: NftRulesetInput): Promise<EnforcementPass> {
    const { ruleset, applied } = await load(snapshot, input)
    return { ruleset, applied, cut: applied ? await components.conntrack.cut(snapshot, input) : undefined }
  }

  /**
   * The agent's passes cut connections behind them: a cut lists conntrack (two processes, 15 to
   * 20 ms) and concerns flows that exist already, so the next pass (a workload being attached,
   * which waits for its rules) does not wait for it. Cuts run one at a time, in the order of
   * their passes; one judged by an older snapshot may cut a connection a newer one allows, which
   * conntrack then tracks anew under the newer rules, and what the newer one denies its own cut
   * removes.
   */
  let cuts: Promise<void> = Promise.resolve()

  return {
    get current() {
      return current
    },
    async start() {
      await components.flowLogReader?.start()
    },
    enforce,
    async apply(snapshot, local, hooks) {
      const input: NftRulesetInput = { ...options.ruleset, localEndpoints: local.map(describe) }
      const { ruleset, applied } = await load(snapshot, input)
      hooks?.onRulesLoaded?.()
      if (applied) {
        cuts = cuts
          .then(() => components.conntrack.cut(snapshot, input))
          .then(
            (cut) => hooks?.onConnectionsCut?.({ cut: cut.denied.length }),
            (error: unknown) => hooks?.onConnectionsCut?.({ cut: 0, error }),
          )
      }
      return { rules: Object.keys(ruleset.rules).length }
    },
    async stop({ removeRules }) {
      await cuts
      await components.flowLogReader?.stop()
      if (removeRules) {
        await components.table.remove()
        current = undefined
      }
    },
  }
}
