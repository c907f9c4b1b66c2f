/**
 * The overlay on this host: the WireGuard interface (kernel or userspace backend), its address,
 * the routes that send pool addresses into it, and its peers kept equal to the calculation's.
 *
 *   up():        backend.up(interface, host address/32) ──> ip route replace <pool> dev <if> src <host address>
 *   setPeers():  diffPeers(desired, current) ──> backend.setPeer / removePeer, only what changed
 *
 * Local workloads have /32 routes to their veths (workload-link.ts), more specific than the pool
 * route, so only remote addresses enter the tunnel.
 */
import { FlatnetError } from '@flatnet/core'
import type { PeerSettings, PeerStatus, WireguardBackend } from '@flatnet/wireguard'
import { diffPeers, type DesiredPeer } from '../calc/peers.js'
import { commandLine, runCommand, tail } from '../enforcement/command.js'

export interface WireguardPlaneSettings {
  readonly interfaceName: string
  readonly privateKey: string
  readonly listenPort: number
  readonly mtu: number
  readonly hostAddress: string
  readonly pools: readonly string[]
}

/** An `ip` command of the overlay failed. */
export class OverlayCommandError extends FlatnetError {
  readonly code = 'ERR_AGENT_OVERLAY'
}

export async function runIp(args: readonly string[], timeoutMs = 10_000): Promise<string> {
  const argv = ['ip', ...args]
  let r: Awaited<ReturnType<typeof runCommand>>
  try {
    r = await runCommand(argv, { timeoutMs })
  } catch (err) {
    throw new OverlayCommandError(`${commandLine(argv)}: ${err instanceof Error ? err.message : String(err)}`)
  }
  if (r.status !== 0) throw new OverlayCommandError(`${commandLine(argv)}: ${tail(r.stderr) || `exit status ${r.status}`}`)
  return r.stdout
}

export class WireguardPlane {
  private readonly current = new Map<string, PeerSettings>()
  private settings: WireguardPlaneSettings | undefined

  constructor(readonly backend: WireguardBackend) {}

  get isUp(): boolean {
    return this.settings !== undefined
  }

  async up(settings: WireguardPlaneSettings): Promise<void> {
    await this.backend.up({
      interfaceName: settings.interfaceName,
      privateKey: settings.privateKey,
      listenPort: settings.listenPort,
      mtu: settings.mtu,
      addresses: [`${settings.hostAddress}/${settings.hostAddress.includes(':') ? 128 : 32}`],
    })
    this.settings = settings
    await this.routePools(settings.pools)
  }

  /** Routes each pool into the interface, with the host address as the source of the host's own traffic. */
  async routePools(pools: readonly string[]): Promise<void> {
    const s = this.settings
    if (!s) return
    for (const pool of pools) {
      const family = pool.includes(':') ? '-6' : '-4'
      if ((pool.includes(':') ? 6 : 4) !== (s.hostAddress.includes(':') ? 6 : 4)) await runIp([family, 'route', 'replace', pool, 'dev', s.interfaceName])
      else await runIp([family, 'route', 'replace', pool, 'dev', s.interfaceName, 'src', s.hostAddress])
    }
  }

  /** Makes the device's peers equal to `desired`; returns what changed. */
  async setPeers(desired: readonly DesiredPeer[]): Promise<{ set: number; removed: number }> {
    const diff = diffPeers(desired, this.current)
    for (const key of diff.remove) {
      await this.backend.removePeer(key)
      this.current.delete(key)
    }
    for (const p of diff.set) {
      const settings: PeerSettings = { publicKey: p.publicKey, endpoint: p.endpoint, allowedIps: p.allowedIps, persistentKeepalive: p.persistentKeepalive }
      await this.backend.setPeer(settings)
      this.current.set(p.publicKey, settings)
    }
    return { set: diff.set.length, removed: diff.remove.length }
  }

  async peers(): Promise<PeerStatus[]> {
    return this.isUp ? this.backend.peers() : []
  }

  async down(): Promise<void> {
    this.settings = undefined
    this.current.clear()
    await this.backend.down()
  }
}
