/**
 * The desired state (what the Kubernetes API holds, translated) and the writes that make the
 * store match it.
 *
 *   replace(kind, all)  after a (re)list ──> the whole kind is compared with the store
 *   set(kind, key, v)   after an event   ──> that key is compared
 *                 └─ coalesced: at most one flush per `batchIntervalMs`
 *
 * A flush reads the revision and the affected stored objects in one MULTI, plans puts and
 * deletes, and writes them with `ifRevision` (optimistic concurrency): if anyone wrote in
 * between, it reads again. So it never overwrites an object written since it looked, nor deletes
 * one that someone else took over. Rules of the plan, per key:
 *
 *   desired value, store has the same canonical JSON       -> nothing (a restart re-list writes nothing)
 *   desired value, store has none, or one this syncer owns -> put
 *   desired pod, store has an unmarked Pod endpoint        -> put (adopted: the node agent's CNI
 *                                                             path wrote it before the API had the IP)
 *   desired value, store has one another writer owns       -> conflict: reported, left alone
 *   desired but invalid (refused by the validator)         -> nothing: the stored copy stays
 *   not desired, store has one this syncer owns            -> delete
 *   not desired, store has an agent's detached leftover    -> delete (pod-attachment.ts)
 *   not desired, store has one another writer owns         -> nothing
 *
 * A desired pod whose stored copy holds the attachment of the agent on the pod's node is first
 * merged with it: the agent's node and addresses, the API's labels and ports (pod-attachment.ts).
 * The merge is planned from what the read returned and written with `ifRevision` like the rest,
 * so an agent's write in between makes the syncer read and merge again; it never loses one.
 *
 * Kinds never listed yet are never planned, so a syncer that just started deletes nothing.
 */
import type { Logger } from 'pino'
import { canonicalJson, RevisionMismatchError, type FlatnetStore, type StoreKind, type WriteOp } from '@flatnet/store'
import { AGENT_NODE_ANNOTATION } from '@flatnet/core'
import type { SyncerMetrics } from './metrics.js'
import { sourceOf } from './ownership.js'
import { detachedLeftover, podOverAttachment } from './pod-attachment.js'
import { backoffMs, sleep } from './sleep.js'

/** A key the API holds but flatnet refused: its stored copy is kept as it is. */
export const INVALID = Symbol('invalid')

export interface DesiredObject {
  readonly value: Record<string, unknown>
  /** canonicalJson(value): what the store holds when it is up to date. */
  readonly json: string
  /** A pod the API shows without an IP: written only over a node agent's attachment of it. */
  readonly onlyOverAttachment?: boolean
}

export type Desired = DesiredObject | typeof INVALID

export function desiredObject(value: Record<string, unknown>, opts: { onlyOverAttachment?: boolean } = {}): DesiredObject {
  return { value, json: canonicalJson(value), ...(opts.onlyOverAttachment ? { onlyOverAttachment: true } : {}) }
}

export interface MirrorConfig {
  /** The ownership mark this syncer writes and deletes by (see ownership.ts). */
  readonly source: string
  /** Changes arriving within this interval go into one store write. */
  readonly batchIntervalMs: number
  /** Largest write; a larger flush (a first list of a big cluster) is split into several revisions. */
  readonly maxOpsPerWrite: number
  /** Read-plan-write rounds per flush when other writers keep moving the store. */
  readonly writeAttempts: number
  readonly retryMinMs: number
  readonly retryMaxMs: number
  /** Compare every listed kind with the store again this often (repairs changes made around the syncer); 0: never. */
  readonly resyncIntervalMs: number
  /** The kinds the first write waits for, so that a start is one complete revision... */
  readonly kinds: readonly StoreKind[]
  /** ...unless one of them cannot be listed for this long (RBAC, an unreachable API group). */
  readonly firstWriteWaitMs: number
}

export const MIRROR_DEFAULTS: MirrorConfig = Object.freeze({
  source: 'kubernetes',
  batchIntervalMs: 100,
  maxOpsPerWrite: 1_000,
  writeAttempts: 5,
  retryMinMs: 200,
  retryMaxMs: 10_000,
  resyncIntervalMs: 300_000,
  kinds: Object.freeze(['Namespace', 'Endpoint', 'NetworkPolicy', 'ClusterNetworkPolicy'] as StoreKind[]),
  firstWriteWaitMs: 10_000,
})

export interface MirrorComponents {
  readonly store: FlatnetStore
  readonly log: Logger
  readonly metrics: SyncerMetrics
}

interface Batch {
  readonly full: Set<StoreKind>
  readonly keys: Map<StoreKind, Set<string>>
}

const conflictKey = (kind: StoreKind, key: string): string => `${kind}\u0000${key}`

/** A stored object's JSON; undefined when it does not parse (it then belongs to nobody we know). */
function parseJson(json: string): unknown {
  try {
    return JSON.parse(json) as unknown
  } catch {
    return undefined
  }
}

/** The JSON part of a stored object (`<modRevision>\n<createRevision>\n<json>`). */
function storedJson(raw: string): string {
  const a = raw.indexOf('\n')
  return raw.slice(raw.indexOf('\n', a + 1) + 1)
}

export class StoreMirror {
  readonly config: MirrorConfig
  /** The store revision after the last write or check. */
  revision = 0
  private readonly desired = new Map<StoreKind, Map<string, Desired>>()
  private readonly listed = new Set<StoreKind>()
  private pending: Batch = { full: new Set(), keys: new Map() }
  private readonly conflicts = new Map<string, string>()
  private timer: NodeJS.Timeout | undefined
  private timerDue = 0
  private resyncTimer: NodeJS.Timeout | undefined
  private flushing: Promise<void> | undefined
  private failures = 0
  private stopped = false
  private readonly stopping = new AbortController()
  private settledWaiters: (() => void)[] = []
  private readonly startedAt = Date.now()
  private written = false

  constructor(
    private readonly components: MirrorComponents,
    options: Partial<MirrorConfig> = {},
  ) {
    this.config = Object.freeze({ ...MIRROR_DEFAULTS, ...options })
    if (this.config.resyncIntervalMs > 0) {
      this.resyncTimer = setInterval(() => {
        for (const kind of this.listed) this.pending.full.add(kind)
        this.schedule()
      }, this.config.resyncIntervalMs)
      this.resyncTimer.unref()
    }
  }

  /** After a complete list: `objects` is everything of `kind` the API has. */
  replace(kind: StoreKind, objects: ReadonlyMap<string, Desired>): void {
    if (this.stopped) return
    this.desired.set(kind, new Map(objects))
    this.listed.add(kind)
    this.pending.full.add(kind)
    this.pending.keys.delete(kind)
    this.schedule()
  }

  /** After one event: `desired` undefined means the API has no object to mirror under `key`. */
  set(kind: StoreKind, key: string, desired: Desired | undefined): void {
    if (this.stopped || !this.listed.has(kind)) return
    const map = this.desired.get(kind) as Map<string, Desired>
    const before = map.get(key)
    if (desired === undefined) map.delete(key)
    else map.set(key, desired)
    if (before === desired || (before !== undefined && before !== INVALID && desired !== undefined && desired !== INVALID && before.json === desired.json)) return
    if (this.pending.full.has(kind)) return
    let keys = this.pending.keys.get(kind)
    if (!keys) this.pending.keys.set(kind, (keys = new Set()))
    keys.add(key)
    this.schedule()
  }

  /** Nothing waits to be written, and every kind named has been listed and written. */
  settled(kinds: readonly StoreKind[]): boolean {
    return kinds.every((k) => this.listed.has(k)) && this.isEmpty(this.pending) && this.flushing === undefined && this.timer === undefined
  }

  /** Resolves once settled(kinds) holds (checked after every flush). */
  async whenSettled(kinds: readonly StoreKind[], timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!this.settled(kinds)) {
      if (Date.now() > deadline) throw new Error(`the store mirror did not settle within ${timeoutMs} ms`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 50)
        this.settledWaiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** Keys the API has that another writer holds in the store. */
  conflictCount(): number {
    return this.conflicts.size
  }

  /**
   * Stops flushing. With `flush`, what is pending is written first (bounded by the store's
   * command timeout); a write in flight always completes.
   */
  async stop(opts: { flush?: boolean } = {}): Promise<void> {
    clearInterval(this.resyncTimer)
    clearTimeout(this.timer)
    this.timer = undefined
    // Cuts a backoff pause short, and keeps anything from being scheduled again.
    this.stopping.abort()
    await this.flushing
    if (opts.flush && !this.stopped && !this.isEmpty(this.pending)) await this.flush()
    this.stopped = true
    await this.flushing
    this.components.metrics.conflicts.set(0)
    this.wakeWaiters()
  }

  private isEmpty(b: Batch): boolean {
    return b.full.size === 0 && [...b.keys.values()].every((s) => s.size === 0)
  }

  private schedule(): void {
    if (this.stopping.signal.aborted || this.flushing) return
    let delayMs = this.config.batchIntervalMs
    // The first write waits until every kind is listed: agents then see the cluster appear in
    // one revision, not namespaces first and pods a moment later.
    if (!this.written && !this.config.kinds.every((k) => this.listed.has(k))) {
      delayMs = Math.max(delayMs, this.startedAt + this.config.firstWriteWaitMs - Date.now())
    }
    const due = Date.now() + delayMs
    if (this.timer && this.timerDue <= due) return
    clearTimeout(this.timer)
    this.timerDue = due
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.written = true
      void this.flush()
    }, delayMs)
  }

  private wakeWaiters(): void {
    for (const w of this.settledWaiters.splice(0)) w()
  }

  private flush(): Promise<void> {
    if (this.flushing) return this.flushing
    const batch = this.pending
    this.pending = { full: new Set(), keys: new Map() }
    this.flushing = this.writeBatch(batch)
      .then(() => {
        this.failures = 0
      })
      .catch(async (err: unknown) => {
        // Put the work back (changes that arrived meanwhile are already in `pending`) and retry later.
        for (const kind of batch.full) this.pending.full.add(kind)
        for (const [kind, keys] of batch.keys) {
          if (this.pending.full.has(kind)) continue
          let into = this.pending.keys.get(kind)
          if (!into) this.pending.keys.set(kind, (into = new Set()))
          for (const k of keys) into.add(k)
        }
        this.failures++
        this.components.metrics.storeWrites.inc({ result: 'error' })
        const retryInMs = backoffMs(this.failures, this.config.retryMinMs, this.config.retryMaxMs)
        this.components.log.warn({ err: (err as Error).message, retryInMs }, 'store write failed; will retry')
        await sleep(retryInMs, this.stopping.signal)
      })
      .finally(() => {
        this.flushing = undefined
        if (!this.isEmpty(this.pending)) this.schedule()
        this.wakeWaiters()
      })
    return this.flushing
  }

  private async writeBatch(batch: Batch): Promise<void> {
    const { store, metrics, log } = this.components
    for (let attempt = 1; ; attempt++) {
      const { revision, stored } = await this.read(batch)
      const ops = this.plan(batch, stored)
      this.revision = revision
      metrics.storeRevision.set(revision)
      if (ops.length === 0) {
        metrics.storeWrites.inc({ result: 'unchanged' })
        return
      }
      let expected = revision
      let moved = false
      for (let i = 0; i < ops.length; i += this.config.maxOpsPerWrite) {
        const chunk = ops.slice(i, i + this.config.maxOpsPerWrite)
        try {
          const outcome = await store.write(chunk, { ifRevision: expected })
          expected = outcome.revision
        } catch (err) {
          if (!(err instanceof RevisionMismatchError)) throw err
          moved = true
          break
        }
        const puts = chunk.filter((o) => o.op === 'put').length
        metrics.storeOps.inc({ op: 'put' }, puts)
        metrics.storeOps.inc({ op: 'delete' }, chunk.length - puts)
        metrics.storeWrites.inc({ result: 'written' })
        log.info({ revision: expected, puts, deletes: chunk.length - puts }, 'store written')
      }
      this.revision = expected
      metrics.storeRevision.set(expected)
      if (!moved) return
      metrics.storeWrites.inc({ result: 'mismatch' })
      if (attempt >= this.config.writeAttempts) throw new Error(`the store kept changing under ${attempt} write attempts`)
    }
  }

  /** The revision and the stored JSON of every key the batch touches, at one revision (MULTI). */
  private async read(batch: Batch): Promise<{ revision: number; stored: Map<StoreKind, Map<string, string>> }> {
    const { store } = this.components
    const full = [...batch.full]
    const partial = [...batch.keys].filter(([kind, keys]) => !batch.full.has(kind) && keys.size > 0).map(([kind, keys]) => [kind, [...keys]] as const)
    const replies = await store.call('read for the Kubernetes syncer', async () => {
      const multi = store.client.multi().get(store.keys.revision)
      for (const kind of full) multi.hgetall(store.keys.objects(kind))
      for (const [kind, keys] of partial) multi.hmget(store.keys.objects(kind), ...keys)
      return (await multi.exec()) ?? []
    })
    const value = (i: number): unknown => {
      const [err, v] = replies[i] ?? [new Error('missing reply'), null]
      if (err) throw err
      return v
    }
    const stored = new Map<StoreKind, Map<string, string>>()
    full.forEach((kind, i) => {
      const hash = value(i + 1) as Record<string, string>
      stored.set(kind, new Map(Object.entries(hash).map(([k, raw]) => [k, storedJson(raw)])))
    })
    partial.forEach(([kind, keys], i) => {
      const raws = value(full.length + 1 + i) as (string | null)[]
      const m = new Map<string, string>()
      keys.forEach((k, j) => {
        const raw = raws[j]
        if (raw != null) m.set(k, storedJson(raw))
      })
      stored.set(kind, m)
    })
    return { revision: Number(value(0) ?? 0), stored }
  }

  private plan(batch: Batch, stored: Map<StoreKind, Map<string, string>>): WriteOp[] {
    const ops: WriteOp[] = []
    for (const [kind, current] of stored) {
      const desired = this.desired.get(kind) ?? new Map<string, Desired>()
      const keys = batch.full.has(kind) ? new Set([...current.keys(), ...desired.keys()]) : (batch.keys.get(kind) ?? new Set<string>())
      for (const key of [...keys].sort()) {
        const have = current.get(key)
        const desiredNow = desired.get(key)
        if (desiredNow === INVALID) continue
        const want = kind === 'Endpoint' && desiredNow !== undefined ? this.overAttachment(desiredNow, have) : desiredNow
        if (want === undefined) {
          this.clearConflict(kind, key)
          if (have !== undefined && (this.owns(have) || this.leftover(have))) ops.push({ op: 'delete', kind, key })
          continue
        }
        if (have === want.json) {
          this.clearConflict(kind, key)
          continue
        }
        if (have !== undefined && !this.owns(have) && !this.adoptable(kind, have)) {
          this.noteConflict(kind, key, have)
          continue
        }
        this.clearConflict(kind, key)
        ops.push({ op: 'put', kind, key, value: want.value })
      }
    }
    this.components.metrics.conflicts.set(this.conflicts.size)
    return ops
  }

  /** The pod as it should be stored over what the store holds: see pod-attachment.ts. */
  private overAttachment(want: DesiredObject, have: string | undefined): DesiredObject | undefined {
    const stored = have !== undefined && have.includes(`"${AGENT_NODE_ANNOTATION}"`) ? parseJson(have) : undefined
    if (stored === undefined) return want.onlyOverAttachment ? undefined : want
    const value = podOverAttachment(want.value, stored, want.onlyOverAttachment === true)
    return value === undefined ? undefined : value === want.value ? want : desiredObject(value)
  }

  private leftover(json: string): boolean {
    return json.includes(`"${AGENT_NODE_ANNOTATION}"`) && detachedLeftover(parseJson(json))
  }

  private owns(json: string): boolean {
    // Most stored objects of other writers carry no annotation at all: skip parsing those.
    if (!json.includes('"flatnet.dev/source"')) return false
    try {
      return sourceOf(JSON.parse(json)) === this.config.source
    } catch {
      return false
    }
  }

  /**
   * A Pod endpoint without any ownership mark: what the node agent writes on CNI ADD when the
   * syncer has not mirrored the pod yet (the API learns the pod's IP only after CNI ADD). The API
   * has a pod under this key, so it is the syncer's to complete (labels, ports) from now on.
   * HostEndpoints, and Pods marked by another source, are never adopted.
   */
  private adoptable(kind: StoreKind, json: string): boolean {
    if (kind !== 'Endpoint') return false
    try {
      const value = JSON.parse(json) as { kind?: unknown }
      return value.kind === 'Pod' && sourceOf(value) === undefined
    } catch {
      return false
    }
  }

  private noteConflict(kind: StoreKind, key: string, have: string): void {
    const k = conflictKey(kind, key)
    let owner = 'no flatnet.dev/source mark'
    try {
      const s = sourceOf(JSON.parse(have))
      if (s !== undefined) owner = `flatnet.dev/source: ${s}`
    } catch {
      // an unreadable stored object belongs to nobody we know
    }
    if (this.conflicts.get(k) === owner) return
    this.conflicts.set(k, owner)
    this.components.log.warn({ kind, key, owner }, 'the store holds this key for another writer: the Kubernetes object is not mirrored until that object is deleted')
  }

  private clearConflict(kind: StoreKind, key: string): void {
    this.conflicts.delete(conflictKey(kind, key))
  }
}
