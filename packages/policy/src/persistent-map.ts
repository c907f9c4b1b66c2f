/**
 * An immutable string-keyed map with cheap updates, so that a new PolicySnapshot can share
 * almost everything with the previous one. Keys hash into a fixed directory of buckets; an
 * edit copies the directory once and only the buckets it touches. With 100,000 entries that is
 * one 4,096-slot array and a ~25-entry Map per changed key, instead of a 100,000-entry copy.
 */
const BUCKET_BITS = 12
const BUCKETS = 1 << BUCKET_BITS

function bucketOf(key: string): number {
  // FNV-1a over UTF-16 code units.
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h ^ (h >>> BUCKET_BITS)) & (BUCKETS - 1)
}

type Bucket<V> = ReadonlyMap<string, V> | undefined

export class PersistentMap<V> {
  private static readonly EMPTY = new PersistentMap<never>(new Array<Bucket<never>>(BUCKETS).fill(undefined), 0)

  private constructor(
    private readonly buckets: readonly Bucket<V>[],
    readonly size: number,
  ) {}

  static empty<V>(): PersistentMap<V> {
    return PersistentMap.EMPTY as unknown as PersistentMap<V>
  }

  get(key: string): V | undefined {
    return this.buckets[bucketOf(key)]?.get(key)
  }

  has(key: string): boolean {
    return this.buckets[bucketOf(key)]?.has(key) ?? false
  }

  *entries(): IterableIterator<[string, V]> {
    for (const b of this.buckets) if (b) yield* b.entries()
  }

  *values(): IterableIterator<V> {
    for (const b of this.buckets) if (b) yield* b.values()
  }

  *keys(): IterableIterator<string> {
    for (const b of this.buckets) if (b) yield* b.keys()
  }

  /** Starts a batch of changes; `commit()` returns the new map and leaves this one untouched. */
  edit(): PersistentMapEditor<V> {
    return new PersistentMapEditor(this.buckets, this.size, (buckets, size) => new PersistentMap(buckets, size))
  }
}

export class PersistentMapEditor<V> {
  private readonly buckets: Bucket<V>[]
  private readonly owned = new Set<number>()
  private done = false

  constructor(
    source: readonly Bucket<V>[],
    private size: number,
    private readonly build: (buckets: readonly Bucket<V>[], size: number) => PersistentMap<V>,
  ) {
    this.buckets = source.slice()
  }

  private writable(index: number): Map<string, V> {
    if (this.done) throw new Error('PersistentMapEditor used after commit')
    let bucket = this.buckets[index] as Map<string, V> | undefined
    if (!this.owned.has(index)) {
      bucket = new Map(bucket)
      this.buckets[index] = bucket
      this.owned.add(index)
    }
    return bucket as Map<string, V>
  }

  get(key: string): V | undefined {
    return this.buckets[bucketOf(key)]?.get(key)
  }

  set(key: string, value: V): this {
    const b = this.writable(bucketOf(key))
    if (!b.has(key)) this.size++
    b.set(key, value)
    return this
  }

  delete(key: string): this {
    const index = bucketOf(key)
    if (!this.buckets[index]?.has(key)) return this
    this.writable(index).delete(key)
    this.size--
    return this
  }

  commit(): PersistentMap<V> {
    this.done = true
    return this.build(this.buckets, this.size)
  }
}
