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
  apply(snapshot: PolicySnapshot, local: readonly EndpointRecord[], hooks?: { readonly onRulesLoaded?: (() => void) | undefined }): Promise<{ rules: number; connectionsCut: number }>
  /** One pass with a complete ruleset input; `onRulesLoaded` runs once the table is in the kernel, before the cut. */
  enforce(snapshot: PolicySnapshot, input: NftRulesetInput, onRulesLoaded?: () => void): Promise<EnforcementPass>
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

  async function enforce(snapshot: PolicySnapshot, input: NftRulesetInput, onRulesLoaded?: () => void): Promise<EnforcementPass> {
    const ruleset = renderNftRuleset(snapshot, { ...input, table: components.table.table })
    if (current !== undefined && current.text === ruleset.text) {
      onRulesLoaded?.()
      return { ruleset, applied: false, cut: undefined }
    }
    components.flowLog?.remember(ruleset)
    await components.table.apply(ruleset)
    current = ruleset
    onRulesLoaded?.()
    const cut = await components.conntrack.cut(snapshot, input)
    return { ruleset, applied: true, cut }
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
      const pass = await enforce(snapshot, { ...options.ruleset, localEndpoints: local.map(describe) }, hooks?.onRulesLoaded)
      return { rules: Object.keys(pass.ruleset.rules).length, connectionsCut: pass.cut?.denied.length ?? 0 }
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
