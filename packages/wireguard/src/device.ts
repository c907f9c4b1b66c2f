/**
 * The userspace WireGuard device: TUN and UDP in, the protocol in TypeScript.
 *
 *   inside  (send.ts):    TUN ──> AllowedIps(dst) ──> peer session ──> seal ──> sendmmsg ──> UDP
 *   outside (receive.ts): UDP ──> recvmmsg ──> handshake | open + replay + AllowedIps(src) ──> TUN
 *   timers  (timers.ts):  one ticker runs each peer's due protocol timers
 *   relay   (relay-path.ts): a peer's messages go over its relay link instead of UDP while its
 *                         direct path does not get through; probed, and left once it does
 *
 * Peers are added, changed and removed at runtime without touching the others' sessions.
 */
import { performance } from 'node:perf_hooks'
import { formatCidr, InvalidArgumentError, parseCidr, type Cidr } from '@flatnet/core'
import { AllowedIps } from './allowed-ips.js'
import type { PeerStatus } from './backend.js'
import { canonicalEndpoint } from './config.js'
import { CookieChecker } from './cookie.js'
import { keyFromBase64, keyToBase64 } from './crypto.js'
import type { DeviceContext } from './device-context.js'
import { DropCounters } from './drops.js'
import { IndexTable } from './index-table.js'
import type { Keypair } from './keypair.js'
import { createInitiation, StaticIdentity, type HandshakeState } from './noise.js'
import { Peer } from './peer.js'
import { InsidePath } from './send.js'
import { OutsidePath } from './receive.js'
import { RelayLinks, type RelayLink, type RelayLinkStats } from './relay-path.js'
import { PROTOCOL_TIMER_DURATIONS, type TimerAction, type TimerDurations } from './timers.js'
import { REKEY_AFTER_MESSAGES } from './constants.js'
import { HANDSHAKE_BURST_PER_IP, HANDSHAKES_PER_SECOND_PER_IP, QUEUE_HANDSHAKE_SIZE, RELAY_AFTER_HANDSHAKE_RETRANSMITS, RELAY_DIRECT_PROBE_INTERVAL_MS, UNDER_LOAD_AFTER_TIME_MS, UNDER_LOAD_QUEUE_FRACTION } from './tuning.js'
import type { TunDevice } from './tun.js'
import { encodeAddr, formatAddr, type UdpSocket } from './udp.js'

export interface DeviceComponents {
  readonly tun: TunDevice
  readonly udp: UdpSocket
  /** Raw 32-byte private key. */
  readonly privateKey: Uint8Array
  readonly mtu: number
}

export interface DeviceOptions {
  /** Shorter protocol timers, for tests only. */
  readonly timers?: Partial<TimerDurations> | undefined
  /** Rekey after this many messages on a session (REKEY_AFTER_MESSAGES unless a test shortens it). */
  readonly rekeyAfterMessages?: number | undefined
  /** How often due timers run. */
  readonly tickMs?: number | undefined
  /** Handshake messages per second above which cookies are demanded. */
  readonly underLoadHandshakesPerSecond?: number | undefined
  /** How often a relayed peer's direct endpoint is probed (RELAY_DIRECT_PROBE_INTERVAL_MS). */
  readonly relayProbeIntervalMs?: number | undefined
}

export interface DevicePeerSettings {
  readonly publicKey: string
  readonly presharedKey?: string | undefined
  readonly endpoint?: string | undefined
  readonly allowedIps: readonly string[]
  /** Seconds; 0 or absent is off. */
  readonly persistentKeepalive?: number | undefined
}

export const DEVICE_DEFAULTS = Object.freeze({
  tickMs: 100,
  underLoadHandshakesPerSecond: QUEUE_HANDSHAKE_SIZE * UNDER_LOAD_QUEUE_FRACTION,
})

export class Device implements DeviceContext {
  readonly mtu: number
  readonly identity: StaticIdentity
  readonly table = new IndexTable<Peer>()
  readonly allowedIps = new AllowedIps<Peer>()
  readonly cookieChecker: CookieChecker
  readonly drops = new DropCounters()
  readonly tun: TunDevice
  readonly udp: UdpSocket
  readonly out: RelayLinks<Peer>
  readonly rekeyAfterMessages: number
  private readonly relayProbeIntervalMs: number
  private running = false
  private readonly durations: TimerDurations
  private readonly peersByKey = new Map<string, Peer>()
  private readonly inside: InsidePath
  private readonly outside: OutsidePath
  private ticker: NodeJS.Timeout | undefined
  private readonly due: TimerAction[] = []
  private readonly tickMs: number
  private readonly loadThreshold: number
  private loadWindowStart = 0
  private loadCount = 0
  private underLoadUntil = -Infinity
  private readonly buckets = new Map<string, { tokens: number; at: number }>()

  constructor(components: DeviceComponents, options: DeviceOptions = {}) {
    this.tun = components.tun
    this.udp = components.udp
    this.mtu = components.mtu
    this.identity = new StaticIdentity(components.privateKey)
    this.cookieChecker = new CookieChecker(this.identity.publicKey)
    this.durations = Object.freeze({ ...PROTOCOL_TIMER_DURATIONS, ...options.timers })
    this.rekeyAfterMessages = options.rekeyAfterMessages ?? REKEY_AFTER_MESSAGES
    this.tickMs = options.tickMs ?? DEVICE_DEFAULTS.tickMs
    this.loadThreshold = options.underLoadHandshakesPerSecond ?? DEVICE_DEFAULTS.underLoadHandshakesPerSecond
    this.relayProbeIntervalMs = options.relayProbeIntervalMs ?? RELAY_DIRECT_PROBE_INTERVAL_MS
    this.out = new RelayLinks<Peer>(this.udp, () => (this.running ? this.outside.onDatagrams : null))
    this.inside = new InsidePath(this)
    this.outside = new OutsidePath(this)
  }

  get publicKey(): string {
    return keyToBase64(this.identity.publicKey)
  }

  start(): void {
    const slot = this.tun.slotSize
    this.tun.onPackets((buffer, lengths, count) => this.inside.onPackets(buffer, lengths, count, slot))
    this.udp.onDatagrams(this.outside.onDatagrams)
    this.ticker = setInterval(() => this.tick(), this.tickMs)
    this.running = true
  }

  stop(): void {
    this.running = false
    clearInterval(this.ticker)
    this.ticker = undefined
    this.tun.onPackets(null)
    this.udp.onDatagrams(null)
    for (const peer of this.peersByKey.values()) {
      peer.timers.stopAll()
      peer.keypairs.clear()
      if (peer.relayRecord) this.out.detach(peer.relayRecord)
      peer.relayRecord = null
    }
  }

  now(): number {
    return performance.now()
  }

  handshakeFor(remoteStatic: Buffer): HandshakeState<Peer> | undefined {
    return this.peersByKey.get(keyToBase64(remoteStatic))?.handshake
  }

  /** Adds a peer, or makes an existing one match `settings` (allowed IPs replaced). */
  setPeer(settings: DevicePeerSettings): void {
    const key = keyFromBase64(settings.publicKey)
    if (key.equals(this.identity.publicKey)) throw new InvalidArgumentError('a peer cannot have the interface\'s own public key')
    const cidrs: Cidr[] = settings.allowedIps.map((text) => {
      const c = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`)
      if (!c) throw new InvalidArgumentError(`invalid allowed IP "${text}"`)
      return c
    })
    let peer = this.peersByKey.get(settings.publicKey)
    const psk = settings.presharedKey === undefined ? undefined : keyFromBase64(settings.presharedKey)
    // Like the kernel and wireguard-go, a changed preshared key applies from the next handshake
    // and the peer keeps its sessions and endpoint: recreating it would lose an endpoint learnt
    // from its packets, which no configuration holds.
    if (peer) {
      peer.handshake.presharedKey = psk ?? Buffer.alloc(32)
    } else {
      peer = new Peer(key, psk, this.durations, (kp: Keypair) => {
        this.table.delete(kp.localIndex)
        kp.wipe()
      })
      this.peersByKey.set(settings.publicKey, peer)
    }
    if (settings.endpoint !== undefined) {
      const ep = canonicalEndpoint(settings.endpoint)
      const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(ep)
      if (!m) throw new InvalidArgumentError(`invalid endpoint "${settings.endpoint}"`)
      encodeAddr(peer.directEndpoint, 0, m[1] as string, Number(m[2]))
      peer.hasDirectEndpoint = true
      // A relayed peer stays relayed: the direct path is probed and taken back once it answers.
      if (!peer.viaRelay) {
        peer.endpoint.set(peer.directEndpoint)
        peer.hasEndpoint = true
      }
    }
    this.allowedIps.removeByValue(peer)
    for (const c of cidrs) this.allowedIps.insert(c, peer)
    peer.allowedIps = cidrs.map(formatCidr)
    const keepaliveMs = (settings.persistentKeepalive ?? 0) * 1000
    const wasOff = peer.timers.persistentKeepaliveMs === 0
    peer.timers.persistentKeepaliveMs = keepaliveMs
    // Like wg: turning persistent keepalive on sends one at once, so NAT state exists early.
    if (wasOff && keepaliveMs > 0 && peer.hasEndpoint) this.sendKeepalive(peer, this.now())
  }

  removePeer(publicKey: string): boolean {
    const peer = this.peersByKey.get(publicKey)
    if (!peer) return false
    this.peersByKey.delete(publicKey)
    this.allowedIps.removeByValue(peer)
    peer.timers.stopAll()
    peer.keypairs.clear()
    this.table.deletePeer(peer)
    peer.staged.length = 0
    if (peer.relayRecord) this.out.detach(peer.relayRecord)
    peer.relayRecord = null
    return true
  }

  /**
   * Gives the peer a relay link (the mesh's packet channel to it), or takes it away (null). With
   * a link, the peer falls back to it when a handshake on the direct path goes unanswered, and
   * at once when it has no direct endpoint at all. Taking the link away returns the peer to its
   * direct endpoint.
   */
  setPeerRelay(publicKey: string, link: RelayLink | null): void {
    const peer = this.peersByKey.get(publicKey)
    if (!peer) throw new InvalidArgumentError(`no peer with public key ${publicKey}`)
    const wasRelayed = peer.viaRelay
    if (peer.relayRecord) this.out.detach(peer.relayRecord)
    peer.relayRecord = link === null ? null : this.out.attach(peer, link)
    if (peer.relayRecord !== null && (wasRelayed || !peer.hasDirectEndpoint)) {
      peer.endpoint.set(peer.relayRecord)
      peer.hasEndpoint = true
      peer.nextDirectProbeAt = this.now() + this.relayProbeIntervalMs
    } else if (wasRelayed) {
      peer.hasEndpoint = peer.hasDirectEndpoint
      peer.endpoint.set(peer.directEndpoint)
      peer.nextDirectProbeAt = Infinity
    }
  }

  /** What went through the peer's relay link, when it has one. */
  relayStats(publicKey: string): RelayLinkStats | undefined {
    const peer = this.peersByKey.get(publicKey)
    return peer?.relayRecord ? this.out.stats(peer.relayRecord) : undefined
  }

  hasPeer(publicKey: string): boolean {
    return this.peersByKey.has(publicKey)
  }

  peerList(): Peer[] {
    return [...this.peersByKey.values()]
  }

  peers(): PeerStatus[] {
    return this.peerList().map((p) => ({
      publicKey: p.publicKeyBase64,
      endpoint: p.viaRelay ? (p.hasDirectEndpoint ? formatAddr(p.directEndpoint, 0) : undefined) : p.hasEndpoint ? formatAddr(p.endpoint, 0) : undefined,
      viaRelay: p.viaRelay,
      allowedIps: [...p.allowedIps],
      latestHandshake: p.lastHandshakeWallMs === undefined ? undefined : new Date(p.lastHandshakeWallMs),
      rxBytes: p.rxBytes,
      txBytes: p.txBytes,
      persistentKeepalive: p.timers.persistentKeepaliveMs > 0 ? p.timers.persistentKeepaliveMs / 1000 : undefined,
      hasPresharedKey: p.hasPresharedKey,
    }))
  }

  // ---- DeviceContext: what the paths call ---------------------------------------------------

  sendHandshakeInitiation(peer: Peer, now: number, isRetry: boolean): void {
    if (!peer.hasEndpoint) return
    if (!isRetry) peer.timers.onFreshHandshake()
    if (now - peer.handshake.lastSentHandshake < this.durations.rekeyTimeoutMs) return
    peer.handshake.lastSentHandshake = now
    const msg = createInitiation(this.identity, peer.handshake, this.table, now)
    if (msg === null) return
    this.sendTo(msg, peer.endpoint, 0)
    peer.timers.onAnyAuthenticatedPacketTraversal(now)
    peer.timers.onAnyAuthenticatedPacketSent()
    peer.timers.onHandshakeInitiated(now)
  }

  sendStaged(peer: Peer, now: number, keepaliveIfEmpty: boolean): void {
    this.inside.sendStaged(peer, now, keepaliveIfEmpty)
  }

  sendTo(message: Uint8Array, addrs: Uint8Array, index: number): void {
    if (!this.out.send(message, 0, message.length, addrs, index)) this.drops.sendFailed++
  }

  relayPeer(addrs: Uint8Array, index: number): Peer | undefined {
    return this.out.peerOf(addrs, index)
  }

  directPathRestored(peer: Peer, now: number): void {
    peer.directReturns++
    peer.nextDirectProbeAt = Infinity
    // Tell the peer at once, on the path that works again, so it moves back too.
    this.inside.sendStaged(peer, now, true)
  }

  underLoad(now: number): boolean {
    if (now - this.loadWindowStart > 1000) {
      this.loadWindowStart = now
      this.loadCount = 0
    }
    if (++this.loadCount > this.loadThreshold) this.underLoadUntil = now + UNDER_LOAD_AFTER_TIME_MS
    return now < this.underLoadUntil
  }

  allowHandshakeFrom(source: Uint8Array, now: number): boolean {
    const key = Buffer.from(source.buffer, source.byteOffset, 16).toString('hex')
    let b = this.buckets.get(key)
    if (!b) {
      b = { tokens: HANDSHAKE_BURST_PER_IP, at: now }
      this.buckets.set(key, b)
    }
    b.tokens = Math.min(HANDSHAKE_BURST_PER_IP, b.tokens + ((now - b.at) / 1000) * HANDSHAKES_PER_SECOND_PER_IP)
    b.at = now
    if (b.tokens < 1) return false
    b.tokens -= 1
    return true
  }

  // ---- timers ----------------------------------------------------------------------------------

  private sendKeepalive(peer: Peer, now: number): void {
    const kp = peer.keypairs.current
    if (kp === null || !kp.canSend || kp.isExpired(now)) this.sendHandshakeInitiation(peer, now, false)
    else this.inside.sendStaged(peer, now, true)
  }

  /**
   * Handshakes on the direct path went unanswered (RELAY_AFTER_HANDSHAKE_RETRANSMITS retransmits), or data went out and
   * nothing came back in time (a new handshake is due): when the peer has a relay link, the
   * handshake goes there instead, and the direct path is probed from now on.
   */
  private fallBackToRelay(peer: Peer, now: number): void {
    if (peer.relayRecord === null || peer.viaRelay) return
    peer.endpoint.set(peer.relayRecord)
    peer.hasEndpoint = true
    peer.relayFallbacks++
    peer.lastDirectRxAt = -Infinity
    peer.nextDirectProbeAt = now + this.relayProbeIntervalMs
  }

  private probeDirect(peer: Peer, now: number): void {
    peer.nextDirectProbeAt = now + this.relayProbeIntervalMs
    if (peer.hasDirectEndpoint) this.inside.probe(peer, now, peer.directEndpoint)
  }

  private tick(): void {
    const now = this.now()
    for (const peer of this.peersByKey.values()) {
      const due = this.due
      due.length = 0
      peer.timers.due(now, due)
      if (now >= peer.nextDirectProbeAt) {
        if (peer.viaRelay) this.probeDirect(peer, now)
        else peer.nextDirectProbeAt = Infinity
      }
      for (const action of due) {
        switch (action) {
          case 'retransmit-handshake':
            if (peer.timers.handshakeAttempts >= RELAY_AFTER_HANDSHAKE_RETRANSMITS) this.fallBackToRelay(peer, now)
            this.sendHandshakeInitiation(peer, now, true)
            break
          case 'give-up-handshake':
            peer.staged.length = 0
            break
          case 'send-keepalive':
          case 'persistent-keepalive':
            this.sendKeepalive(peer, now)
            break
          case 'new-handshake':
            this.fallBackToRelay(peer, now)
            this.sendHandshakeInitiation(peer, now, false)
            break
          case 'zero-key-material':
            peer.keypairs.clear()
            break
        }
      }
    }
    if (this.buckets.size > 4096) for (const [k, b] of this.buckets) if (now - b.at > 1000) this.buckets.delete(k)
  }
}
