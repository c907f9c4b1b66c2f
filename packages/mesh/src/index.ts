// First: libp2p needs Promise.withResolvers, which Node 20 lacks (see polyfills.ts).
import './polyfills.js'

export { promiseWithResolversPolyfilled } from './polyfills.js'
export * from './errors.js'
export type { MeshLog } from './log.js'
export * from './protocols.js'
export { PACKET_CHANNEL_DEFAULTS } from './packet-channel.js'
export type { PacketChannel, PacketChannelOptions, PacketChannelStats } from './packet-channel.js'
export { createMeshNode, MESH_DEFAULTS } from './mesh-node.js'
export type { MeshComponents, MeshNode, MeshOptions, PeerState, PeerStatus, PeerStatusEvent, RelayServerOptions } from './mesh-node.js'
