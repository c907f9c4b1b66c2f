/**
 * The flatnet control mesh node: a libp2p host (TCP, Noise, yamux, identify, ping, circuit
 * relay v2) whose PeerId is the node's Ed25519 key, with
 *
 * - admission gating: no connection, in either direction and direct or relayed, survives the
 *   Noise handshake unless `isAdmitted(remotePeerId)` says yes; revoked peers are cut off;
 * - `/flatnet/peer/1.0.0`: both ends of every connection exchange signed node records, and a
 *   record is accepted only if it is signed by the key of the connection's authenticated remote
 *   peer, which is what binds the peer's WireGuard public key to its PeerId ("confirmed");
 * - liveness: a periodic ping per known peer, with up/down events;
 * - `/flatnet/wg-relay/1.0.0`: packet channels for WireGuard datagrams, through a relay when
 *   the peer cannot be dialled directly, moving to a direct connection when one appears.
 *
 * Protocols, gating and the Node 20 decision are described in docs/mesh.md.
 */
import './polyfills.js'
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { InvalidArgumentError } from '@flatnet/core'
import { canonicalJson, checkNodePeerId, NodeNotAdmittedError, NodeRecordForgedError, verifySignedNodeRecord } from '@flatnet/store'
import type { NodeRecord, SignedNodeRecord } from '@flatnet/store'
import { circuitRelayServer, circuitRelayTransport, RELAY_V2_HOP_CODEC } from '@libp2p/circuit-relay-v2'
import { identify } from '@libp2p/identify'
import type { Connection, ConnectionGater, Libp2p, MultiaddrConnection, PeerId, PrivateKey, Startable, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import type { Ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { lpStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import type { Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { MeshNotRunningError, MeshPeerUnreachableError, MeshRecordRejectedError } from './errors.js'
import type { RecordRejectReason } from './errors.js'
import { silentLog } from './log.js'
import type { MeshLog } from './log.js'
import { MeshPacketChannel, PACKET_CHANNEL_DEFAULTS } from './packet-channel.js'
import type { PacketChannel, PacketChannelHost, PacketChannelOptions } from './packet-channel.js'
import { MAX_RECORD_BYTES, PEER_PROTOCOL, WG_RELAY_PROTOCOL } from './protocols.js'

export interface MeshComponents {
  /** The node key (Ed25519): it is the libp2p identity, so the PeerId is the node id. */
  readonly privateKey: PrivateKey
  /** Multiaddrs to listen on, e.g. `/ip4/0.0.0.0/tcp/7946`. */
  readonly listen: readonly string[]
  /** Whether a peer may talk to this node at all (approved or joined, and not revoked). Errors count as "no". */
  isAdmitted(peerId: string): boolean | Promise<boolean>
  /** This node's current signed record, sent to every peer it connects to. */
  localRecord(): SignedNodeRecord | Promise<SignedNodeRecord>
  readonly log?: MeshLog
}

export interface RelayServerOptions {
  /** Peers that may hold a relay reservation at once. Default 128. */
  readonly maxReservations?: number
}

export interface MeshOptions {
  /** Run a circuit relay v2 server: admitted peers may reserve a slot and be reached through this node. */
  readonly relayServer?: boolean | RelayServerOptions
  /**
   * Reserve a slot on a connected relay (listen on `/p2p-circuit`) so that peers that cannot
   * dial this node directly can come in through the relay. Default: true unless this node is a relay server.
   */
  readonly relayClient?: boolean
  /** Addresses to announce instead of the listen addresses (e.g. behind NAT). */
  readonly announce?: readonly string[]
  /** How often each known peer is pinged. Default 10 s; 0 turns the periodic ping off. */
  readonly pingIntervalMs?: number
  /** How long a ping may take before it counts as failed. Default 5 s. */
  readonly pingTimeoutMs?: number
  /** Failed pings in a row after which a peer is marked down. Default 2. */
  readonly downAfterFailures?: number
  /** Bound on one record exchange. Default 10 s. */
  readonly exchangeTimeoutMs?: number
  /** Bound on one dial attempt (direct, or through one relay). Default 10 s. */
  readonly dialTimeoutMs?: number
  /** How often a packet channel that runs through a relay tries to reach its peer directly. Default 30 s; 0 turns it off. */
  readonly directRetryMs?: number
  /** Inbound connections accepted per second from one host before libp2p refuses more. Default 25. */
  readonly inboundConnectionsPerSecond?: number
  readonly channel?: Partial<PacketChannelOptions>
  /**
   * Test hook: direct (non-relayed) connections with peers for which this returns true are
   * refused by the gater, which simulates two nodes that cannot reach each other. Not for production.
   */
  readonly denyDirect?: (peerId: string) => boolean
}

export type PeerStatus = 'up' | 'down'

export interface PeerStatusEvent {
  readonly peerId: string
  readonly status: PeerStatus
  /** Why: 'record exchanged', 'ping', 'disconnected', 'revoked', a ping failure... */
  readonly reason: string
  readonly rttMs?: number
}

export interface PeerState {
  readonly status: PeerStatus
  /** Round-trip time of the last successful ping, in ms. */
  readonly rttMs?: number
  /** When the peer last answered (record exchange or ping), ms since the epoch. */
  readonly lastSeen?: number
  /** Failed pings in a row. */
  readonly failures: number
}

export interface MeshNode extends Startable {
  start(): Promise<void>
  stop(): Promise<void>
  /** This node's PeerId (the node id), base58 `12D3KooW...`. */
  readonly peerId: string
  /** The addresses this node listens on / is reachable at, each ending in `/p2p/<peerId>`. */
  readonly multiaddrs: string[]
  readonly running: boolean
  /**
   * Connects to a peer given by PeerId or multiaddr (through a relay when a direct dial fails
   * and the peer id is known) and resolves with the remote PeerId once the records of the
   * connection have been exchanged. Rejects with NodeNotAdmittedError, MeshPeerUnreachableError
   * or MeshRecordRejectedError.
   */
  dial(target: string | Multiaddr): Promise<string>
  /** Closes every connection to the peer. */
  hangUp(peerId: string): Promise<void>
  /** PeerIds with at least one open connection. */
  connectedPeers(): string[]
  /** Called when a peer's record is confirmed for the first time or with a higher sequence. */
  onPeerRecord(cb: (record: NodeRecord, peerId: string) => void): () => void
  onPeerStatus(cb: (event: PeerStatusEvent) => void): () => void
  onRecordRejected(cb: (error: MeshRecordRejectedError) => void): () => void
  /** Called when a peer opens a packet channel to this node that this node did not open itself. */
  onPacketChannel(cb: (channel: PacketChannel) => void): () => void
  /** The peer's confirmed record, if one was exchanged. */
  peerRecord(peerId: string): NodeRecord | undefined
  /**
   * The WireGuard public key the peer's own node key signed, received over a connection
   * authenticated as that peer; undefined until then (or after revocation).
   */
  confirmedWireguardKey(peerId: string): string | undefined
  peerState(peerId: string): PeerState | undefined
  /** Round-trip time to the peer in ms (dials it if needed). */
  ping(peerId: string): Promise<number>
  /** The packet channel to the peer (one per peer), with its outgoing stream open. */
  openPacketChannel(peerId: string): Promise<PacketChannel>
  /** Sends this node's current record (localRecord()) to every connected peer again. */
  announce(): Promise<void>
  /** Cuts the peer off now and refuses it from then on, whatever isAdmitted says, until unrevoke(). */
  revoke(peerId: string): Promise<void>
  unrevoke(peerId: string): void
  /** Asks isAdmitted() again about every peer the node knows and cuts off those no longer admitted; returns them. */
  refreshAdmission(): Promise<string[]>
}

interface ResolvedOptions {
  readonly relayServer: false | Required<RelayServerOptions>
  readonly relayClient: boolean
  readonly announce: readonly string[]
  readonly pingIntervalMs: number
  readonly pingTimeoutMs: number
  readonly downAfterFailures: number
  readonly exchangeTimeoutMs: number
  readonly dialTimeoutMs: number
  readonly directRetryMs: number
  readonly inboundConnectionsPerSecond: number
  readonly channel: PacketChannelOptions
  readonly denyDirect: ((peerId: string) => boolean) | undefined
}

export const MESH_DEFAULTS = Object.freeze({
  maxReservations: 128,
  pingIntervalMs: 10_000,
  pingTimeoutMs: 5_000,
  downAfterFailures: 2,
  exchangeTimeoutMs: 10_000,
  dialTimeoutMs: 10_000,
  directRetryMs: 30_000,
  inboundConnectionsPerSecond: 25,
})

/**
 * Builds a mesh node (not started). Throws InvalidArgumentError for a key that is not Ed25519,
 * a listen address that is not a multiaddr, or an out-of-range option.
 */
export async function createMeshNode(components: MeshComponents, options: MeshOptions = {}): Promise<MeshNode> {
  if (components.privateKey.type !== 'Ed25519') {
    throw new InvalidArgumentError(`the mesh node key is ${components.privateKey.type}; node keys must be Ed25519 (the PeerId is the node id)`)
  }
  for (const a of [...components.listen, ...(options.announce ?? [])]) {
    try {
      multiaddr(a)
    } catch (err) {
      throw new InvalidArgumentError(`"${a}" is not a multiaddr (${(err as Error).message}); write e.g. /ip4/0.0.0.0/tcp/7946`)
    }
  }
  const node = new MeshNodeImpl(components, resolveOptions(options))
  await node.init()
  return node
}

function resolveOptions(o: MeshOptions): ResolvedOptions {
  const num = (name: string, v: number | undefined, dflt: number, min: number): number => {
    const value = v ?? dflt
    if (!Number.isFinite(value) || value < min) throw new InvalidArgumentError(`mesh option ${name} must be a number >= ${min}, not ${v}`)
    return value
  }
  const relay = o.relayServer
  return {
    relayServer: relay === undefined || relay === false ? false : { maxReservations: num('relayServer.maxReservations', relay === true ? undefined : relay.maxReservations, MESH_DEFAULTS.maxReservations, 1) },
    relayClient: o.relayClient ?? !(relay !== undefined && relay !== false),
    announce: o.announce ?? [],
    pingIntervalMs: num('pingIntervalMs', o.pingIntervalMs, MESH_DEFAULTS.pingIntervalMs, 0),
    pingTimeoutMs: num('pingTimeoutMs', o.pingTimeoutMs, MESH_DEFAULTS.pingTimeoutMs, 1),
    downAfterFailures: num('downAfterFailures', o.downAfterFailures, MESH_DEFAULTS.downAfterFailures, 1),
    exchangeTimeoutMs: num('exchangeTimeoutMs', o.exchangeTimeoutMs, MESH_DEFAULTS.exchangeTimeoutMs, 1),
    dialTimeoutMs: num('dialTimeoutMs', o.dialTimeoutMs, MESH_DEFAULTS.dialTimeoutMs, 1),
    directRetryMs: num('directRetryMs', o.directRetryMs, MESH_DEFAULTS.directRetryMs, 0),
    inboundConnectionsPerSecond: num('inboundConnectionsPerSecond', o.inboundConnectionsPerSecond, MESH_DEFAULTS.inboundConnectionsPerSecond, 1),
    channel: { ...PACKET_CHANNEL_DEFAULTS, ...o.channel },
    denyDirect: o.denyDirect,
  }
}

function checkPeerArg(peerId: string): void {
  const bad = checkNodePeerId(peerId)
  if (bad) throw new InvalidArgumentError(`peer id ${bad}`)
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message || err.name : String(err))

const isRelayed = (ma: Multiaddr): boolean => ma.getComponents().some((c) => c.name === 'p2p-circuit')

/** The PeerId a multiaddr ends with (for a circuit address: the destination), if any. */
function targetPeer(ma: Multiaddr): string | undefined {
  const p2p = ma.getComponents().filter((c) => c.name === 'p2p')
  return p2p[p2p.length - 1]?.value
}

interface LivePeer {
  status: PeerStatus
  failures: number
  rttMs?: number
  lastSeen?: number
  pinging: boolean
}

/** The outcome of the record exchange on one connection: undefined when accepted. */
interface ExchangeSlot {
  readonly promise: Promise<Error | undefined>
  settle(outcome: Error | undefined): void
}

function newSlot(): ExchangeSlot {
  let settle!: (outcome: Error | undefined) => void
  const promise = new Promise<Error | undefined>((resolve) => {
    settle = resolve
  })
  return { promise, settle }
}

type MeshLibp2p = Libp2p<{ ping: Ping }>

class MeshNodeImpl implements MeshNode, PacketChannelHost {
  readonly log: MeshLog
  private libp2p!: MeshLibp2p
  private isRunning = false
  private readonly records = new Map<string, NodeRecord>()
  private readonly peers = new Map<string, LivePeer>()
  private readonly channels = new Map<string, MeshPacketChannel>()
  private readonly revoked = new Set<string>()
  private readonly slots = new Map<string, ExchangeSlot>()
  private readonly directDialing = new Set<string>()
  private readonly recordListeners = new Set<(record: NodeRecord, peerId: string) => void>()
  private readonly statusListeners = new Set<(event: PeerStatusEvent) => void>()
  private readonly rejectListeners = new Set<(error: MeshRecordRejectedError) => void>()
  private readonly channelListeners = new Set<(channel: PacketChannel) => void>()
  private timers: NodeJS.Timeout[] = []

  constructor(
    private readonly components: MeshComponents,
    private readonly opts: ResolvedOptions,
  ) {
    this.log = components.log ?? silentLog
  }

  async init(): Promise<void> {
    const listen = [...this.components.listen]
    if (this.opts.relayClient) listen.push('/p2p-circuit')
    const relay = this.opts.relayServer
    this.libp2p = (await createLibp2p({
      privateKey: this.components.privateKey,
      addresses: { listen, announce: [...this.opts.announce] },
      transports: [tcp(), circuitRelayTransport()],
      connectionEncrypters: [noise()],
      streamMuxers: [yamux()],
      connectionGater: this.gater(),
      // Liveness is the mesh's own (periodic ping with up/down events), so libp2p's monitor would only double the pings.
      connectionMonitor: { enabled: false },
      connectionManager: { inboundConnectionThreshold: this.opts.inboundConnectionsPerSecond },
      services: {
        identify: identify(),
        ping: ping({ runOnLimitedConnection: true }),
        // Relayed WireGuard traffic is long-lived and bulky: the default per-circuit limits (2 min,
        // 128 KiB) would cut it, and only admitted peers can reach the relay anyway.
        ...(relay === false ? {} : { relay: circuitRelayServer({ reservations: { applyDefaultLimit: false, maxReservations: relay.maxReservations } }) }),
      },
      start: false,
    })) as unknown as MeshLibp2p
    await this.libp2p.handle(PEER_PROTOCOL, (stream, conn) => this.onPeerStream(stream, conn), { runOnLimitedConnection: true })
    await this.libp2p.handle(WG_RELAY_PROTOCOL, (stream, conn) => this.onRelayStream(stream, conn), { runOnLimitedConnection: true })
  }

  get peerId(): string {
    return this.libp2p.peerId.toString()
  }

  get multiaddrs(): string[] {
    return this.libp2p.getMultiaddrs().map((m) => m.toString())
  }

  get running(): boolean {
    return this.isRunning
  }

  async start(): Promise<void> {
    if (this.isRunning) return
    this.libp2p.addEventListener('connection:open', this.onConnectionOpen)
    this.libp2p.addEventListener('connection:close', this.onConnectionClose)
    this.libp2p.addEventListener('peer:disconnect', this.onPeerDisconnect)
    await this.libp2p.start()
    this.isRunning = true
    if (this.opts.pingIntervalMs > 0) this.timers.push(setInterval(() => this.pingAll(), this.opts.pingIntervalMs))
    if (this.opts.directRetryMs > 0) this.timers.push(setInterval(() => void this.retryDirect(), this.opts.directRetryMs))
    this.log.info({ peer: this.peerId, addrs: this.multiaddrs, relayServer: this.opts.relayServer !== false }, 'mesh node started')
  }

  async stop(): Promise<void> {
    if (!this.isRunning) return
    this.isRunning = false
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    for (const ch of [...this.channels.values()]) void ch.close()
    await this.libp2p.stop()
    this.libp2p.removeEventListener('connection:open', this.onConnectionOpen)
    this.libp2p.removeEventListener('connection:close', this.onConnectionClose)
    this.libp2p.removeEventListener('peer:disconnect', this.onPeerDisconnect)
    for (const slot of this.slots.values()) slot.settle(new MeshNotRunningError('exchange records'))
    this.slots.clear()
    this.log.info({ peer: this.peerId }, 'mesh node stopped')
  }

  // ---- admission ---------------------------------------------------------------------------

  private async admitted(peerId: string): Promise<boolean> {
    if (this.revoked.has(peerId)) return false
    try {
      return (await this.components.isAdmitted(peerId)) === true
    } catch (err) {
      this.log.warn({ peer: peerId, err: errorText(err) }, 'admission check failed; treating the peer as not admitted')
      return false
    }
  }

  private gater(): ConnectionGater {
    const denyConnection = async (peer: PeerId, maConn: MultiaddrConnection): Promise<boolean> => {
      const id = peer.toString()
      if (this.opts.denyDirect !== undefined && !isRelayed(maConn.remoteAddr) && this.opts.denyDirect(id)) return true
      if (await this.admitted(id)) return false
      this.log.info({ peer: id, addr: maConn.remoteAddr.toString() }, 'connection refused: peer not admitted')
      return true
    }
    const notAdmitted = async (peer: PeerId): Promise<boolean> => !(await this.admitted(peer.toString()))
    return {
      denyDialPeer: notAdmitted,
      // Both checks run after the Noise handshake, when the remote PeerId is proven: that is the
      // earliest point at which an inbound peer's identity is known.
      denyInboundEncryptedConnection: denyConnection,
      denyOutboundEncryptedConnection: denyConnection,
      denyInboundRelayReservation: notAdmitted,
      denyOutboundRelayedConnection: async (source, destination) => (await notAdmitted(source)) || (await notAdmitted(destination)),
      denyInboundRelayedConnection: async (relay, remote) => (await notAdmitted(relay)) || (await notAdmitted(remote)),
    }
  }

  async revoke(peerId: string): Promise<void> {
    checkPeerArg(peerId)
    this.revoked.add(peerId)
    await this.cutOff(peerId, 'revoked')
  }

  unrevoke(peerId: string): void {
    this.revoked.delete(peerId)
  }

  async refreshAdmission(): Promise<string[]> {
    const known = new Set([...this.records.keys(), ...this.peers.keys(), ...this.channels.keys()])
    if (this.isRunning) for (const p of this.libp2p.getPeers()) known.add(p.toString())
    const dropped: string[] = []
    for (const id of known) {
      if (await this.admitted(id)) continue
      await this.cutOff(id, 'no longer admitted')
      dropped.push(id)
    }
    return dropped
  }

  /** Forgets the peer's record and key, closes its channel and every connection to it. */
  private async cutOff(peerId: string, reason: string): Promise<void> {
    this.records.delete(peerId)
    const live = this.peers.get(peerId)
    this.peers.delete(peerId)
    if (live?.status === 'up') this.emitStatus({ peerId, status: 'down', reason })
    if (this.isRunning) {
      try {
        await this.libp2p.hangUp(peerIdFromString(peerId))
      } catch (err) {
        this.log.debug({ peer: peerId, err: errorText(err) }, 'hang up failed')
      }
    }
    await this.channels.get(peerId)?.close()
    this.log.info({ peer: peerId, reason }, 'peer cut off')
  }

  // ---- connections and record exchange -----------------------------------------------------

  private readonly onConnectionOpen = (evt: CustomEvent<Connection>): void => {
    const conn = evt.detail
    // The dialling side starts the exchange, so each connection has exactly one.
    if (conn.direction === 'outbound') void this.exchangeOutbound(conn)
    if (conn.direct) this.channels.get(conn.remotePeer.toString())?.upgrade(conn)
  }

  private readonly onConnectionClose = (evt: CustomEvent<Connection>): void => {
    const slot = this.slots.get(evt.detail.id)
    this.slots.delete(evt.detail.id)
    slot?.settle(new Error('the connection closed before records were exchanged'))
  }

  private readonly onPeerDisconnect = (evt: CustomEvent<PeerId>): void => {
    const id = evt.detail.toString()
    const live = this.peers.get(id)
    if (live?.status === 'up') {
      live.status = 'down'
      this.emitStatus({ peerId: id, status: 'down', reason: 'disconnected' })
    }
  }

  private slot(conn: Connection): ExchangeSlot {
    let slot = this.slots.get(conn.id)
    if (slot === undefined) {
      slot = newSlot()
      if (conn.status === 'open') this.slots.set(conn.id, slot)
      else slot.settle(new Error('the connection is closed'))
    }
    return slot
  }

  private async encodeLocalRecord(): Promise<Uint8Array> {
    const signed = await this.components.localRecord()
    return Buffer.from(JSON.stringify({ record: signed.record, signature: signed.signature }), 'utf8')
  }

  private async exchangeOutbound(conn: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.opts.exchangeTimeoutMs)
    let stream: Stream | undefined
    try {
      stream = await conn.newStream(PEER_PROTOCOL, { signal, runOnLimitedConnection: true })
      const lp = lpStream(stream, { maxDataLength: MAX_RECORD_BYTES })
      await lp.write(await this.encodeLocalRecord(), { signal })
      const reply = await lp.read({ signal })
      await stream.close({ signal })
      const rejected = await this.acceptRecord(reply.subarray(), conn)
      this.slot(conn).settle(rejected)
    } catch (err) {
      stream?.abort(err instanceof Error ? err : new Error(String(err)))
      if (conn.status === 'open' && this.isRunning) this.log.debug({ peer: conn.remotePeer.toString(), err: errorText(err) }, 'record exchange failed')
      this.slot(conn).settle(err instanceof Error ? err : new Error(String(err)))
    }
  }

  private async onPeerStream(stream: Stream, conn: Connection): Promise<void> {
    const signal = AbortSignal.timeout(this.opts.exchangeTimeoutMs)
    try {
      const lp = lpStream(stream, { maxDataLength: MAX_RECORD_BYTES })
      const bytes = await lp.read({ signal })
      const rejected = await this.acceptRecord(bytes.subarray(), conn)
      this.slot(conn).settle(rejected)
      if (rejected !== undefined) {
        // Tell the initiator at once rather than let it wait out its timeout for a reply.
        stream.abort(rejected)
        return
      }
      await lp.write(await this.encodeLocalRecord(), { signal })
      await stream.close({ signal })
    } catch (err) {
      stream.abort(err instanceof Error ? err : new Error(String(err)))
      this.slot(conn).settle(err instanceof Error ? err : new Error(String(err)))
    }
  }

  /**
   * Verifies a record received on `conn` and records it; returns the rejection (after closing
   * the connection where the peer is not who the record says) or undefined when accepted.
   */
  private async acceptRecord(bytes: Uint8Array, conn: Connection): Promise<MeshRecordRejectedError | undefined> {
    const remote = conn.remotePeer.toString()
    let record: NodeRecord
    try {
      // Wire records carry no admission state (that is the receiver's own decision, made by
      // isAdmitted below and in the gater), so the signed-record check is the one that applies.
      record = await verifySignedNodeRecord(JSON.parse(Buffer.from(bytes).toString('utf8')) as unknown)
    } catch (err) {
      const reason: RecordRejectReason = err instanceof NodeRecordForgedError ? 'forged' : 'malformed'
      return this.reject(conn, reason, errorText(err), true)
    }
    // The signature checked against record.peerId; the connection is authenticated as `remote`.
    // Only when they are the same key is the record the remote's own word.
    if (record.peerId !== remote) {
      return this.reject(conn, 'wrong-peer', `the record is for ${record.peerId}, but the connection is authenticated as ${remote}`, true)
    }
    if (!(await this.admitted(remote))) return this.reject(conn, 'not-admitted', 'the peer is not admitted', true)
    const known = this.records.get(remote)
    if (known !== undefined) {
      if (record.sequence < known.sequence) {
        return this.reject(conn, 'stale', `sequence ${record.sequence} is older than the confirmed ${known.sequence}; keeping the newer record`, false)
      }
      if (record.sequence === known.sequence) {
        if (canonicalJson(record) !== canonicalJson(known)) {
          return this.reject(conn, 'stale', `a different record with the same sequence ${record.sequence} was confirmed before; keeping it`, false)
        }
        this.markUp(remote, 'record exchanged')
        return undefined
      }
    }
    this.records.set(remote, record)
    this.log.debug({ peer: remote, sequence: record.sequence, viaRelay: !conn.direct }, 'peer record confirmed')
    for (const cb of this.recordListeners) {
      try {
        cb(record, remote)
      } catch (err) {
        this.log.warn({ peer: remote, err: errorText(err) }, 'peer record listener threw')
      }
    }
    this.markUp(remote, 'record exchanged')
    return undefined
  }

  private reject(conn: Connection, reason: RecordRejectReason, detail: string, close: boolean): MeshRecordRejectedError {
    const error = new MeshRecordRejectedError(conn.remotePeer.toString(), reason, detail)
    this.log.warn({ peer: error.remotePeer, reason, err: detail }, 'peer record refused')
    // Settle first: aborting fires the close event, which would report a mere disconnect.
    this.slot(conn).settle(error)
    if (close) conn.abort(error)
    for (const cb of this.rejectListeners) {
      try {
        cb(error)
      } catch (err) {
        this.log.warn({ err: errorText(err) }, 'record rejection listener threw')
      }
    }
    return error
  }

  async announce(): Promise<void> {
    this.requireRunning('announce the local record')
    const conns = this.libp2p.getPeers().flatMap((p) => {
      const c = this.bestConnection(p)
      return c === undefined ? [] : [c]
    })
    await Promise.all(conns.map((c) => this.exchangeOutbound(c)))
  }

  // ---- dialling -------------------------------------------------------------------------------

  async dial(target: string | Multiaddr): Promise<string> {
    this.requireRunning('dial')
    let ma: Multiaddr | undefined
    let id: string | undefined
    if (typeof target !== 'string' || target.startsWith('/')) {
      try {
        ma = typeof target === 'string' ? multiaddr(target) : target
      } catch (err) {
        throw new InvalidArgumentError(`"${String(target)}" is neither a PeerId nor a multiaddr (${errorText(err)})`)
      }
      id = targetPeer(ma)
    } else {
      checkPeerArg(target)
      id = target
    }
    if (id === this.peerId) throw new InvalidArgumentError('a mesh node cannot dial itself')
    if (id !== undefined && !(await this.admitted(id))) throw new NodeNotAdmittedError(id)
    let conn: Connection
    if (id === undefined) {
      try {
        conn = await this.libp2p.dial(ma!, { signal: AbortSignal.timeout(this.opts.dialTimeoutMs) })
      } catch (err) {
        throw new MeshPeerUnreachableError(String(ma), [errorText(err)])
      }
    } else {
      conn = await this.connectPeer(id, ma)
    }
    const outcome = await this.waitExchange(conn)
    if (outcome instanceof MeshRecordRejectedError || outcome instanceof MeshNotRunningError) throw outcome
    if (outcome !== undefined) {
      // Typically the remote's gater: it refuses after the handshake, so this side sees the connection drop.
      throw new MeshPeerUnreachableError(conn.remotePeer.toString(), [`connected, but ${outcome.message} (does the peer admit this node?)`])
    }
    return conn.remotePeer.toString()
  }

  private async waitExchange(conn: Connection): Promise<Error | undefined> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<Error>((resolve) => {
      timer = setTimeout(() => resolve(new Error(`records were not exchanged within ${this.opts.exchangeTimeoutMs} ms`)), this.opts.exchangeTimeoutMs)
    })
    try {
      return await Promise.race([this.slot(conn).promise, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Dials the peer directly (its known or given address) and, failing that, through each connected relay. */
  private async connectPeer(id: string, ma?: Multiaddr): Promise<Connection> {
    const attempts: string[] = []
    const pid = peerIdFromString(id)
    try {
      return await this.libp2p.dial(ma ?? pid, { signal: AbortSignal.timeout(this.opts.dialTimeoutMs) })
    } catch (err) {
      if (!this.isRunning) throw new MeshNotRunningError('dial')
      attempts.push(`${ma?.toString() ?? 'known addresses'}: ${errorText(err)}`)
    }
    for (const relay of await this.relaysFor(id)) {
      const circuit = multiaddr(`/p2p/${relay}/p2p-circuit/p2p/${id}`)
      try {
        const conn = await this.libp2p.dial(circuit, { signal: AbortSignal.timeout(this.opts.dialTimeoutMs) })
        this.log.info({ peer: id, relay }, 'reached peer through a relay')
        return conn
      } catch (err) {
        attempts.push(`${circuit.toString()}: ${errorText(err)}`)
      }
    }
    throw new MeshPeerUnreachableError(id, attempts)
  }

  /** Connected peers that run a circuit relay server (learnt through identify). */
  private async relaysFor(id: string): Promise<string[]> {
    const relays: string[] = []
    for (const p of this.libp2p.getPeers()) {
      const pid = p.toString()
      if (pid === id || !this.libp2p.getConnections(p).some((c) => c.direct)) continue
      try {
        if ((await this.libp2p.peerStore.get(p)).protocols.includes(RELAY_V2_HOP_CODEC)) relays.push(pid)
      } catch {
        // not in the peer store (yet): not a relay we know of
      }
    }
    return relays
  }

  private bestConnection(peer: PeerId): Connection | undefined {
    const open = this.libp2p.getConnections(peer).filter((c) => c.status === 'open')
    return open.find((c) => c.direct) ?? open[0]
  }

  async hangUp(peerId: string): Promise<void> {
    checkPeerArg(peerId)
    this.requireRunning('hang up')
    await this.libp2p.hangUp(peerIdFromString(peerId))
  }

  connectedPeers(): string[] {
    return this.isRunning ? this.libp2p.getPeers().map((p) => p.toString()) : []
  }

  // ---- records, liveness ----------------------------------------------------------------------

  onPeerRecord(cb: (record: NodeRecord, peerId: string) => void): () => void {
    this.recordListeners.add(cb)
    return () => this.recordListeners.delete(cb)
  }

  onPeerStatus(cb: (event: PeerStatusEvent) => void): () => void {
    this.statusListeners.add(cb)
    return () => this.statusListeners.delete(cb)
  }

  onRecordRejected(cb: (error: MeshRecordRejectedError) => void): () => void {
    this.rejectListeners.add(cb)
    return () => this.rejectListeners.delete(cb)
  }

  onPacketChannel(cb: (channel: PacketChannel) => void): () => void {
    this.channelListeners.add(cb)
    return () => this.channelListeners.delete(cb)
  }

  peerRecord(peerId: string): NodeRecord | undefined {
    return this.records.get(peerId)
  }

  confirmedWireguardKey(peerId: string): string | undefined {
    return this.records.get(peerId)?.wireguardPublicKey
  }

  peerState(peerId: string): PeerState | undefined {
    const live = this.peers.get(peerId)
    if (live === undefined) return undefined
    return { status: live.status, failures: live.failures, ...(live.rttMs === undefined ? {} : { rttMs: live.rttMs }), ...(live.lastSeen === undefined ? {} : { lastSeen: live.lastSeen }) }
  }

  async ping(peerId: string): Promise<number> {
    checkPeerArg(peerId)
    this.requireRunning('ping')
    if (!(await this.admitted(peerId))) throw new NodeNotAdmittedError(peerId)
    let rtt: number
    try {
      rtt = await this.libp2p.services.ping.ping(peerIdFromString(peerId), { signal: AbortSignal.timeout(this.opts.pingTimeoutMs), runOnLimitedConnection: true })
    } catch (err) {
      throw new MeshPeerUnreachableError(peerId, [`ping: ${errorText(err)}`])
    }
    if (this.peers.has(peerId)) this.markUp(peerId, 'ping', rtt)
    return rtt
  }

  private pingAll(): void {
    for (const id of this.peers.keys()) void this.pingPeer(id)
  }

  private async pingPeer(id: string): Promise<void> {
    const live = this.peers.get(id)
    if (live === undefined || live.pinging || !this.isRunning) return
    live.pinging = true
    try {
      const rtt = await this.libp2p.services.ping.ping(peerIdFromString(id), { signal: AbortSignal.timeout(this.opts.pingTimeoutMs), runOnLimitedConnection: true })
      if (this.peers.get(id) === live) this.markUp(id, 'ping', rtt)
    } catch (err) {
      if (!this.isRunning || this.peers.get(id) !== live) return
      live.failures++
      if (live.failures >= this.opts.downAfterFailures && live.status === 'up') {
        live.status = 'down'
        this.emitStatus({ peerId: id, status: 'down', reason: `${live.failures} pings failed in a row: ${errorText(err)}` })
        // A connection that stopped answering is dead weight: drop it so the next ping dials afresh.
        for (const c of this.libp2p.getConnections(peerIdFromString(id))) c.abort(new Error('the peer stopped answering pings'))
      }
    } finally {
      live.pinging = false
    }
  }

  private markUp(id: string, reason: string, rttMs?: number): void {
    let live = this.peers.get(id)
    if (live === undefined) {
      live = { status: 'down', failures: 0, pinging: false }
      this.peers.set(id, live)
    }
    live.failures = 0
    live.lastSeen = Date.now()
    if (rttMs !== undefined) live.rttMs = rttMs
    if (live.status !== 'up') {
      live.status = 'up'
      this.emitStatus({ peerId: id, status: 'up', reason, ...(rttMs === undefined ? {} : { rttMs }) })
    }
  }

  private emitStatus(event: PeerStatusEvent): void {
    this.log.info({ peer: event.peerId, status: event.status, reason: event.reason }, `peer ${event.status}`)
    for (const cb of this.statusListeners) {
      try {
        cb(event)
      } catch (err) {
        this.log.warn({ err: errorText(err) }, 'peer status listener threw')
      }
    }
  }

  // ---- packet channels ------------------------------------------------------------------------

  async openPacketChannel(peerId: string): Promise<PacketChannel> {
    checkPeerArg(peerId)
    this.requireRunning('open a packet channel')
    if (!(await this.admitted(peerId))) throw new NodeNotAdmittedError(peerId)
    const existing = this.channels.get(peerId)
    const channel = existing ?? new MeshPacketChannel(peerId, this, this.opts.channel)
    if (existing === undefined) this.channels.set(peerId, channel)
    try {
      await channel.ready()
    } catch (err) {
      if (existing === undefined) await channel.close()
      throw err
    }
    return channel
  }

  private onRelayStream(stream: Stream, conn: Connection): void {
    const id = conn.remotePeer.toString()
    let channel = this.channels.get(id)
    if (channel === undefined) {
      channel = new MeshPacketChannel(id, this, this.opts.channel)
      this.channels.set(id, channel)
      for (const cb of this.channelListeners) {
        try {
          cb(channel)
        } catch (err) {
          this.log.warn({ peer: id, err: errorText(err) }, 'packet channel listener threw')
        }
      }
    }
    channel.attachInbound(stream, !conn.direct)
  }

  async openStream(peerId: string, conn?: Connection): Promise<{ stream: Stream; viaRelay: boolean }> {
    if (!this.isRunning) throw new MeshNotRunningError('open a packet stream')
    const c = conn ?? this.bestConnection(peerIdFromString(peerId)) ?? (await this.connectPeer(peerId))
    const stream = await c.newStream(WG_RELAY_PROTOCOL, { signal: AbortSignal.timeout(this.opts.dialTimeoutMs), runOnLimitedConnection: true })
    return { stream, viaRelay: !c.direct }
  }

  channelClosed(channel: MeshPacketChannel): void {
    if (this.channels.get(channel.peerId) === channel) this.channels.delete(channel.peerId)
  }

  relayRetired(peerId: string): void {
    if (!this.isRunning) return
    const conns = this.libp2p.getConnections(peerIdFromString(peerId))
    if (!conns.some((c) => c.direct && c.status === 'open')) return
    // The relay is no longer needed for this peer once neither side streams through it.
    for (const c of conns) if (!c.direct && c.streams.length === 0) c.close().catch(() => {})
  }

  /** For channels still on a relay: dial the peer's direct addresses; the new connection's open event moves the channel. */
  private async retryDirect(): Promise<void> {
    for (const [id, channel] of this.channels) {
      if (channel.closed || !channel.viaRelay || this.directDialing.has(id) || !this.isRunning) continue
      const pid = peerIdFromString(id)
      const direct = this.libp2p.getConnections(pid).find((c) => c.direct && c.status === 'open')
      if (direct !== undefined) {
        channel.upgrade(direct)
        continue
      }
      const peer = await this.libp2p.peerStore.get(pid).catch(() => undefined)
      const addrs = (peer?.addresses ?? []).map((a) => a.multiaddr).filter((m) => !isRelayed(m))
      if (addrs.length === 0) continue
      this.directDialing.add(id)
      this.libp2p
        .dial(
          addrs.map((m) => (targetPeer(m) === undefined ? m.encapsulate(`/p2p/${id}`) : m)),
          { signal: AbortSignal.timeout(this.opts.dialTimeoutMs) },
        )
        .then((c) => this.log.info({ peer: id, addr: c.remoteAddr.toString() }, 'direct connection to a relayed peer'))
        .catch((err: unknown) => this.log.debug({ peer: id, err: errorText(err) }, 'peer still not reachable directly'))
        .finally(() => this.directDialing.delete(id))
    }
  }

  private requireRunning(what: string): void {
    if (!this.isRunning) throw new MeshNotRunningError(what)
  }
}
