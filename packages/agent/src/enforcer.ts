/**
 * What the agent needs from enforcement: apply the compiled policy for this node's endpoints in
 * one kernel pass, and keep or remove the rules when the agent stops.
 */
import type { EndpointRecord, PolicySnapshot } from '@flatnet/policy'

export interface EnforcementReport {
  /** Rules in the applied ruleset. */
  readonly rules: number
}

/** Told of a pass's milestones while it runs. */
export interface EnforcementHooks {
  /**
   * The pass's rules are in the kernel (or were already): new flows meet them from now on. What
   * follows (cutting connections the new rules no longer allow) concerns existing flows only.
   */
  readonly onRulesLoaded?: (() => void) | undefined
  /**
   * The pass's connection cut is done (it runs after the pass returns): how many connections
   * the new rules no longer allow were cut, or why the cut failed (those run on until the next
   * pass's cut).
   */
  readonly onConnectionsCut?: ((outcome: { readonly cut: number; readonly error?: unknown }) => void) | undefined
}

export interface Enforcer {
  /** Recognises leftover state of an earlier run; touches nothing before the first apply. */
  start(): Promise<void>
  /** Returns once the pass's rules are in force; see EnforcementHooks for what follows. */
  apply(snapshot: PolicySnapshot, local: readonly EndpointRecord[], hooks?: EnforcementHooks): Promise<EnforcementReport>
  /** Whether the kernel holds rules of an earlier run (left in place by a stop or a crash). */
  holdsRules(): Promise<boolean>
  stop(options: { removeRules: boolean }): Promise<void>
}
