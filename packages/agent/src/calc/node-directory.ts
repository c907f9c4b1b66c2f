/**
 * The nodes of the cluster as this agent trusts them: each stored Node object is checked once
 * per change (signature by the key in its PeerId, fields, admission) and kept only if it
 * verifies. A record forged in Redis, or one whose admission was withdrawn, never becomes a
 * peer, a mesh contact or an admitted PeerId.
 */
import { verifyNodeValue, type NodeRecord, type StoredObject } from '@flatnet/store'
import type { MirrorChange } from '../sync/store-mirror.js'

export interface DirectoryEntry {
  readonly record: NodeRecord
  readonly admitted: boolean
}

export class NodeDirectory {
  private readonly entries = new Map<string, DirectoryEntry>()
  private readonly refused = new Map<string, string>()
  /** Verifications run in order, so a later change of one key always wins. */
  private chain: Promise<void> = Promise.resolve()

  /** Verifies the changed Node objects; resolves once they are in. */
  update(changes: readonly MirrorChange[]): Promise<void> {
    const nodes = changes.filter((c) => c.kind === 'Node')
    if (nodes.length === 0) return this.chain
    this.chain = this.chain.then(async () => {
      for (const c of nodes) await this.verify(c.key, c.object)
    })
    return this.chain
  }

  private async verify(key: string, object: StoredObject | undefined): Promise<void> {
    if (object === undefined) {
      this.entries.delete(key)
      this.refused.delete(key)
      return
    }
    try {
      const v = await verifyNodeValue(object.value, { key })
      this.entries.set(key, { record: v.record, admitted: v.admitted })
      this.refused.delete(key)
    } catch (err) {
      this.entries.delete(key)
      this.refused.set(key, err instanceof Error ? err.message : String(err))
    }
  }

  get(peerId: string): DirectoryEntry | undefined {
    return this.entries.get(peerId)
  }

  isAdmitted(peerId: string): boolean {
    return this.entries.get(peerId)?.admitted === true
  }

  /** Verified records of admitted nodes. */
  admitted(): NodeRecord[] {
    return [...this.entries.values()].filter((e) => e.admitted).map((e) => e.record)
  }

  /** Node objects that did not verify, with why. */
  refusedNodes(): { peerId: string; reason: string }[] {
    return [...this.refused].map(([peerId, reason]) => ({ peerId, reason }))
  }
}
