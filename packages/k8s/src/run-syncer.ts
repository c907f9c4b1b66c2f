/**
 * `flatnet k8s sync` as a function: reads the client configuration, starts the syncer and its
 * metrics/probe listener, and runs until `until` resolves (the CLI passes SIGTERM/SIGINT); then
 * a leader writes what is pending and hands the Lease over.
 */
import { hostname } from 'node:os'
import { pino, type Logger } from 'pino'
import type { FlatnetStore } from '@flatnet/store'
import { SyncerHealthServer } from './health-server.js'
import { loadKubeConfig, type KubeConfigOptions, type LoadedKubeConfig } from './kube-config.js'
import { kubeConfigTransport } from './kube-transport.js'
import { LEASE_DEFAULTS } from './lease.js'
import { SyncerMetrics } from './metrics.js'
import { K8sSyncer, type SyncerConfig } from './syncer.js'

export interface RunSyncerOptions extends KubeConfigOptions {
  /** Lease namespace; default: the kubeconfig context's namespace (in a pod: its own). */
  readonly leaseNamespace?: string | undefined
  readonly leaseName?: string | undefined
  /** Default: `<hostname>_<pid>` (in a pod the host name is the pod name). */
  readonly identity?: string | undefined
  readonly leaseDurationSeconds?: number | undefined
  readonly renewDeadlineMs?: number | undefined
  readonly retryPeriodMs?: number | undefined
  /** false: no leader election (a single instance only). */
  readonly leaderElection?: boolean | undefined
  readonly source?: string | undefined
  readonly batchIntervalMs?: number | undefined
  readonly resyncIntervalMs?: number | undefined
  /** `host:port` for /metrics, /healthz, /readyz; empty: none. */
  readonly metricsAddress?: string | undefined
}

export interface RunSyncerComponents {
  readonly store: FlatnetStore
  readonly log: Logger
  /** Resolves when the syncer should stop. */
  readonly until: Promise<unknown>
  /** The client configuration, if read already (else it is read from the options). */
  readonly kube?: LoadedKubeConfig | undefined
}

/** pino JSON lines on stderr; every line of a part has `component` (k8s-watch, k8s-store, k8s-lease, k8s-sync). */
export function createSyncerLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination as pino.DestinationStream)
}

export function defaultIdentity(): string {
  return `${hostname()}_${process.pid}`
}

export async function runSyncer(components: RunSyncerComponents, options: RunSyncerOptions): Promise<void> {
  const { store, log } = components
  const kube = components.kube ?? loadKubeConfig(options)
  const transport = kubeConfigTransport(kube.kubeConfig, kube.server)
  const metrics = new SyncerMetrics({ processMetrics: true })
  const lease: SyncerConfig['lease'] =
    options.leaderElection === false
      ? false
      : {
          namespace: options.leaseNamespace || kube.namespace,
          name: options.leaseName || LEASE_DEFAULTS.name,
          identity: options.identity || defaultIdentity(),
          leaseDurationSeconds: options.leaseDurationSeconds ?? LEASE_DEFAULTS.leaseDurationSeconds,
          renewDeadlineMs: options.renewDeadlineMs ?? LEASE_DEFAULTS.renewDeadlineMs,
          retryPeriodMs: options.retryPeriodMs ?? LEASE_DEFAULTS.retryPeriodMs,
        }
  const mirror: SyncerConfig['mirror'] = {
    ...(options.batchIntervalMs !== undefined ? { batchIntervalMs: options.batchIntervalMs } : {}),
    ...(options.resyncIntervalMs !== undefined ? { resyncIntervalMs: options.resyncIntervalMs } : {}),
  }
  const syncer = new K8sSyncer({ transport, store, log, metrics }, { lease, mirror, ...(options.source ? { source: options.source } : {}) })
  const health = new SyncerHealthServer({ metrics, status: () => syncer.status() })
  const listening = options.metricsAddress ? await health.start(options.metricsAddress) : undefined
  log.info(
    {
      component: 'k8s-sync',
      kubernetes: kube.server,
      config: kube.source,
      store: store.where,
      cluster: store.options.cluster,
      lease: lease === false ? 'none (leader election off)' : `${lease.namespace}/${lease.name}`,
      identity: lease === false ? undefined : lease.identity,
      metrics: listening,
    },
    'flatnet k8s sync started',
  )
  syncer.start()
  try {
    await components.until
  } finally {
    log.info({ component: 'k8s-sync' }, 'stopping')
    await syncer.stop()
    await health.stop()
  }
}
