/**
 * What the plugin sends to the agent's local API and what it gets back (the agent's side is
 * packages/agent/src/cni-routes.ts; docs/cni.md describes both). Attachments are keyed by
 * network name, container ID and interface name, as the spec keys them.
 *
 *   POST   /v1/cni/attachments                                  ADD
 *   DELETE /v1/cni/attachments/:network/:containerId/:ifname    DEL (idempotent)
 *   POST   /v1/cni/check                                        CHECK
 *   POST   /v1/cni/gc                                           GC
 *   GET    /v1/cni/status                                       STATUS
 */
import { AgentClient } from '@flatnet/agent/client'

export interface AttachBody {
  readonly network: string
  readonly containerId: string
  readonly ifname: string
  readonly netns: string
  readonly namespace: string
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly labelsFrom: 'kubernetes' | 'config'
  /** Wait this long for the endpoint's policy to be enforced before answering (0: don't wait). */
  readonly policyWaitMs: number
}

export interface AttachAnswer {
  readonly attachment: {
    readonly namespace: string
    readonly name: string
    readonly ips: readonly string[]
    readonly hostIfname: string
    readonly hostMac: string
    /** The container side's MAC, when the agent could read it. */
    readonly mac?: string | undefined
    readonly mtu: number
  }
}

export interface CheckBody {
  readonly network: string
  readonly containerId: string
  readonly ifname: string
  readonly netns: string
  /** The addresses the final ADD result gave (prevResult), without prefix length. */
  readonly ips: readonly string[]
}

export interface CheckAnswer {
  readonly ok: boolean
  readonly problems: readonly { readonly what: string; readonly detail: string }[]
}

export interface GcAnswer {
  readonly removed: readonly string[]
  readonly failed: readonly { readonly attachment: string; readonly error: string }[]
}

export interface StatusAnswer {
  readonly ready: boolean
  readonly reasons: readonly string[]
}

export function cniAgentClient(socketPath: string, timeoutMs: number): AgentClient {
  // Answers are small; a runaway one is refused early.
  return new AgentClient({ socketPath, timeoutMs, maxResponseBytes: 1024 * 1024 })
}

export function attachmentPath(network: string, containerId: string, ifname: string): string {
  return `/v1/cni/attachments/${[network, containerId, ifname].map(encodeURIComponent).join('/')}`
}
