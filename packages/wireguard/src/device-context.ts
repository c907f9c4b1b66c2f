/** What the inside and outside paths need from their device: a small, explicit surface. */
import type { AllowedIps } from './allowed-ips.js'
import type { CookieChecker } from './cookie.js'
import type { DropCounters } from './drops.js'
import type { IndexTable } from './index-table.js'
import type { HandshakeState, StaticIdentity } from './noise.js'
import type { Peer } from './peer.js'
import type { TunDevice } from './tun.js'
import type { DatagramOut } from './relay-path.js'

export interface DeviceContext {
  readonly mtu: number
  readonly identity: StaticIdentity
  readonly table: IndexTable<Peer>
  readonly allowedIps: AllowedIps<Peer>
  readonly cookieChecker: CookieChecker
  readonly drops: DropCounters
  readonly tun: TunDevice
  /** Every send goes here: UDP, or a peer's relay link when the address record names one. */
  readonly out: DatagramOut
  /** Messages on one session after which the initiator rekeys (REKEY_AFTER_MESSAGES unless a test shortens it). */
  readonly rekeyAfterMessages: number
  /** Monotonic milliseconds. */
  now(): number
  handshakeFor(remoteStatic: Buffer): HandshakeState<Peer> | undefined
  sendHandshakeInitiation(peer: Peer, now: number, isRetry: boolean): void
  sendStaged(peer: Peer, now: number, keepaliveIfEmpty: boolean): void
  /** Sends one message to address record `index` of `addrs`. */
  sendTo(message: Uint8Array, addrs: Uint8Array, index: number): void
  /** The peer whose relay link address record `index` of `addrs` names, if it is one. */
  relayPeer(addrs: Uint8Array, index: number): Peer | undefined
  /** An authenticated packet arrived on the direct path of a peer that was relayed. */
  directPathRestored(peer: Peer, now: number): void
  underLoad(now: number): boolean
  allowHandshakeFrom(source: Uint8Array, now: number): boolean
}
