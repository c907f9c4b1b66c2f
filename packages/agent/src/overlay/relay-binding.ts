/**
 * Gives every WireGuard peer of the userspace device a relay link: the mesh's packet channel to
 * the node that owns the peer's key. The device decides when to use it (relay-path.ts in the
 * wireguard package); this module only keeps the links in place as peers and channels come and
 * go.
 *
 *   mesh: confirmed record of node N (its WireGuard key K) ──> openPacketChannel(N) ──┐
 *   mesh: channel N opened by N                             ──────────────────────────┤
 *                                                                                     v
 *                                  device peer K exists? ──> device.setPeerRelay(K, channel)
 *
 * Only a key the node confirmed itself (signed and sent over the authenticated mesh connection)
 * is bound to its channel, so a key written into the store by someone else never gets a link.
 */
import type { MeshNode, PacketChannel } from '@flatnet/mesh'
import type { RelayLink } from '@flatnet/wireguard'

export interface RelayDevice {
  hasPeer(publicKey: string): boolean
  setPeerRelay(publicKey: string, link: RelayLink | null): void
}

export interface RelayBindingComponents {
  readonly mesh: Pick<MeshNode, 'onPeerRecord' | 'onPacketChannel' | 'openPacketChannel' | 'confirmedWireguardKey'>
  readonly device: RelayDevice
  readonly log?: { debug(obj: object, msg: string): void; warn(obj: object, msg: string): void } | undefined
}

export interface RelayBinding {
  /** Binds links for peers added to the device since (the agent calls it after a peer sync). */
  refresh(): void
  /** Which WireGuard keys currently have a link. */
  boundKeys(): string[]
  stop(): void
}

export function createRelayBinding(components: RelayBindingComponents): RelayBinding {
  const { mesh, device, log } = components
  /** Mesh PeerId -> its channel, once open. */
  const channels = new Map<string, PacketChannel>()
  /** WireGuard key -> the channel bound to it on the device. */
  const bound = new Map<string, PacketChannel>()
  const opening = new Set<string>()
  /** Nodes whose record the mesh confirmed: each should have a channel. */
  const known = new Set<string>()
  let stopped = false

  const bind = (peerId: string): void => {
    const key = mesh.confirmedWireguardKey(peerId)
    const channel = channels.get(peerId)
    if (stopped || key === undefined || channel === undefined || channel.closed) return
    if (bound.get(key) === channel || !device.hasPeer(key)) return
    device.setPeerRelay(key, channel)
    bound.set(key, channel)
    log?.debug({ peerId, publicKey: key }, 'relay link bound')
  }

  const open = (peerId: string): void => {
    if (stopped || opening.has(peerId) || channels.get(peerId)?.closed === false) return
    opening.add(peerId)
    mesh.openPacketChannel(peerId).then(
      (channel) => {
        opening.delete(peerId)
        channels.set(peerId, channel)
        bind(peerId)
      },
      (err: unknown) => {
        opening.delete(peerId)
        log?.warn({ peerId, err: err instanceof Error ? err.message : String(err) }, 'no relay link to peer yet')
      },
    )
  }

  const offRecord = mesh.onPeerRecord((_record, peerId) => {
    known.add(peerId)
    if (channels.get(peerId)?.closed === false) bind(peerId)
    else open(peerId)
  })
  const offChannel = mesh.onPacketChannel((channel) => {
    channels.set(channel.peerId, channel)
    bind(channel.peerId)
  })

  return {
    refresh() {
      for (const peerId of known) {
        if (channels.get(peerId)?.closed === false) bind(peerId)
        else open(peerId)
      }
    },
    boundKeys() {
      return [...bound.keys()]
    },
    stop() {
      stopped = true
      offRecord()
      offChannel()
      for (const key of bound.keys()) if (device.hasPeer(key)) device.setPeerRelay(key, null)
      bound.clear()
    },
  }
}
