/**
 * The agent's copy of the store: every object at the revision the watch last reached, and which
 * keys changed since the calculation last looked. Fed by StoreWatch events (cheap: a map write
 * per event); read by the calculation in the apply pass.
 */
import type { StoredObject, StoreKind, WatchEvent } from '@flatnet/store'

export interface MirrorChange {
  readonly kind: StoreKind
  readonly key: string
  /** Undefined when the object was deleted. */
  readonly object: StoredObject | undefined
}

const id = (kind: string, key: string): string => `${kind}\u0000${key}`

export class StoreMirror {
  /** Revision of the last whole state (an in-sync event); 0 before the first. */
  revision = 0
  private readonly objects = new Map<string, StoredObject>()
  private readonly changed = new Map<string, MirrorChange>()

  /** Returns true when the event completes a revision (time to calculate). */
  onEvent(event: WatchEvent): boolean {
    switch (event.type) {
      case 'put':
        this.objects.set(id(event.object.kind, event.object.key), event.object)
        this.changed.set(id(event.object.kind, event.object.key), { kind: event.object.kind, key: event.object.key, object: event.object })
        return false
      case 'delete':
        this.objects.delete(id(event.kind, event.key))
        this.changed.set(id(event.kind, event.key), { kind: event.kind, key: event.key, object: undefined })
        return false
      case 'in-sync':
        this.revision = event.revision
        return true
      default:
        return false
    }
  }

  /** Replaces the whole state (the local snapshot at start); every object counts as changed. */
  load(revision: number, objects: readonly StoredObject[]): void {
    for (const o of this.objects.values()) this.changed.set(id(o.kind, o.key), { kind: o.kind, key: o.key, object: undefined })
    this.objects.clear()
    for (const o of objects) {
      this.objects.set(id(o.kind, o.key), o)
      this.changed.set(id(o.kind, o.key), { kind: o.kind, key: o.key, object: o })
    }
    this.revision = revision
  }

  /** The changes since the last call, one per key (the latest), and forgets them. */
  takeChanges(): MirrorChange[] {
    const out = [...this.changed.values()]
    this.changed.clear()
    return out
  }

  get(kind: StoreKind, key: string): StoredObject | undefined {
    return this.objects.get(id(kind, key))
  }

  list(kind?: StoreKind): StoredObject[] {
    const all = [...this.objects.values()]
    return kind === undefined ? all : all.filter((o) => o.kind === kind)
  }
}
