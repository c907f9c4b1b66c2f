/**
 * Calculation: which WireGuard peers this node should have, from the verified Node records of
 * the store. Pure: the same records give the same peers whatever order they arrived in.
 *
 *   Node record (verified signature, admitted, not this node) ──> peer
 *     publicKey  = record.wireguardPublicKey
 *     endpoint   = record.endpoints[0] (the node's own choice of where to be reached)
 *     allowedIps = record.blocks, exactly: cryptokey routing then accepts from a peer only the
 *                  addresses IPAM gave it, which is what makes source-IP policy safe
 */
import type { NodeRecord } from '@flatnet/store'
import type { PeerSettings } from '@flatnet/wireguard'

export interface DesiredPeer extends PeerSettings {
  /** The node's PeerId, for logs and the mesh. */
  readonly peerId: string
  readonly hostname: string | undefined
}

export function calculatePeers(records: Iterable<NodeRecord>, selfPeerId: string, options: { persistentKeepalive?: number } = {}): DesiredPeer[] {
  const byKey = new Map<string, DesiredPeer>()
  for (const r of records) {
    if (r.peerId === selfPeerId || r.blocks.length === 0) continue
    const peer: DesiredPeer = {
      peerId: r.peerId,
      hostname: r.hostname,
      publicKey: r.wireguardPublicKey,
      endpoint: r.endpoints[0],
      allowedIps: [...r.blocks].sort(),
      persistentKeepalive: options.persistentKeepalive,
    }
    // Two nodes claiming one WireGuard key cannot both be peers: keep the lower PeerId, so the
    // choice does not depend on arrival order.
    const other = byKey.get(peer.publicKey)
    if (other === undefined || peer.peerId < other.peerId) byKey.set(peer.publicKey, peer)
  }
  return [...byKey.values()].sort((a, b) => (a.peerId < b.peerId ? -1 : 1))
}

export interface PeerDiff {
  readonly set: readonly DesiredPeer[]
  readonly remove: readonly string[]
}

/** What to change on the device: peers new or different, and keys no longer wanted. */
export function diffPeers(desired: readonly DesiredPeer[], current: ReadonlyMap<string, PeerSettings>): PeerDiff {
  const set: DesiredPeer[] = []
  const wanted = new Set<string>()
  for (const p of desired) {
    wanted.add(p.publicKey)
    const c = current.get(p.publicKey)
    if (c === undefined || c.endpoint !== p.endpoint || c.allowedIps.join(',') !== p.allowedIps.join(',') || (c.persistentKeepalive ?? 0) !== (p.persistentKeepalive ?? 0)) set.push(p)
  }
  const remove = [...current.keys()].filter((k) => !wanted.has(k)).sort()
  return { set, remove }
}
