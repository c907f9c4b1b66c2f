/**
 * The agent's configuration as the rest of the agent sees it: every field present, every
 * default applied, frozen. docs/agent.md describes each field; examples/agent.yaml shows them.
 *
 * An empty string means "none" or "derive it" where a field says so; the loader resolves the
 * derived ones (node name, host endpoint name, API socket), so only `store.url`, `join.*` and
 * `metrics.listen` keep an empty string in a loaded configuration.
 */
import type { Protocol } from '@flatnet/core'

export type WireguardBackendChoice = 'auto' | 'kernel' | 'userspace'

/** pino's levels, plus `silent`. */
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'

export interface ConfigNamedPort {
  readonly name: string
  readonly port: number
  readonly protocol: Protocol
}

/** One failsafe rule: traffic to or from `port` over `protocol` is always allowed. */
export interface FailsafePort {
  readonly protocol: Protocol
  readonly port: number
  /** Limits the rule to peers in this CIDR; empty: any address, IPv4 and IPv6. */
  readonly cidr: string
}

export interface AgentStoreConfig {
  /** A flatnet Redis URL (docs/store.md); empty: the embedded redis-server in `stateDir`. */
  readonly url: string
  /** Bound on every store operation and connection attempt. */
  readonly timeoutMs: number
}

export interface AgentJoinConfig {
  /** A join token `fnt_<id>.<secret>`; empty: none. */
  readonly token: string
  /** A file holding the join token; empty: none. At most one of `token` and `tokenFile`. */
  readonly tokenFile: string
}

export interface AgentWireguardConfig {
  readonly backend: WireguardBackendChoice
  readonly interfaceName: string
  readonly listenPort: number
  readonly mtu: number
}

export interface AgentMeshConfig {
  /** libp2p multiaddrs to listen on (`/ip4|ip6/<address>/tcp/<port>`). */
  readonly listen: readonly string[]
  /** Addresses to advertise instead of the listen addresses; empty: the listen addresses. */
  readonly announce: readonly string[]
  /** Agents to dial at start (`/ip4|ip6|dns|dns4|dns6/<host>/tcp/<port>[/p2p/<PeerId>]`). */
  readonly bootstrap: readonly string[]
  /** Run a circuit relay v2 server for admitted peers. */
  readonly relayServer: boolean
}

export interface AgentUnderlayConfig {
  /**
   * Where peers send WireGuard to: IP literals (the port is `wireguard.listenPort`) or
   * `ip:port` / `[ipv6]:port`. Empty: detected from the host's addresses.
   */
  readonly addresses: readonly string[]
}

export interface AgentHostEndpointConfig {
  /** Register this host as an endpoint, so policy can select it. */
  readonly enabled: boolean
  readonly namespace: string
  /** Resolved: the node name when the configuration leaves it empty. */
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly ports: readonly ConfigNamedPort[]
}

/** A workload on this host that is not a pod (a VM's service, a container run by hand). */
export interface AgentWorkloadConfig {
  readonly namespace: string
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly ips: readonly string[]
  readonly ports: readonly ConfigNamedPort[]
}

export interface AgentFailsafeConfig {
  readonly inbound: readonly FailsafePort[]
  readonly outbound: readonly FailsafePort[]
}

export interface AgentPolicyConfig {
  readonly failsafe: AgentFailsafeConfig
  /** Delete conntrack entries of connections a policy change no longer allows. */
  readonly conntrackCut: boolean
  /** Leave the nftables ruleset in place when the agent stops (fail-static). */
  readonly keepRulesOnStop: boolean
}

export interface AgentDataplaneConfig {
  /**
   * The host's /proc/sys/net, where the agent writes the settings of workload veths (proxy ARP)
   * and turns on forwarding. A container sees /proc/sys read-only: mount the host's
   * /proc/sys/net read-write elsewhere and name it here (k8s/50-daemonset.yaml:
   * /host/proc/sys/net). Absolute.
   */
  readonly procSysNet: string
}

export interface AgentApiConfig {
  /** Unix socket of the local API (CNI, CLI). Resolved: `<runDir>/agent.sock` when left empty. */
  readonly socket: string
}

export interface AgentMetricsConfig {
  /** `host:port` of the Prometheus, /healthz and /readyz listener; empty: disabled. */
  readonly listen: string
}

export interface AgentLogConfig {
  readonly level: LogLevel
}

export interface AgentReconnectConfig {
  /** First retry delay after a lost connection; it doubles per attempt up to `maxMs`. */
  readonly minMs: number
  readonly maxMs: number
}

export interface AgentConfig {
  /** Resolved: the host name (lower case) when the configuration leaves it empty. */
  readonly nodeName: string
  /** Labels published in this node's record. */
  readonly nodeLabels: Readonly<Record<string, string>>
  readonly cluster: string
  readonly stateDir: string
  readonly runDir: string
  readonly store: AgentStoreConfig
  readonly join: AgentJoinConfig
  readonly wireguard: AgentWireguardConfig
  readonly mesh: AgentMeshConfig
  readonly underlay: AgentUnderlayConfig
  readonly hostEndpoint: AgentHostEndpointConfig
  readonly workloads: readonly AgentWorkloadConfig[]
  readonly policy: AgentPolicyConfig
  readonly dataplane: AgentDataplaneConfig
  readonly api: AgentApiConfig
  readonly metrics: AgentMetricsConfig
  readonly log: AgentLogConfig
  readonly reconnect: AgentReconnectConfig
}
