/**
 * An enforcer that does the whole calculation of a real one and stops short of the kernel: it
 * renders the nftables ruleset for the node's local endpoints with the same renderer the
 * nftables enforcer uses (`renderNftRuleset`), and keeps it instead of applying it. Control-plane
 * agents (`dataPlane: false`) use it in tests and in bench/propagation, where hundreds of agents
 * share one machine and none of them may touch its nftables.
 */
import { renderNftRuleset, type NftRuleset, type NftRulesetInput, type PolicySnapshot } from '@flatnet/policy'
import { describeLocal } from '../src/enforcement/nft-enforcer.js'
import type { EnforcementHooks, EnforcementReport, Enforcer, LocalEndpoint } from '../src/enforcer.js'

export class RenderOnlyEnforcer implements Enforcer {
  /** The ruleset of the last apply. */
  last: NftRuleset | undefined
  /** How many apply passes rendered a ruleset. */
  renders = 0

  constructor(private readonly input: Omit<NftRulesetInput, 'localEndpoints' | 'table'> = {}) {}

  start(): Promise<void> {
    return Promise.resolve()
  }

  apply(snapshot: PolicySnapshot, local: readonly LocalEndpoint[], hooks?: EnforcementHooks): Promise<EnforcementReport> {
    const ruleset = renderNftRuleset(snapshot, { ...this.input, localEndpoints: local.map(describeLocal) })
    this.last = ruleset
    this.renders++
    hooks?.onRulesLoaded?.()
    return Promise.resolve({ rules: Object.keys(ruleset.rules).length })
  }

  /** Nothing reaches a kernel, so nothing of an earlier run is ever there. */
  holdsRules(): Promise<boolean> {
    return Promise.resolve(false)
  }

  stop(): Promise<void> {
    return Promise.resolve()
  }
}
