/**
 * One active syncer per cluster: leader election on a coordination.k8s.io/v1 Lease, with
 * client-go's rules.
 *
 *   candidate: GET the Lease (none: create it, holding it)
 *     held by another, and its record changed less than leaseDurationSeconds ago (by OUR clock,
 *       measured from when we saw it change: no trust in the holder's clock) -> standby, ask again
 *     else -> PUT ourselves as holder, with the resourceVersion we read: of two candidates racing,
 *       the API server lets one win (409 Conflict for the other)
 *   leader: renew (PUT renewTime) every retryPeriodMs; if no renewal succeeded for renewDeadlineMs,
 *     or someone else holds the Lease, stop leading at once. renewDeadline < leaseDuration, so a
 *     leader that cannot renew stops before a standby may take over.
 *   stop: a leader hands over by clearing holderIdentity (leaseDurationSeconds 1): a standby takes
 *     over on its next try instead of waiting for the Lease to expire.
 */
import type { Logger } from 'pino'
import { InvalidArgumentError } from '@flatnet/core'
import { expectStatus, type KubeTransport } from './kube-transport.js'
import type { SyncerMetrics } from './metrics.js'
import { sleep } from './sleep.js'

export interface LeaseConfig {
  readonly namespace: string
  readonly name: string
  /** Unique per candidate (default: host name and process id). */
  readonly identity: string
  readonly leaseDurationSeconds: number
  readonly renewDeadlineMs: number
  readonly retryPeriodMs: number
}

export const LEASE_DEFAULTS = Object.freeze({
  name: 'flatnet-k8s-syncer',
  leaseDurationSeconds: 15,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
})

export interface LeaseComponents {
  readonly transport: KubeTransport
  readonly log: Logger
  readonly metrics: SyncerMetrics
}

export interface LeaderCallbacks {
  /** This candidate now holds the Lease. */
  onStartedLeading(): void | Promise<void>
  /**
   * It no longer does: `stopping` (this candidate stops; it still holds the Lease until the
   * release that follows this callback) or `lost` (it could not renew, or another holds it).
   */
  onStoppedLeading(why: 'stopping' | 'lost'): void | Promise<void>
}

interface LeaseSpec {
  holderIdentity?: string
  leaseDurationSeconds?: number
  acquireTime?: string
  renewTime?: string
  leaseTransitions?: number
  [field: string]: unknown
}

interface LeaseObject {
  apiVersion?: string
  kind?: string
  metadata: { name?: string; namespace?: string; resourceVersion?: string; [field: string]: unknown }
  spec?: LeaseSpec
}

/** metav1.MicroTime: RFC 3339 with microseconds. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z')
}

export function checkLeaseConfig(c: LeaseConfig): void {
  if (!Number.isInteger(c.leaseDurationSeconds) || c.leaseDurationSeconds < 1) throw new InvalidArgumentError(`lease duration must be a whole number of seconds >= 1, got ${c.leaseDurationSeconds}`)
  if (!(c.renewDeadlineMs < c.leaseDurationSeconds * 1000)) {
    throw new InvalidArgumentError(`the renew deadline (${c.renewDeadlineMs} ms) must be shorter than the lease duration (${c.leaseDurationSeconds} s), or two leaders could overlap`)
  }
  if (!(c.retryPeriodMs > 0 && c.retryPeriodMs < c.renewDeadlineMs)) throw new InvalidArgumentError(`the retry period (${c.retryPeriodMs} ms) must be positive and shorter than the renew deadline (${c.renewDeadlineMs} ms)`)
  if (c.identity === '') throw new InvalidArgumentError('the lease identity must not be empty')
}

type Attempt = { readonly held: true } | { readonly held: false; readonly holder: string }

export class LeaseElector {
  readonly config: LeaseConfig
  private leading = false
  private lastRenewAt = 0
  /** The Lease as last read or written (its resourceVersion makes the next PUT conditional). */
  private lease: LeaseObject | undefined
  private observedSpec = ''
  private observedAt = 0
  private holderSeen = ''
  private readonly stopping = new AbortController()
  private loop: Promise<void> | undefined
  private callbacks: LeaderCallbacks | undefined

  constructor(
    private readonly components: LeaseComponents,
    config: LeaseConfig,
  ) {
    checkLeaseConfig(config)
    this.config = Object.freeze({ ...config })
  }

  get isLeader(): boolean {
    return this.leading
  }

  /** The holder named by the Lease when last read ('' when none). */
  get holder(): string {
    return this.holderSeen
  }

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${encodeURIComponent(this.config.namespace)}/leases/${encodeURIComponent(this.config.name)}`
  }

  start(callbacks: LeaderCallbacks): void {
    this.callbacks = callbacks
    this.loop ??= this.run()
  }

  /** Stops campaigning; a leader stops leading (callback first) and releases the Lease. */
  async stop(): Promise<void> {
    this.stopping.abort()
    await this.loop
    if (this.leading) {
      await this.setLeading(false, 'stopping')
      await this.release().catch((err: Error) => this.components.log.warn({ err: err.message }, 'could not release the Lease; a standby takes over when it expires'))
    }
  }

  private async run(): Promise<void> {
    const { log } = this.components
    while (!this.stopping.signal.aborted) {
      const now = Date.now()
      // A renewal may take at most what is left of the deadline, so a hung request cannot keep
      // a leader leading past it.
      const budget = this.leading ? Math.max(100, this.lastRenewAt + this.config.renewDeadlineMs - now) : this.config.renewDeadlineMs
      let attempt: Attempt | undefined
      try {
        attempt = await this.tryAcquireOrRenew(budget)
      } catch (err) {
        if (this.stopping.signal.aborted) break
        log.warn({ err: (err as Error).message, lease: `${this.config.namespace}/${this.config.name}` }, this.leading ? 'Lease renewal failed' : 'Lease request failed')
      }
      if (this.stopping.signal.aborted) break
      if (attempt?.held) {
        this.lastRenewAt = Date.now()
        if (!this.leading) await this.setLeading(true)
      } else if (this.leading) {
        const takenOver = attempt !== undefined && attempt.holder !== this.config.identity
        if (takenOver || Date.now() - this.lastRenewAt >= this.config.renewDeadlineMs) {
          log.warn({ holder: attempt?.holder ?? this.holderSeen, renewDeadlineMs: this.config.renewDeadlineMs }, takenOver ? 'the Lease was taken over: stopping' : 'could not renew the Lease in time: stopping')
          await this.setLeading(false)
        }
      }
      // Candidates spread out a little so that they do not ask in step.
      const pause = this.leading ? this.config.retryPeriodMs : this.config.retryPeriodMs * (1 + Math.random() * 0.2)
      await sleep(pause, this.stopping.signal)
    }
  }

  private async setLeading(leading: boolean, why: 'stopping' | 'lost' = 'lost'): Promise<void> {
    const { log, metrics } = this.components
    this.leading = leading
    metrics.leader.set(leading ? 1 : 0)
    metrics.leaderChanges.inc({ to: leading ? 'leader' : 'standby' })
    const fields = { identity: this.config.identity, lease: `${this.config.namespace}/${this.config.name}` }
    try {
      if (leading) {
        log.info(fields, 'holding the Lease: this syncer is the active one')
        await this.callbacks?.onStartedLeading()
      } else {
        log.info(fields, 'not holding the Lease: standby')
        await this.callbacks?.onStoppedLeading(why)
      }
    } catch (err) {
      log.error({ err: (err as Error).message }, 'leadership callback failed')
    }
  }

  private observe(lease: LeaseObject): void {
    this.lease = lease
    const spec = canonicalSpec(lease.spec)
    if (spec !== this.observedSpec) {
      this.observedSpec = spec
      this.observedAt = Date.now()
    }
    this.holderSeen = lease.spec?.holderIdentity ?? ''
  }

  private async tryAcquireOrRenew(timeoutMs: number): Promise<Attempt> {
    const { transport } = this.components
    const me = this.config.identity
    const got = await transport.request('GET', this.path, { timeoutMs, signal: this.stopping.signal })
    const now = Date.now()
    if (got.status === 404) {
      const lease: LeaseObject = {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: { name: this.config.name, namespace: this.config.namespace },
        spec: { holderIdentity: me, leaseDurationSeconds: this.config.leaseDurationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
      }
      const collection = this.path.slice(0, this.path.lastIndexOf('/'))
      const created = await transport.request('POST', collection, { body: lease, timeoutMs, signal: this.stopping.signal })
      // Another candidate created it first.
      if (created.status === 409) return { held: false, holder: '' }
      this.observe(expectStatus('POST', collection, created, [200, 201]) as LeaseObject)
      return { held: true }
    }
    const current = expectStatus('GET', this.path, got, [200]) as LeaseObject
    this.observe(current)
    const spec = current.spec ?? {}
    const holder = spec.holderIdentity ?? ''
    const durationMs = (spec.leaseDurationSeconds ?? this.config.leaseDurationSeconds) * 1000
    if (holder !== '' && holder !== me && this.observedAt + durationMs > now) return { held: false, holder }
    const mine = holder === me
    const next: LeaseObject = {
      ...current,
      spec: {
        ...spec,
        holderIdentity: me,
        leaseDurationSeconds: this.config.leaseDurationSeconds,
        renewTime: microTime(now),
        acquireTime: mine && spec.acquireTime ? spec.acquireTime : microTime(now),
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + 1,
      },
    }
    const put = await transport.request('PUT', this.path, { body: next, timeoutMs, signal: this.stopping.signal })
    // Someone wrote the Lease since we read it; whoever that was, ask again next round.
    if (put.status === 409) return { held: false, holder }
    this.observe(expectStatus('PUT', this.path, put, [200]) as LeaseObject)
    if (!mine) this.components.log.info({ previous: holder || '(none)', transitions: next.spec?.leaseTransitions }, 'acquired the Lease')
    return { held: true }
  }

  /** Hands over: empty holder, 1 s duration (client-go's ReleaseOnCancel). */
  private async release(): Promise<void> {
    const { transport, log } = this.components
    for (let attempt = 0; attempt < 2; attempt++) {
      let lease = this.lease
      if (!lease || attempt > 0) {
        const got = await transport.request('GET', this.path, { timeoutMs: this.config.renewDeadlineMs })
        lease = expectStatus('GET', this.path, got, [200]) as LeaseObject
      }
      if ((lease.spec?.holderIdentity ?? '') !== this.config.identity) return
      const now = Date.now()
      const released: LeaseObject = {
        ...lease,
        spec: { ...lease.spec, holderIdentity: '', leaseDurationSeconds: 1, renewTime: microTime(now), acquireTime: microTime(now) },
      }
      const put = await transport.request('PUT', this.path, { body: released, timeoutMs: this.config.renewDeadlineMs })
      if (put.status === 409) continue
      expectStatus('PUT', this.path, put, [200])
      log.info({ lease: `${this.config.namespace}/${this.config.name}` }, 'released the Lease')
      return
    }
  }
}

function canonicalSpec(spec: LeaseSpec | undefined): string {
  if (!spec) return ''
  return JSON.stringify(Object.keys(spec).sort().map((k) => [k, spec[k]]))
}
