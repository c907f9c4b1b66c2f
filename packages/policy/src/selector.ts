/**
 * Compiled label selectors. `matches` runs on the lookup path, so requirements are flattened
 * into arrays with the common `key=value` case first and no allocation per call.
 */
import type { Labels } from '@flatnet/core'
import type { LabelSelectorSpec } from './model.js'

const enum Op {
  Equals,
  In,
  NotIn,
  Exists,
  DoesNotExist,
}

interface Requirement {
  readonly key: string
  readonly op: Op
  readonly value: string
  readonly values: ReadonlySet<string>
}

const NO_VALUES: ReadonlySet<string> = new Set()

export class Selector {
  /** Canonical text: equal selectors have equal keys (`pod=a,tier in (x,y),!gone`). */
  readonly text: string
  readonly matchesAll: boolean
  private readonly reqs: readonly Requirement[]

  /** `id`: its index in the SelectorCache that made it (rule programs refer to selectors by id); -1 outside one. */
  constructor(
    spec: LabelSelectorSpec,
    readonly id = -1,
  ) {
    const reqs: Requirement[] = []
    for (const [key, value] of Object.entries(spec.matchLabels)) reqs.push({ key, op: Op.Equals, value, values: NO_VALUES })
    for (const e of spec.matchExpressions) {
      const op = e.operator === 'In' ? Op.In : e.operator === 'NotIn' ? Op.NotIn : e.operator === 'Exists' ? Op.Exists : Op.DoesNotExist
      if (op === Op.In && e.values.length === 1) reqs.push({ key: e.key, op: Op.Equals, value: e.values[0] as string, values: NO_VALUES })
      else reqs.push({ key: e.key, op, value: '', values: new Set(e.values) })
    }
    reqs.sort((a, b) => a.op - b.op || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    this.reqs = reqs
    this.matchesAll = reqs.length === 0
    this.text = reqs.length === 0 ? '{}' : reqs.map(formatRequirement).join(',')
  }

  matches(labels: Labels): boolean {
    const reqs = this.reqs
    for (let i = 0; i < reqs.length; i++) {
      const r = reqs[i] as Requirement
      const v = labels.get(r.key)
      switch (r.op) {
        case Op.Equals:
          if (v !== r.value) return false
          break
        case Op.In:
          if (v === undefined || !r.values.has(v)) return false
          break
        case Op.NotIn:
          if (v !== undefined && r.values.has(v)) return false
          break
        case Op.Exists:
          if (v === undefined) return false
          break
        case Op.DoesNotExist:
          if (v !== undefined) return false
          break
      }
    }
    return true
  }
}

function formatRequirement(r: Requirement): string {
  const list = (): string => [...r.values].sort().join(',')
  switch (r.op) {
    case Op.Equals:
      return `${r.key}=${r.value}`
    case Op.In:
      return `${r.key} in (${list()})`
    case Op.NotIn:
      return `${r.key} notin (${list()})`
    case Op.Exists:
      return r.key
    case Op.DoesNotExist:
      return `!${r.key}`
  }
}

/**
 * Shares one compiled Selector among equal specs (policies repeat selectors a lot), and likewise
 * other compiled parts that policies repeat (port lists, peer lists). Besides the memory, a
 * shared part stays in the CPU cache across lookups that reach it through different policies.
 */
export class SelectorCache {
  private readonly cache = new Map<string, Selector>()
  private readonly parts = new Map<string, unknown>()
  private readonly nameIds = new Map<string, number>()
  /**
   * Every selector made, by id, and every named port name, by id: what rule programs refer to.
   * Append-only, so a snapshot can hold these very arrays and every id it knows stays valid.
   */
  readonly byId: Selector[] = []
  readonly names: string[] = []
  /**
   * The selectors that rules apply to a peer's namespace, by slot. A namespace record holds the
   * result of each for its labels as a bit (see `namespaceBits`), so that a lookup tests one bit
   * instead of the namespace's label map. Append-only, like `byId`.
   */
  readonly namespaceSelectors: Selector[] = []
  private readonly namespaceSlots = new Map<Selector, number>()
  private readonly bitsByLabels = new WeakMap<Labels, Int32Array>()

  /** The part already made under `key`, else `make()`'s result, remembered. Keys must not collide across kinds. */
  share<T>(key: string, make: () => T): T {
    if (this.parts.has(key)) return this.parts.get(key) as T
    const made = make()
    this.parts.set(key, made)
    return made
  }

  get(spec: LabelSelectorSpec): Selector {
    const fresh = new Selector(spec, this.byId.length)
    const known = this.cache.get(fresh.text)
    if (known) return known
    this.cache.set(fresh.text, fresh)
    this.byId.push(fresh)
    return fresh
  }

  /**
   * `get()` for a selector that rules apply to peers' namespaces: also gives it a slot when it
   * has none, here at policy compile time, so that the namespace records of the same commit
   * already hold its bit.
   */
  forNamespaces(spec: LabelSelectorSpec): Selector {
    const selector = this.get(spec)
    if (!selector.matchesAll) this.namespaceSlot(selector)
    return selector
  }

  /** The slot of a selector applied to peers' namespaces (see `namespaceSelectors`). */
  namespaceSlot(selector: Selector): number {
    let slot = this.namespaceSlots.get(selector)
    if (slot === undefined) {
      slot = this.namespaceSelectors.length
      this.namespaceSlots.set(selector, slot)
      this.namespaceSelectors.push(selector)
    }
    return slot
  }

  /**
   * Which namespace selectors match `labels`: element 0 is how many slots the array covers
   * (every slot known now), and bit `slot & 31` of element `1 + (slot >> 5)` is set when
   * selector `slot` matches. Kept per label map (namespace records with equal labels share
   * one), and made anew, reusing the known bits, when slots were added since.
   */
  namespaceBits(labels: Labels): Int32Array {
    const known = this.bitsByLabels.get(labels)
    const count = this.namespaceSelectors.length
    if (known !== undefined && known[0] === count) return known
    const bits = new Int32Array(1 + ((count + 31) >> 5))
    bits[0] = count
    for (let slot = 0; slot < count; slot++) {
      const done = known !== undefined && slot < (known[0] as number)
      const match = done ? ((known[1 + (slot >> 5)] as number) >>> (slot & 31)) & 1 : (this.namespaceSelectors[slot] as Selector).matches(labels) ? 1 : 0
      const word = 1 + (slot >> 5)
      if (match) bits[word] = (bits[word] as number) | (1 << (slot & 31))
    }
    this.bitsByLabels.set(labels, bits)
    return bits
  }

  /** A small number for a named port's name (for rule programs). */
  nameId(name: string): number {
    let id = this.nameIds.get(name)
    if (id === undefined) {
      id = this.names.length
      this.nameIds.set(name, id)
      this.names.push(name)
    }
    return id
  }
}
