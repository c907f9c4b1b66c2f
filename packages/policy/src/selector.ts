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

  constructor(spec: LabelSelectorSpec) {
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

  /** The part already made under `key`, else `make()`'s result, remembered. Keys must not collide across kinds. */
  share<T>(key: string, make: () => T): T {
    if (this.parts.has(key)) return this.parts.get(key) as T
    const made = make()
    this.parts.set(key, made)
    return made
  }

  get(spec: LabelSelectorSpec): Selector {
    const fresh = new Selector(spec)
    const known = this.cache.get(fresh.text)
    if (known) return known
    this.cache.set(fresh.text, fresh)
    return fresh
  }
}
