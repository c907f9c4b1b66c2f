/**
 * The syncer's Prometheus metrics, in a prom-client Registry of its own (never the global one,
 * so that several syncers in one process — tests — keep their numbers apart). Every name has the
 * `flatnet_k8s_` prefix.
 */
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'

export interface SyncerMetricsConfig {
  /** Node.js process metrics (CPU, memory, event loop lag, GC), as flatnet_process_* and flatnet_nodejs_*. */
  readonly processMetrics: boolean
}

export const SYNCER_METRICS_DEFAULTS: SyncerMetricsConfig = Object.freeze({ processMetrics: false })

export class SyncerMetrics {
  readonly registry = new Registry()
  /** Watch events received, by type (ADDED, MODIFIED, DELETED, BOOKMARK). */
  readonly events: Counter<'resource' | 'type'>
  /** Complete lists, by why: start, expired (410 Gone on a watch), continue-expired, absent (CRD not installed). */
  readonly lists: Counter<'resource' | 'reason'>
  /** Watches that ended and were resumed from the last resourceVersion: closed (by the server), dropped (connection broke), idle, error. */
  readonly watchRestarts: Counter<'resource' | 'reason'>
  /** Failed API requests (list, watch). */
  readonly apiErrors: Counter<'resource'>
  /** Objects flatnet's validator refused (each object version once). */
  readonly invalidObjects: Counter<'resource'>
  /** Objects currently refused. */
  readonly invalidNow: Gauge<'resource'>
  /** Keys the API has whose store object belongs to someone else (not overwritten). */
  readonly conflicts: Gauge
  /** Store write rounds: written, unchanged (nothing to write), mismatch (the store moved; re-read), error. */
  readonly storeWrites: Counter<'result'>
  /** Objects written and deleted in the store. */
  readonly storeOps: Counter<'op'>
  /** The store revision after the last write or check. */
  readonly storeRevision: Gauge
  /** 1 while this syncer holds the Lease and mirrors; 0 on standby. */
  readonly leader: Gauge
  /** Changes of leadership seen by this syncer: to=leader or to=standby. */
  readonly leaderChanges: Counter<'to'>

  constructor(options: Partial<SyncerMetricsConfig> = {}) {
    const config = { ...SYNCER_METRICS_DEFAULTS, ...options }
    const registers = [this.registry]
    if (config.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'flatnet_' })
    this.events = new Counter({ name: 'flatnet_k8s_events_total', help: 'Watch events received from the Kubernetes API', labelNames: ['resource', 'type'], registers })
    this.lists = new Counter({ name: 'flatnet_k8s_lists_total', help: 'Complete lists of a resource, by reason', labelNames: ['resource', 'reason'], registers })
    this.watchRestarts = new Counter({ name: 'flatnet_k8s_watch_restarts_total', help: 'Watches resumed from the last resourceVersion, by reason', labelNames: ['resource', 'reason'], registers })
    this.apiErrors = new Counter({ name: 'flatnet_k8s_api_errors_total', help: 'Failed list and watch requests', labelNames: ['resource'], registers })
    this.invalidObjects = new Counter({ name: 'flatnet_k8s_invalid_objects_total', help: 'API objects refused by flatnet validation (each version once)', labelNames: ['resource'], registers })
    this.invalidNow = new Gauge({ name: 'flatnet_k8s_invalid_objects', help: 'API objects currently refused by flatnet validation', labelNames: ['resource'], registers })
    this.conflicts = new Gauge({ name: 'flatnet_k8s_conflicts', help: 'API objects whose store key holds an object the syncer does not own', registers })
    this.storeWrites = new Counter({ name: 'flatnet_k8s_store_writes_total', help: 'Store write rounds, by result', labelNames: ['result'], registers })
    this.storeOps = new Counter({ name: 'flatnet_k8s_store_ops_total', help: 'Objects put into or deleted from the store', labelNames: ['op'], registers })
    this.storeRevision = new Gauge({ name: 'flatnet_k8s_store_revision', help: 'Store revision after the last write or check', registers })
    this.leader = new Gauge({ name: 'flatnet_k8s_leader', help: '1 while this syncer holds the Lease', registers })
    this.leaderChanges = new Counter({ name: 'flatnet_k8s_leader_changes_total', help: 'Leadership changes of this syncer', labelNames: ['to'], registers })
  }

  /** The value of one sample, for tests and status. */
  async value(name: string, labels: Record<string, string> = {}): Promise<number> {
    const metric = await this.registry.getSingleMetric(name)?.get()
    const sample = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))
    return sample?.value ?? 0
  }

  text(): Promise<string> {
    return this.registry.metrics()
  }
}
