/**
 * `flatnet k8s sync`: mirrors Namespaces, Pods, NetworkPolicies and ClusterNetworkPolicies from
 * the Kubernetes API into the store, while holding the Lease that makes it the one active
 * syncer of the cluster. Runs in the foreground until SIGTERM or SIGINT (see docs/k8s-sync.md).
 */
import { Command, Option } from 'commander'
import { InvalidArgumentError } from '@flatnet/core'
import type { Out } from './output.js'
import { withConnectionOptions, withStore, type ConnectionOptions } from './store-connection.js'

export const K8S_SYNC_DEFAULTS = Object.freeze({
  leaseName: 'flatnet-k8s-syncer',
  leaseDurationSeconds: '15',
  renewDeadlineSeconds: '10',
  retryPeriodSeconds: '2',
  source: 'kubernetes',
  batchIntervalMs: '100',
  resyncIntervalSeconds: '300',
  metricsAddress: '127.0.0.1:9470',
  logLevel: 'info',
})

type SyncOptions = ConnectionOptions & {
  kubeconfig?: string
  inCluster?: boolean
  context?: string
  leaseNamespace?: string
  leaseName: string
  identity?: string
  leaseDuration: string
  renewDeadline: string
  retryPeriod: string
  leaderElection: boolean
  source: string
  batchInterval: string
  resyncInterval: string
  metricsAddress: string
  logLevel: string
}

function number(flag: string, value: string, min: number): number {
  const n = Number(value)
  if (value.trim() === '' || !Number.isFinite(n) || n < min) throw new InvalidArgumentError(`${flag} must be a number >= ${min}, got "${value}"`)
  return n
}

export function k8sCommand(out: Out): Command {
  const k8s = new Command('k8s').description('Kubernetes integration: mirror the cluster into the store (sync)')
  const sync = k8s
    .command('sync')
    .description('mirror Namespaces, Pods, NetworkPolicies and ClusterNetworkPolicies into the store (one active syncer per cluster, by Lease); runs until SIGTERM/SIGINT')
    .addOption(new Option('--kubeconfig <file>', 'kubeconfig file (default: KUBECONFIG, ~/.kube/config, else the pod service account)'))
    .addOption(new Option('--in-cluster', "use the pod's service account even if a kubeconfig exists"))
    .addOption(new Option('--context <name>', 'kubeconfig context (default: its current context)'))
    .addOption(new Option('--lease-namespace <ns>', "namespace of the Lease (default: the context's namespace; in a pod, its own)").env('FLATNET_K8S_LEASE_NAMESPACE'))
    .addOption(new Option('--lease-name <name>', 'name of the Lease').default(K8S_SYNC_DEFAULTS.leaseName))
    .addOption(new Option('--identity <id>', 'this candidate in the Lease, unique per syncer (default: <hostname>_<pid>)').env('FLATNET_K8S_IDENTITY'))
    .addOption(new Option('--lease-duration <seconds>', 'how long a standby waits after the last renewal it saw').default(K8S_SYNC_DEFAULTS.leaseDurationSeconds))
    .addOption(new Option('--renew-deadline <seconds>', 'the leader steps down when it could not renew for this long (< lease duration)').default(K8S_SYNC_DEFAULTS.renewDeadlineSeconds))
    .addOption(new Option('--retry-period <seconds>', 'how often the Lease is renewed or tried').default(K8S_SYNC_DEFAULTS.retryPeriodSeconds))
    .addOption(new Option('--no-leader-election', 'no Lease: for a single instance only (nothing stops a second one)'))
    .addOption(new Option('--source <name>', 'ownership mark (flatnet.dev/source) of the objects this syncer writes').default(K8S_SYNC_DEFAULTS.source))
    .addOption(new Option('--batch-interval <ms>', 'changes within this interval are one store write').default(K8S_SYNC_DEFAULTS.batchIntervalMs))
    .addOption(new Option('--resync-interval <seconds>', 'compare everything with the store again this often (0: never)').default(K8S_SYNC_DEFAULTS.resyncIntervalSeconds))
    .addOption(new Option('--metrics-address <host:port>', 'listen address of /metrics, /healthz, /readyz (empty: none)').env('FLATNET_K8S_METRICS_ADDRESS').default(K8S_SYNC_DEFAULTS.metricsAddress))
    .addOption(new Option('--log-level <level>', 'log level').choices(['debug', 'info', 'warn', 'error']).default(K8S_SYNC_DEFAULTS.logLevel))
  withConnectionOptions(sync).action(async (opts: SyncOptions) => {
    const options = {
      kubeconfig: opts.kubeconfig,
      inCluster: opts.inCluster === true,
      context: opts.context,
      leaseNamespace: opts.leaseNamespace,
      leaseName: opts.leaseName,
      identity: opts.identity,
      leaseDurationSeconds: number('--lease-duration', opts.leaseDuration, 1),
      renewDeadlineMs: number('--renew-deadline', opts.renewDeadline, 0.1) * 1000,
      retryPeriodMs: number('--retry-period', opts.retryPeriod, 0.05) * 1000,
      leaderElection: opts.leaderElection,
      source: opts.source,
      batchIntervalMs: number('--batch-interval', opts.batchInterval, 0),
      resyncIntervalMs: number('--resync-interval', opts.resyncInterval, 0) * 1000,
      metricsAddress: opts.metricsAddress,
    }
    if (!Number.isInteger(options.leaseDurationSeconds)) throw new InvalidArgumentError(`--lease-duration must be whole seconds, got "${opts.leaseDuration}"`)
    // The Kubernetes client library is loaded only by this command.
    const { createSyncerLogger, loadKubeConfig, runSyncer } = await import('@flatnet/k8s')
    // A bad kubeconfig is reported before anything starts (the embedded Redis included).
    const kube = loadKubeConfig(options)
    const log = createSyncerLogger(opts.logLevel)
    let stop = (): void => {}
    const until = new Promise<void>((resolve) => (stop = resolve))
    process.once('SIGINT', stop)
    process.once('SIGTERM', stop)
    try {
      await withStore(opts, (store) => runSyncer({ store, log, until, kube }, options))
    } finally {
      process.removeListener('SIGINT', stop)
      process.removeListener('SIGTERM', stop)
    }
    out.error('flatnet k8s sync stopped')
  })
  return k8s
}
