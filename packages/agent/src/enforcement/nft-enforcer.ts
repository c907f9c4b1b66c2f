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
import type { NftLocalEndpoint, NftRuleset, NftRulesetInput, PolicySnapshot } from '@flatnet/policy'
import { renderNftRuleset } from '@flatnet/policy'
import type { ConntrackCutResult, ConntrackCutter } from './conntrack-cut.js'
import type { FlowLog } from './flow-log.js'
import type { FlowLogReader } from './nflog-reader.js'
import type { NftTable } from './nft-table.js'
import type { EnforcementHooks, EnforcementReport, LocalEndpoint } from '../enforcer.js'

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
  /** One pass for the agent: the rules (`onRulesLoaded` once they are in force), then the cut. */
  apply(snapshot: PolicySnapshot, local: readonly LocalEndpoint[], hooks?: EnforcementHooks): Promise<EnforcementReport>
  /** One pass with a complete ruleset input, the cut included. */
  enforce(snapshot: PolicySnapshot, input: NftRulesetInput): Promise<EnforcementPass>
  stop(options: { removeRules: boolean }): Promise<void>
  /** The ruleset last applied. */
  readonly current: NftRuleset | undefined
}

/** How a local endpoint is enforced: see LocalEndpoint. */
export function describeLocal(local: LocalEndpoint): NftLocalEndpoint {
  const { record, hostInterface } = local
  if (hostInterface !== undefined) return { key: record.key, kind: 'workload', hostInterface }
  return { key: record.key, kind: record.endpoint.kind === 'Pod' ? 'workload' : 'host' }
}

export function createNftEnforcer(components: NftEnforcerComponents, options: NftEnforcerOptions = {}): NftEnforcer {
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

  return {
    get current() {
      return current
    },
    async start() {
      await components.flowLogReader?.start()
    },
    enforce,
    async apply(snapshot, local, hooks) {
      const input: NftRulesetInput = { ...options.ruleset, localEndpoints: local.map(describeLocal) }
      const { ruleset, applied } = await load(snapshot, input)
      hooks?.onRulesLoaded?.()
      // Within the pass, judged by the snapshot whose rules are loaded: a cut judged by an older
      // snapshot would delete connections the loaded rules allow, whose next reply then meets
      // `ct state invalid` and is dropped.
      if (applied) await components.conntrack.cut(snapshot, input)
      return { rules: Object.keys(ruleset.rules).length }
    },
    async stop({ removeRules }) {
      await components.flowLogReader?.stop()
      if (removeRules) {
        await components.table.remove()
        current = undefined
      }
    },
  }
}
