/**
 * StoreWatch: a consistent snapshot at revision R, then the change feed from R.
 *
 *   snapshot (MULTI: rev + every object) ──> emit puts/deletes against what we had ──> in-sync(R)
 *   XREAD BLOCK feed from <R>-max ──> entries must continue at R+1 ──> emit, advance
 *        │ gap (feed trimmed past us)             ──> resync: new snapshot, emit only the differences
 *        │ the store's revision went backwards    ──> resync (a failover lost writes we had seen)
 *        └ connection error                       ──> retry with capped backoff, resume from the last entry
 *
 * Every entry of one revision is emitted in order, none twice; a consumer that acts when the
 * revision changes (or on in-sync) always sees whole revisions.
 */
import type { FlatnetStore, RedisClient, StoredObject } from './object-store.js'
import { STORE_KINDS, type StoreKind } from './keys.js'

export type WatchEvent =
  | { readonly type: 'put'; readonly revision: number; readonly object: StoredObject; readonly previous?: StoredObject | undefined }
  | { readonly type: 'delete'; readonly revision: number; readonly kind: StoreKind; readonly key: string; readonly previous: StoredObject }
  /** The watcher holds the whole state at `revision`: after the first load, a resync, or a caught-up read. */
  | { readonly type: 'in-sync'; readonly revision: number; readonly resynced: boolean }
  | { readonly type: 'error'; readonly error: Error; readonly retryInMs: number }

export interface WatchOptions {
  readonly kinds?: readonly StoreKind[]
  readonly onEvent: (event: WatchEvent) => void
  /** Backoff between attempts after a lost connection (WATCH_DEFAULTS.retryMinMs/retryMaxMs). */
  readonly retryMinMs?: number | undefined
  readonly retryMaxMs?: number | undefined
}

export const WATCH_DEFAULTS = Object.freeze({
  /** How long one XREAD blocks; also how often a quiet watcher checks the revision did not go back. */
  blockMs: 2_000,
  /** Entries read per XREAD. */
  batch: 1_000,
  retryMinMs: 100,
  retryMaxMs: 5_000,
})

/** Stream ids are `<revision>-<seq>`; this id sorts after every entry of revision `r`. */
const afterRevision = (r: number): string => `${r}-18446744073709551615`
const cacheKey = (kind: string, key: string): string => `${kind}\u0000${key}`

export class StoreWatch {
  /** The revision of the last whole state this watcher emitted. */
  revision = 0
  private lastId = '0-0'
  private readonly cache = new Map<string, StoredObject>()
  private readonly kinds: ReadonlySet<StoreKind>
  private reader: RedisClient | undefined
  private stopped = false
  private loop: Promise<void> | undefined
  private needResync = true
  private syncWaiters: ((revision: number) => void)[] = []
  private synced = false
  private paused: { parked: () => void; resume: Promise<void>; release: () => void } | undefined

  constructor(
    private readonly store: FlatnetStore,
    private readonly options: WatchOptions,
  ) {
    this.kinds = new Set(options.kinds ?? STORE_KINDS)
  }

  start(): void {
    // Blocking reads get their own connection: a blocked XREAD would hold up every other command.
    this.reader = this.store.client.duplicate()
    // Read failures surface through the loop (as error events); this only keeps ioredis quiet.
    this.reader.on('error', () => undefined)
    this.loop = this.run()
  }

  /** Resolves with the revision once the watcher holds a whole state. */
  whenInSync(): Promise<number> {
    if (this.synced) return Promise.resolve(this.revision)
    return new Promise((resolve) => this.syncWaiters.push(resolve))
  }

  /** The objects this watcher currently holds. */
  objects(): StoredObject[] {
    return [...this.cache.values()]
  }

  /**
   * Stops reading after the read in flight (at most one block interval); resolves once parked.
   * Entries written meanwhile are read on resume(), or, if the feed dropped them, resynced.
   */
  pause(): Promise<void> {
    if (this.paused) return Promise.resolve()
    let release = (): void => {}
    const resume = new Promise<void>((r) => (release = r))
    return new Promise((parked) => (this.paused = { parked, resume, release }))
  }

  resume(): void {
    const p = this.paused
    this.paused = undefined
    p?.release()
  }

  async stop(): Promise<void> {
    this.stopped = true
    this.resume()
    this.reader?.disconnect()
    await this.loop
  }

  private emit(event: WatchEvent): void {
    try {
      this.options.onEvent(event)
    } catch {
      // A consumer's failure must not make the watcher resync or skip entries.
    }
  }

  private markInSync(resynced: boolean): void {
    this.emit({ type: 'in-sync', revision: this.revision, resynced })
    if (!this.synced) {
      this.synced = true
      for (const w of this.syncWaiters.splice(0)) w(this.revision)
    }
  }

  private async run(): Promise<void> {
    const retryMinMs = this.options.retryMinMs ?? WATCH_DEFAULTS.retryMinMs
    const retryMaxMs = this.options.retryMaxMs ?? WATCH_DEFAULTS.retryMaxMs
    let retryMs: number = retryMinMs
    while (!this.stopped) {
      if (this.paused) {
        this.paused.parked()
        await this.paused.resume
        continue
      }
      try {
        if (this.needResync) await this.resync()
        await this.tail()
        retryMs = retryMinMs
      } catch (err) {
        if (this.stopped) break
        this.emit({ type: 'error', error: err as Error, retryInMs: retryMs })
        await new Promise((r) => setTimeout(r, retryMs))
        retryMs = Math.min(retryMs * 2, retryMaxMs)
        // After a break, make sure the store did not go back while we were away.
        await this.checkRegression().catch(() => undefined)
      }
    }
  }

  private async checkRegression(): Promise<void> {
    const current = await this.store.revision()
    if (current < this.revision) this.needResync = true
  }

  private async resync(): Promise<void> {
    const { revision, objects } = await this.store.snapshot([...this.kinds])
    const seen = new Set<string>()
    for (const object of objects) {
      const k = cacheKey(object.kind, object.key)
      seen.add(k)
      const previous = this.cache.get(k)
      if (previous && previous.revision === object.revision && JSON.stringify(previous.value) === JSON.stringify(object.value)) continue
      this.cache.set(k, object)
      this.emit({ type: 'put', revision, object, previous })
    }
    for (const [k, previous] of this.cache) {
      if (seen.has(k)) continue
      this.cache.delete(k)
      this.emit({ type: 'delete', revision, kind: previous.kind, key: previous.key, previous })
    }
    const first = this.lastId === '0-0'
    this.revision = revision
    this.lastId = afterRevision(revision)
    this.needResync = false
    this.markInSync(!first)
  }

  private async tail(): Promise<void> {
    const reader = this.reader as RedisClient
    const reply = (await reader.xread('COUNT', WATCH_DEFAULTS.batch, 'BLOCK', WATCH_DEFAULTS.blockMs, 'STREAMS', this.store.keys.feed, this.lastId)) as
      | [string, [string, string[]][]][]
      | null
    if (this.stopped) return
    if (!reply || reply.length === 0) {
      await this.checkRegression()
      return
    }
    const entries = reply[0]?.[1] ?? []
    for (const [id, fields] of entries) {
      const revision = Number(id.slice(0, id.indexOf('-')))
      if (revision > this.revision + 1) {
        // Entries between our revision and this one were trimmed away: start over from a snapshot.
        this.needResync = true
        return
      }
      if (revision !== this.revision) this.revision = revision
      this.lastId = id
      this.applyEntry(revision, fields)
    }
    // An XREAD that returned less than a full batch has caught up with the feed.
    if (entries.length < WATCH_DEFAULTS.batch) this.markInSync(false)
  }

  private applyEntry(revision: number, fields: string[]): void {
    const f: Record<string, string> = {}
    for (let i = 0; i + 1 < fields.length; i += 2) f[fields[i] as string] = fields[i + 1] as string
    const kind = f.kind as StoreKind
    if (!this.kinds.has(kind)) return
    const key = f.key as string
    const k = cacheKey(kind, key)
    const previous = this.cache.get(k)
    if (f.op === 'put') {
      const object: StoredObject = { kind, key, revision, createRevision: Number(f.created), value: JSON.parse(f.value as string) }
      this.cache.set(k, object)
      this.emit({ type: 'put', revision, object, previous })
    } else if (previous) {
      this.cache.delete(k)
      this.emit({ type: 'delete', revision, kind, key, previous })
    }
  }
}
