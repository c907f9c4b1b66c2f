/**
 * `flatnet agent run`: the agent process. Wires the agent to its local API, health and metrics
 * listener and signals, and keeps running until SIGTERM/SIGINT.
 *
 *   SIGTERM, SIGINT  stop; nftables rules stay in place unless policy.keepRulesOnStop is false
 *   SIGHUP           re-read the configuration: labels of the host endpoint and the declared
 *                    workloads are re-published; other changes are logged as needing a restart
 */
import type { Logger } from 'pino'
import { Agent } from './agent.js'
import { agentRoutes, type FlowSource } from './agent-routes.js'
import { createLocalApi, type LocalApi } from './api/local-api.js'
import type { ApiRoutes } from './api/routes.js'
import { createHealthServer, type HealthServer } from './api/health-server.js'
import { createMetrics, type AgentMetrics } from './api/metrics.js'
import type { AgentConfig } from './config/types.js'
import type { Enforcer } from './enforcer.js'

export interface RunningAgent {
  readonly agent: Agent
  readonly api: LocalApi
  readonly health: HealthServer
  readonly metrics: AgentMetrics
  /** Resolves when the agent has stopped (after a signal or stop()). */
  readonly stopped: Promise<void>
  stop(): Promise<void>
}

export interface RunAgentComponents {
  readonly config: AgentConfig
  readonly log: Logger
  readonly enforcer: Enforcer & FlowSource
  /** Re-reads the configuration on SIGHUP; absent: SIGHUP is logged and ignored. */
  readonly reloadConfig?: (() => AgentConfig) | undefined
  /** More routes for the local API, served beside the agent's own (the CNI plugin's `/v1/cni/exec`). */
  readonly routes?: ApiRoutes | undefined
  /** Install SIGTERM/SIGINT/SIGHUP handlers (default true; tests run several agents in one process). */
  readonly signals?: boolean | undefined
}

export async function runAgent(components: RunAgentComponents): Promise<RunningAgent> {
  const { config, log, enforcer } = components
  const agent = new Agent({ config, log, enforcer })
  const metrics = createMetrics({ defaultLabels: { node: config.nodeName } })
  declareAgentMetrics(metrics, agent)
  const api = createLocalApi({ socketPath: config.api.socket, routes: { ...components.routes, ...agentRoutes(agent, enforcer) }, log: log.child({ component: 'api' }) })
  const health = createHealthServer({ metrics, readiness: () => agent.readiness(), log: log.child({ component: 'health' }), options: { address: config.metrics.listen } })
  await agent.start()
  await api.start()
  await health.start()
  log.info({ socket: config.api.socket, metrics: health.url ?? 'off' }, 'agent running')

  let resolveStopped!: () => void
  const stopped = new Promise<void>((r) => (resolveStopped = r))
  let stopping: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      log.info({}, 'agent stopping')
      await api.stop().catch(() => undefined)
      await health.stop().catch(() => undefined)
      await agent.stop()
      removeSignals()
      resolveStopped()
    })()
    return stopping
  }
  const onTerm = (): void => void stop()
  const onHup = (): void => {
    if (!components.reloadConfig) return log.info({}, 'SIGHUP: nothing to reload')
    try {
      const next = components.reloadConfig()
      void agent.reload(next).then((r) => log.info(r, 'configuration reloaded'))
    } catch (err) {
      log.error({ err: err instanceof Error ? err.message : String(err) }, 'SIGHUP: the configuration does not load; keeping the running one')
    }
  }
  const removeSignals = (): void => {
    process.off('SIGTERM', onTerm)
    process.off('SIGINT', onTerm)
    process.off('SIGHUP', onHup)
  }
  if (components.signals !== false) {
    process.on('SIGTERM', onTerm)
    process.on('SIGINT', onTerm)
    process.on('SIGHUP', onHup)
  }
  return { agent, api, health, metrics, stopped, stop }
}

function declareAgentMetrics(metrics: AgentMetrics, agent: Agent): void {
  metrics.gauge({
    name: 'policy_applied_revision',
    help: 'Store revision of the policy state this node enforces',
    collect() {
      this.set(agent.appliedState?.revision ?? 0)
    },
  })
  metrics.gauge({
    name: 'policy_apply_duration_seconds',
    help: 'How long the last apply pass took (calculation, nftables, WireGuard peers)',
    collect() {
      this.set((agent.appliedState?.durationMs ?? 0) / 1000)
    },
  })
  metrics.gauge({
    name: 'policy_local_endpoints',
    help: 'Endpoints on this node that policy is enforced for',
    collect() {
      this.set(agent.appliedState?.localEndpoints ?? 0)
    },
  })
  metrics.gauge({
    name: 'store_connected',
    help: '1 while the agent follows the store, 0 while it runs on what it last applied',
    collect() {
      this.set(agent.storeConnected ? 1 : 0)
    },
  })
  metrics.gauge({
    name: 'wireguard_peers',
    help: 'WireGuard peers configured on this node',
    collect() {
      this.set(agent.appliedState?.peers ?? 0)
    },
  })
  metrics.gauge({
    name: 'wireguard_dropped_packets',
    help: 'Packets the userspace WireGuard device dropped, by reason',
    labelNames: ['reason'],
    collect() {
      for (const [reason, n] of Object.entries(agent.dataPlaneDrops())) this.set({ reason }, n)
    },
  })
}
