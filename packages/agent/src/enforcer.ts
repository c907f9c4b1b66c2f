/**
 * What the agent needs from enforcement: apply the compiled policy for this node's endpoints in
 * one kernel pass, and keep or remove the rules when the agent stops.
 */
import type { EndpointRecord, PolicySnapshot } from '@flatnet/policy'

/** One of this node's endpoints, as the agent hands it to enforcement. */
export interface LocalEndpoint {
  readonly record: EndpointRecord
  /**
   * The host side of its veth, when this agent attached it: the endpoint is then a workload
   * enforced on that interface, with anti-spoofing. Without it, a Pod is a workload enforced by
   * its addresses alone and anything else a host endpoint.
   */
  readonly hostInterface?: string | undefined
}

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
}

export interface Enforcer {
  /** Recognises leftover state of an earlier run; touches nothing before the first apply. */
  start(): Promise<void>
  /** One pass: rules into the kernel (`onRulesLoaded`), then connections they deny are cut. */
  apply(snapshot: PolicySnapshot, local: readonly LocalEndpoint[], hooks?: EnforcementHooks): Promise<EnforcementReport>
  /** Whether the kernel holds rules of an earlier run (left in place by a stop or a crash). */
  holdsRules(): Promise<boolean>
  stop(options: { removeRules: boolean }): Promise<void>
}
