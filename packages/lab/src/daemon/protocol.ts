/**
 * What the lab and its endpoint daemons say to each other over the daemon's unix socket: one
 * JSON object a line each way, matched by `id` (see endpoint-daemon.ts).
 */

export interface DaemonConfig {
  /** `namespace/name`. */
  readonly key: string
  readonly addresses: readonly string[]
  readonly ports: readonly { readonly port: number; readonly protocol: 'TCP' | 'UDP' }[]
  readonly socket: string
}

export interface ProbeRequest {
  readonly id: number
  readonly op: 'probe'
  readonly ip: string
  readonly port: number
  readonly protocol: 'TCP' | 'UDP'
  readonly timeoutMs: number
}

export type ProbeOutcome = 'answered' | 'refused' | 'timeout' | 'unreachable' | 'no-source-address' | 'error'

export interface ProbeReply {
  readonly id: number
  readonly ok: boolean
  readonly result: ProbeOutcome
  readonly reply?: string
  readonly detail?: string
  readonly ms: number
}
