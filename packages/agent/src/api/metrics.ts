/**
 * The agent's Prometheus metrics: one prom-client Registry per agent (never prom-client's global
 * default registry, so that several agents in one process — the lab, tests — keep their numbers
 * apart), and helpers that give every metric the `flatnet_` prefix.
 *
 * Components declare what they measure once, at construction:
 *
 *   const applies = metrics.counter({ name: 'policy_applies_total', help: '...', labelNames: ['result'] })
 *   applies.inc({ result: 'ok' })          // exported as flatnet_policy_applies_total{result="ok"}
 */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, type CollectFunction } from 'prom-client'

export const METRIC_PREFIX = 'flatnet_'

export interface MetricsConfig {
  /** Labels on every sample, e.g. `{ node: '<peerId>' }`. */
  readonly defaultLabels: Readonly<Record<string, string>>
  /** Node.js process metrics (CPU, memory, event loop lag, GC), as flatnet_process_* and flatnet_nodejs_*. */
  readonly processMetrics: boolean
}

export const METRICS_DEFAULTS: MetricsConfig = Object.freeze({ defaultLabels: Object.freeze({}), processMetrics: true })

export interface MetricSpec<L extends string> {
  /** Without the prefix: `policy_applies_total` becomes `flatnet_policy_applies_total`. */
  readonly name: string
  readonly help: string
  readonly labelNames?: readonly L[]
}

export interface GaugeSpec<L extends string> extends MetricSpec<L> {
  /** Called on every scrape, to set the gauge from current state (e.g. a map's size). */
  readonly collect?: CollectFunction<Gauge<L>>
}

export interface HistogramSpec<L extends string> extends MetricSpec<L> {
  /** Upper bounds in the metric's unit (seconds for durations); prom-client's defaults otherwise. */
  readonly buckets?: readonly number[]
}

export class AgentMetrics {
  readonly registry = new Registry()
  readonly config: MetricsConfig

  constructor(options: Partial<MetricsConfig> = {}) {
    this.config = Object.freeze({ ...METRICS_DEFAULTS, ...options })
    this.registry.setDefaultLabels({ ...this.config.defaultLabels })
    if (this.config.processMetrics) collectDefaultMetrics({ register: this.registry, prefix: METRIC_PREFIX })
  }

  counter<L extends string = never>(spec: MetricSpec<L>): Counter<L> {
    return new Counter<L>({ ...this.base(spec) })
  }

  gauge<L extends string = never>(spec: GaugeSpec<L>): Gauge<L> {
    return new Gauge<L>({ ...this.base(spec), ...(spec.collect ? { collect: spec.collect } : {}) })
  }

  histogram<L extends string = never>(spec: HistogramSpec<L>): Histogram<L> {
    return new Histogram<L>({ ...this.base(spec), ...(spec.buckets ? { buckets: [...spec.buckets] } : {}) })
  }

  /** The Prometheus text exposition of every metric. */
  text(): Promise<string> {
    return this.registry.metrics()
  }

  get contentType(): string {
    return this.registry.contentType
  }

  private base<L extends string>(spec: MetricSpec<L>): { name: string; help: string; labelNames: readonly L[]; registers: Registry[] } {
    if (spec.name.startsWith(METRIC_PREFIX)) throw new Error(`metric "${spec.name}": give the name without the "${METRIC_PREFIX}" prefix; it is added`)
    return { name: METRIC_PREFIX + spec.name, help: spec.help, labelNames: spec.labelNames ?? [], registers: [this.registry] }
  }
}

export function createMetrics(options: Partial<MetricsConfig> = {}): AgentMetrics {
  return new AgentMetrics(options)
}
