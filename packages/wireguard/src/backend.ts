/**
 * The one interface both data-plane backends implement: `userspace` (WireGuard in TypeScript)
 * and `kernel` (a WireGuard device programmed through the `wg` UAPI), plus the `wg show` style
 * text both print.
 */
import { FlatnetError } from '@flatnet/core'

export type BackendKind = 'userspace' | 'kernel'

export interface InterfaceSettings {
  /** At most 15 characters (IFNAMSIZ - 1) of letters, digits, `_`, `-`, `.`. */
  readonly interfaceName: string
  /** base64, 32 bytes. */
  readonly privateKey: string
  /** UDP port; 0 picks a free one. */
  readonly listenPort: number
  readonly mtu: number
  /** Interface addresses with prefix length, e.g. `10.0.0.1/24`; the prefix gives the connected route. */
  readonly addresses: readonly string[]
}

/**
 * What a peer should look like. `setPeer` makes the peer match it: allowed IPs are replaced,
 * an absent preshared key or keepalive is cleared. An absent endpoint leaves whatever endpoint
 * the device has (configured earlier or learned from the peer's packets), because WireGuard
 * cannot forget one and roaming depends on learning it.
 */
export interface PeerSettings {
  readonly publicKey: string
  readonly presharedKey?: string | undefined
  /** `ipv4:port` or `[ipv6]:port`, an IP literal. */
  readonly endpoint?: string | undefined
  readonly allowedIps: readonly string[]
  /** Seconds; absent or 0 means off. */
  readonly persistentKeepalive?: number | undefined
}

export interface PeerStatus {
  readonly publicKey: string
  /** Where the device currently sends to this peer; undefined until configured or learned. */
  readonly endpoint: string | undefined
  readonly allowedIps: readonly string[]
  /** Undefined when no handshake has completed. */
  readonly latestHandshake: Date | undefined
  readonly rxBytes: number
  readonly txBytes: number
  /** Seconds; undefined when off. */
  readonly persistentKeepalive: number | undefined
  /** Whether a preshared key is set (the key itself is never reported). */
  readonly hasPresharedKey?: boolean | undefined
  /** True while the peer's messages go over its relay link (`endpoint` is then the direct one being probed). */
  readonly viaRelay?: boolean | undefined
}

export interface WireguardBackend {
  readonly kind: BackendKind
  /** Creates and configures the interface. Fails if this backend is already up. */
  up(config: InterfaceSettings): Promise<void>
  /** Adds the peer or makes an existing one match `peer` (see PeerSettings). */
  setPeer(peer: PeerSettings): Promise<void>
  /** Removes the peer; removing an unknown peer is not an error. */
  removePeer(publicKey: string): Promise<void>
  peers(): Promise<PeerStatus[]>
  /** Removes the interface and stops anything `up` started. Safe to call twice. */
  down(): Promise<void>
}

/** A backend call came in the wrong state: a peer change before `up()`, or `up()` twice. */
export class WireguardStateError extends FlatnetError {
  readonly code = 'ERR_WG_STATE'
}

const SECONDS_PER = [
  ['year', 365 * 24 * 3600],
  ['day', 24 * 3600],
  ['hour', 3600],
  ['minute', 60],
  ['second', 1],
] as const

/** `1 minute, 5 seconds`, as `wg show` spells durations. */
export function formatDuration(totalSeconds: number): string {
  let left = Math.max(0, Math.floor(totalSeconds))
  const parts: string[] = []
  for (const [unit, size] of SECONDS_PER) {
    const n = Math.floor(left / size)
    left -= n * size
    if (n > 0) parts.push(`${n} ${unit}${n === 1 ? '' : 's'}`)
  }
  return parts.length > 0 ? parts.join(', ') : '0 seconds'
}

/** `512 B`, `1.50 KiB`, ... as `wg show` prints transfer counters. */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB'] as const
  let value = bytes / 1024
  let i = 0
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024
    i++
  }
  return `${value.toFixed(2)} ${units[i]}`
}

/**
 * The text `wg show <interface>` prints (without colours and the hidden private key line):
 * peers with the most recent handshake first, as wg orders them.
 */
export function formatShow(interfaceName: string, publicKey: string, listenPort: number, peers: readonly PeerStatus[], now: Date = new Date()): string {
  const out = [`interface: ${interfaceName}`, `  public key: ${publicKey}`, `  private key: (hidden)`, `  listening port: ${listenPort}`]
  const ordered = [...peers].sort((a, b) => (b.latestHandshake?.getTime() ?? 0) - (a.latestHandshake?.getTime() ?? 0))
  const nowSeconds = Math.floor(now.getTime() / 1000)
  for (const p of ordered) {
    out.push('', `peer: ${p.publicKey}`)
    if (p.hasPresharedKey) out.push('  preshared key: (hidden)')
    if (p.endpoint !== undefined) out.push(`  endpoint: ${p.endpoint}${p.viaRelay ? ' (relayed)' : ''}`)
    else if (p.viaRelay) out.push('  endpoint: (relayed)')
    out.push(`  allowed ips: ${p.allowedIps.length > 0 ? p.allowedIps.join(', ') : '(none)'}`)
    if (p.latestHandshake !== undefined) {
      const then = Math.floor(p.latestHandshake.getTime() / 1000)
      const ago =
        then === nowSeconds ? 'Now' : then > nowSeconds ? '(System clock wound backward; connection problems may ensue.)' : `${formatDuration(nowSeconds - then)} ago`
      out.push(`  latest handshake: ${ago}`)
    }
    if (p.rxBytes > 0 || p.txBytes > 0) out.push(`  transfer: ${formatBytes(p.rxBytes)} received, ${formatBytes(p.txBytes)} sent`)
    if (p.persistentKeepalive !== undefined) out.push(`  persistent keepalive: every ${formatDuration(p.persistentKeepalive)}`)
  }
  return out.join('\n') + '\n'
}
