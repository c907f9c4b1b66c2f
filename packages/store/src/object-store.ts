/**
 * The shared store: typed objects in Redis, each write one atomic revision with its change feed.
 */
import type { Cluster, Redis } from 'ioredis'
import { canonicalJson } from './canonical-json.js'
import { ObjectRevisionMismatchError, RevisionMismatchError, StoreUnavailableError } from './errors.js'
import { STORE_KINDS, storeKeys, type StoreKeys, type StoreKind } from './keys.js'
import { APPLY_SCRIPT } from './lua.js'
import { StoreWatch, type WatchOptions } from './watch.js'

export type RedisClient = Redis | Cluster

export interface StoredObject {
  readonly kind: StoreKind
  readonly key: string
  /** The revision of the write that last changed it. */
  readonly revision: number
  /** The revision of the write that created it. */
  readonly createRevision: number
  readonly value: unknown
}

/**
 * One change of a write. `ifRevision`: only if this object is still at that revision (its
 * `StoredObject.revision`; 0: only if it does not exist), else the whole write fails with
 * ObjectRevisionMismatchError. Unlike the write's own `ifRevision`, other objects may change.
 */
export type WriteOp =
  | { readonly op: 'put'; readonly kind: StoreKind; readonly key: string; readonly value: unknown; readonly ifRevision?: number | undefined }
  | { readonly op: 'delete'; readonly kind: StoreKind; readonly key: string; readonly ifRevision?: number | undefined }

export type WriteResult = 'created' | 'configured' | 'unchanged' | 'deleted' | 'notfound'

export interface WriteOutcome {
  /** The store's revision after the write (unchanged when nothing changed). */
  readonly revision: number
  readonly results: readonly WriteResult[]
}

export interface StoreConfig {
  /** The flatnet cluster: every key of it carries `{<cluster>}`. */
  readonly cluster: string
  /** Feed entries kept (approximately); a watcher further behind than this resyncs. */
  readonly feedMaxLength: number
  /** Upper bound for one store operation, so that no command hangs. */
  readonly commandTimeoutMs: number
  /**
   * Replicas that must hold a write before it is acknowledged (Redis WAIT). With 1 and a
   * Sentinel set, a failover cannot lose an acknowledged revision. Ignored on Redis Cluster.
   */
  readonly minReplicas: number
}

export const STORE_DEFAULTS: StoreConfig = Object.freeze({
  cluster: 'default',
  feedMaxLength: 100_000,
  commandTimeoutMs: 5_000,
  minReplicas: 0,
})

export interface StoreComponents {
  readonly redis: RedisClient
  /** Where Redis is, for messages; never with credentials. */
  readonly where: string
}

export type StoreOptions = Partial<StoreConfig>

interface ApplyCommand {
  flatnetApply(numKeys: number, ...args: (string | number)[]): Promise<[number, string[]]>
}

/** Parses the stored form `<modRevision>\n<createRevision>\n<json>`. */
export function parseStored(kind: StoreKind, key: string, raw: string): StoredObject {
  const a = raw.indexOf('\n')
  const b = raw.indexOf('\n', a + 1)
  return { kind, key, revision: Number(raw.slice(0, a)), createRevision: Number(raw.slice(a + 1, b)), value: JSON.parse(raw.slice(b + 1)) }
}

export class FlatnetStore {
  readonly keys: StoreKeys
  readonly options: StoreConfig
  private readonly redis: RedisClient
  private lastTransportError: Error | undefined

  constructor(
    private readonly components: StoreComponents,
    options: StoreOptions = {},
  ) {
    this.options = Object.freeze({ ...STORE_DEFAULTS, ...options })
    this.keys = storeKeys(this.options.cluster)
    this.redis = components.redis
    // ioredis prints connection errors of a client without a listener; the store reports them
    // itself, as one line, when an operation fails.
    this.redis.on('error', (err: Error) => {
      this.lastTransportError = err
    })
    this.redis.defineCommand('flatnetApply', { lua: APPLY_SCRIPT })
  }

  get where(): string {
    return this.components.where
  }

  get client(): RedisClient {
    return this.redis
  }

  /** Runs a store operation with the command timeout, mapping transport failures to StoreUnavailableError. */
  async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const cause = this.lastTransportError ? `: ${this.lastTransportError.message}` : ''
        reject(new StoreUnavailableError(this.where, `no answer within ${this.options.commandTimeoutMs} ms (${what})${cause}`))
      }, this.options.commandTimeoutMs)
    })
    try {
      return await Promise.race([fn(), timeout])
    } catch (err) {
      if (err instanceof StoreUnavailableError || isReplyError(err)) throw err
      // "max retries per request" says less than the connection error that caused it.
      throw new StoreUnavailableError(this.where, (this.lastTransportError ?? (err as Error)).message)
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Writes objects atomically as one revision. `ifRevision`: only if the store is still at that
   * revision (optimistic concurrency for read-modify-write).
   */
  async write(ops: readonly WriteOp[], opts: { ifRevision?: number } = {}): Promise<WriteOutcome> {
    const kinds = [...new Set(ops.map((o) => o.kind))]
    const keys = [this.keys.revision, this.keys.feed, ...kinds.map((k) => this.keys.objects(k))]
    const args: (string | number)[] = [opts.ifRevision === undefined ? '' : String(opts.ifRevision), this.options.feedMaxLength]
    for (const o of ops) {
      args.push(o.op, kinds.indexOf(o.kind) + 3, o.kind, o.key, o.op === 'put' ? canonicalJson(o.value) : '', o.ifRevision === undefined ? '' : String(o.ifRevision))
    }
    try {
      const [revision, results] = await this.call('write', () => (this.redis as unknown as ApplyCommand).flatnetApply(keys.length, ...keys, ...args))
      if (this.options.minReplicas > 0 && !('nodes' in this.redis)) {
        const acked = Number(await this.call('wait', () => this.redis.call('WAIT', this.options.minReplicas, this.options.commandTimeoutMs)))
        if (acked < this.options.minReplicas) {
          throw new StoreUnavailableError(this.where, `revision ${revision} was written but reached ${acked} of ${this.options.minReplicas} replicas in time`)
        }
      }
      return { revision: Number(revision), results: results as WriteResult[] }
    } catch (err) {
      const o = isReplyError(err) ? /OBJECT_REVISION_MISMATCH (\d+) (\d+)/.exec((err as Error).message) : null
      if (o) {
        const op = ops[Number(o[1])] as WriteOp
        throw new ObjectRevisionMismatchError(op.kind, op.key, op.ifRevision as number, Number(o[2]))
      }
      const m = isReplyError(err) ? /REVISION_MISMATCH (\d+)/.exec((err as Error).message) : null
      if (m) throw new RevisionMismatchError(opts.ifRevision as number, Number(m[1]))
      throw err
    }
  }

  async revision(): Promise<number> {
    return Number((await this.call('revision', () => this.redis.get(this.keys.revision))) ?? 0)
  }

  async get(kind: StoreKind, key: string): Promise<StoredObject | undefined> {
    const raw = await this.call('get', () => this.redis.hget(this.keys.objects(kind), key))
    return raw == null ? undefined : parseStored(kind, key, raw)
  }

  async list(kind: StoreKind): Promise<StoredObject[]> {
    const all = await this.call('list', () => this.redis.hgetall(this.keys.objects(kind)))
    return Object.entries(all)
      .map(([key, raw]) => parseStored(kind, key, raw))
      .sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  }

  /** Every object of the given kinds at one revision (MULTI/EXEC: nothing can write in between). */
  async snapshot(kinds: readonly StoreKind[] = STORE_KINDS): Promise<{ revision: number; objects: StoredObject[] }> {
    const replies = await this.call('snapshot', async () => {
      const multi = this.redis.multi().get(this.keys.revision)
      for (const kind of kinds) multi.hgetall(this.keys.objects(kind))
      return (await multi.exec()) ?? []
    })
    const [revErr, rev] = replies[0] ?? [null, null]
    if (revErr) throw revErr
    const objects: StoredObject[] = []
    kinds.forEach((kind, i) => {
      const [err, hash] = replies[i + 1] ?? [null, {}]
      if (err) throw err
      for (const [key, raw] of Object.entries(hash as Record<string, string>)) objects.push(parseStored(kind, key, raw))
    })
    return { revision: Number(rev ?? 0), objects }
  }

  /** Reports what a node enforces; kept apart from objects so reports never bump the revision. */
  async setStatus(node: string, status: Record<string, unknown>): Promise<void> {
    await this.call('status', () => this.redis.hset(this.keys.status, node, canonicalJson(status)))
  }

  async listStatus(): Promise<Map<string, Record<string, unknown>>> {
    const all = await this.call('status', () => this.redis.hgetall(this.keys.status))
    return new Map(Object.entries(all).map(([node, json]) => [node, JSON.parse(json) as Record<string, unknown>]))
  }

  /** Loads a snapshot, then follows the feed. See watch.ts. */
  watch(options: WatchOptions): StoreWatch {
    const w = new StoreWatch(this, options)
    w.start()
    return w
  }

  async close(): Promise<void> {
    this.redis.disconnect()
  }
}

export function isReplyError(err: unknown): boolean {
  return err instanceof Error && err.name === 'ReplyError'
}
