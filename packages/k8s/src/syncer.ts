/**
 * The Kubernetes syncer: while it holds the Lease, it lists and watches Namespaces, Pods,
 * NetworkPolicies and ClusterNetworkPolicies and mirrors them into the store.
 *
 *   LeaseElector ──leading──> Reflector per resource ──translate──> StoreMirror ──> store.write
 *                └─standby──> nothing runs; the desired state is dropped (a new leader lists again)
 *
 * Invalid API objects (refused by flatnet's validator) are logged once per version, counted
 * (`flatnet_k8s_invalid_objects_total`), and skipped: the sync goes on, and a copy already in the
 * store stays as it was.
 */
import type { Logger } from 'pino'
import { formatIssue } from '@flatnet/core'
import type { FlatnetStore, StoreKind } from '@flatnet/store'
import type { KubeTransport } from './kube-transport.js'
import { LeaseElector, type LeaseConfig } from './lease.js'
import { SyncerMetrics } from './metrics.js'
import { DEFAULT_SOURCE } from './ownership.js'
import { Reflector, type ReflectorConfig, type WatchEventType } from './reflector.js'
import { K8S_RESOURCES, type K8sResource, type ResourceName } from './resources.js'
import { desiredObject, INVALID, StoreMirror, type Desired, type MirrorConfig } from './store-mirror.js'
import { objectKey, translate } from './translate.js'

export interface SyncerConfig {
  /** The ownership mark of the objects this syncer writes (`flatnet.dev/source`). */
  readonly source: string
  /** Leader election; `false` runs without a Lease (one instance only: nothing stops a second). */
  readonly lease: LeaseConfig | false
  readonly resources: readonly ResourceName[]
  readonly reflector: Partial<ReflectorConfig>
  readonly mirror: Partial<Omit<MirrorConfig, 'source' | 'kinds'>>
}

export const SYNCER_DEFAULTS = Object.freeze({
  source: DEFAULT_SOURCE,
  resources: Object.freeze(K8S_RESOURCES.map((r) => r.name)),
})

export interface SyncerComponents {
  readonly transport: KubeTransport
  readonly store: FlatnetStore
  readonly log: Logger
  readonly metrics?: SyncerMetrics | undefined
}

export type SyncerOptions = Partial<SyncerConfig> & { readonly lease: LeaseConfig | false }

export interface SyncerStatus {
  readonly leader: boolean
  /** Every resource listed and nothing waiting to be written. */
  readonly synced: boolean
  readonly holder: string
  readonly storeRevision: number
  readonly resources: Readonly<Record<string, { readonly listed: boolean; readonly resourceVersion: string }>>
}

/** The syncer's part while it leads: reflectors and the store mirror. */
interface Term {
  readonly reflectors: Reflector[]
  readonly mirror: StoreMirror
}

export class K8sSyncer {
  readonly config: SyncerConfig
  readonly metrics: SyncerMetrics
  private readonly elector: LeaseElector | undefined
  private term: Term | undefined
  /** Object versions reported invalid, per resource: key -> resourceVersion. */
  private readonly invalid = new Map<ResourceName, Map<string, string>>()
  private started = false

  constructor(
    private readonly components: SyncerComponents,
    options: SyncerOptions,
  ) {
    this.config = Object.freeze({
      source: options.source ?? SYNCER_DEFAULTS.source,
      lease: options.lease,
      resources: options.resources ?? SYNCER_DEFAULTS.resources,
      reflector: options.reflector ?? {},
      mirror: options.mirror ?? {},
    })
    this.metrics = components.metrics ?? new SyncerMetrics()
    const log = components.log
    this.elector = this.config.lease === false ? undefined : new LeaseElector({ transport: components.transport, log: log.child({ component: 'k8s-lease' }), metrics: this.metrics }, this.config.lease)
  }

  private get storeKinds(): StoreKind[] {
    return this.resources().map((r) => r.storeKind)
  }

  private resources(): K8sResource[] {
    return K8S_RESOURCES.filter((r) => this.config.resources.includes(r.name))
  }

  start(): void {
    if (this.started) return
    this.started = true
    if (this.elector) this.elector.start({ onStartedLeading: () => this.beginTerm(), onStoppedLeading: (why) => this.endTerm(why === 'stopping') })
    else this.beginTerm()
  }

  /** Stops: a leader writes what is pending, then hands the Lease over. */
  async stop(): Promise<void> {
    if (this.elector) await this.elector.stop()
    else await this.endTerm(true)
  }

  status(): SyncerStatus {
    const term = this.term
    const resources: Record<string, { listed: boolean; resourceVersion: string }> = {}
    for (const r of term?.reflectors ?? []) resources[r.resourceName] = { listed: r.listed, resourceVersion: r.resourceVersion }
    return {
      leader: term !== undefined,
      synced: term !== undefined && term.mirror.settled(this.storeKinds),
      holder: this.elector?.holder ?? '',
      storeRevision: term?.mirror.revision ?? 0,
      resources,
    }
  }

  /** Resolves once this syncer leads and the store holds everything listed (bounded). */
  async whenSynced(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.term) {
      if (Date.now() > deadline) throw new Error(`not leading within ${timeoutMs} ms`)
      await new Promise((r) => setTimeout(r, 25))
    }
    await this.term.mirror.whenSettled(this.storeKinds, Math.max(1, deadline - Date.now()))
  }

  private beginTerm(): void {
    if (this.term) return
    const { transport, store, log } = this.components
    const mirror = new StoreMirror({ store, log: log.child({ component: 'k8s-store' }), metrics: this.metrics }, { ...this.config.mirror, source: this.config.source, kinds: this.storeKinds })
    const reflectors = this.resources().map(
      (resource) =>
        new Reflector(
          {
            transport,
            resource,
            log: log.child({ component: 'k8s-watch' }),
            metrics: this.metrics,
            handlers: {
              replace: (items) => this.replace(mirror, resource, items),
              event: (type, object) => this.event(mirror, resource, type, object),
            },
          },
          this.config.reflector,
        ),
    )
    this.term = { reflectors, mirror }
    for (const r of reflectors) r.start()
  }

  /** `flush`: what was received is written first (a leader that stops still holds the Lease; one that lost it must not write). */
  private async endTerm(flush: boolean): Promise<void> {
    const term = this.term
    if (!term) return
    await Promise.all(term.reflectors.map((r) => r.stop()))
    await term.mirror.stop({ flush })
    this.term = undefined
    this.invalid.clear()
    for (const r of this.resources()) this.metrics.invalidNow.set({ resource: r.name }, 0)
  }

  private replace(mirror: StoreMirror, resource: K8sResource, items: readonly unknown[]): void {
    const objects = new Map<string, Desired>()
    const invalidNow = new Map<string, string>()
    for (const item of items) {
      const desired = this.desire(resource, item, invalidNow)
      if (desired?.desired !== undefined) objects.set(desired.key, desired.desired)
    }
    this.invalid.set(resource.name, invalidNow)
    this.metrics.invalidNow.set({ resource: resource.name }, invalidNow.size)
    mirror.replace(resource.storeKind, objects)
  }

  private event(mirror: StoreMirror, resource: K8sResource, type: WatchEventType, object: unknown): void {
    let invalidNow = this.invalid.get(resource.name)
    if (!invalidNow) this.invalid.set(resource.name, (invalidNow = new Map()))
    if (type === 'DELETED') {
      const key = objectKey(resource, object)
      if (key === undefined) return
      invalidNow.delete(key)
      mirror.set(resource.storeKind, key, undefined)
    } else {
      const desired = this.desire(resource, object, invalidNow)
      if (desired) mirror.set(resource.storeKind, desired.key, desired.desired)
    }
    this.metrics.invalidNow.set({ resource: resource.name }, invalidNow.size)
  }

  /** What the store should hold for one API object; reports it when flatnet refuses it. */
  private desire(resource: K8sResource, object: unknown, invalidNow: Map<string, string>): { key: string; desired: Desired | undefined } | undefined {
    const t = translate(resource, object, this.config.source)
    const rv = String((object as { metadata?: { resourceVersion?: unknown } })?.metadata?.resourceVersion ?? '')
    if (t.type !== 'invalid') {
      invalidNow.delete(t.key)
      if (t.type === 'object') return { key: t.key, desired: desiredObject(t.value) }
      return { key: t.key, desired: t.ifAttached ? desiredObject(t.ifAttached, { onlyOverAttachment: true }) : undefined }
    }
    const reported = this.invalid.get(resource.name)?.get(t.key)
    invalidNow.set(t.key, rv)
    if (reported !== rv || rv === '') {
      this.metrics.invalidObjects.inc({ resource: resource.name })
      this.components.log.warn(
        { component: 'k8s-sync', resource: resource.name, object: t.key || '(no name)', resourceVersion: rv, issues: t.issues.map(formatIssue) },
        'flatnet refuses this Kubernetes object: skipped (a copy already in the store stays as it was)',
      )
    }
    return t.key === '' ? undefined : { key: t.key, desired: INVALID }
  }
}
