/**
 * The userspace backend: a TUN device, a batched UDP socket and the protocol in TypeScript
 * (device.ts), configured through the same interface as the kernel backend, and reachable over
 * the standard UAPI socket (so `wg show` works on it).
 */
import { keyFromBase64 } from './crypto.js'
import { WireguardStateError, type InterfaceSettings, type PeerSettings, type PeerStatus, type WireguardBackend } from './backend.js'
import { Device, type DeviceOptions } from './device.js'
import type { RelayLink, RelayLinkStats } from './relay-path.js'
import { DataPlaneIoError } from './native.js'
import { TunDevice } from './tun.js'
import { UdpSocket } from './udp.js'
import { UapiServer } from './uapi.js'

export interface UserspaceBackendOptions extends DeviceOptions {
  /** Serve the UAPI socket (default true). */
  readonly uapi?: boolean | undefined
  /** Local address to bind the UDP socket to (default `::`, falling back to `0.0.0.0`). */
  readonly bindAddress?: string | undefined
  /**
   * UDP GSO on send and GRO on receive, where the kernel has them (default true): a train of
   * equal-sized messages to one peer leaves in one send and arrives in one receive. Peers see
   * ordinary datagrams either way.
   */
  readonly udpOffloads?: boolean | undefined
  /**
   * TUN offloads where the kernel has them (default true): local TCP hands over 64 KiB
   * super-packets, split into MTU-sized packets before sealing, and received TCP segments are
   * written back to the TUN as super-packets (TunOpenOptions.offloads).
   */
  readonly tunOffloads?: boolean | undefined
}

export class UserspaceBackend implements WireguardBackend {
  readonly kind = 'userspace' as const
  private device: Device | undefined
  private tun: TunDevice | undefined
  private udp: UdpSocket | undefined
  private uapi: UapiServer | undefined
  private settings: InterfaceSettings | undefined

  constructor(private readonly options: UserspaceBackendOptions = {}) {}

  get running(): Device | undefined {
    return this.device
  }

  get listenPort(): number {
    return this.udp?.info().port ?? 0
  }

  async up(settings: InterfaceSettings): Promise<void> {
    if (this.device) throw new WireguardStateError(`interface ${settings.interfaceName} is already up`)
    const privateKey = keyFromBase64(settings.privateKey)
    const tun = this.openTun(settings)
    try {
      await tun.configure({ addresses: settings.addresses, mtu: settings.mtu, up: true })
      const udp = this.bind(settings.listenPort)
      const device = new Device({ tun, udp, privateKey, mtu: settings.mtu }, this.options)
      device.start()
      this.tun = tun
      this.udp = udp
      this.device = device
      this.settings = settings
      if (this.options.uapi !== false) {
        this.uapi = new UapiServer(device, settings.interfaceName, privateKey, () => this.listenPort)
        await this.uapi.start()
      }
    } catch (err) {
      await this.down()
      tun.close()
      throw err
    }
  }

  private openTun(settings: InterfaceSettings): TunDevice {
    const opts = { name: settings.interfaceName, mtu: settings.mtu }
    if (this.options.tunOffloads ?? true) {
      try {
        return TunDevice.open({ ...opts, offloads: true })
      } catch (err) {
        // A kernel or addon without TUN offloads still runs the interface, one packet per read.
        if (!(err instanceof DataPlaneIoError) || err.sysCode === 'EPERM' || err.sysCode === 'EACCES') throw err
      }
    }
    return TunDevice.open(opts)
  }

  private bind(port: number): UdpSocket {
    const offloads = this.options.udpOffloads ?? true
    const opts = { port, gso: offloads, gro: offloads }
    if (this.options.bindAddress) return UdpSocket.bind({ ...opts, address: this.options.bindAddress })
    try {
      return UdpSocket.bind({ ...opts, address: '::' })
    } catch {
      // A namespace without IPv6 cannot bind `::`.
      return UdpSocket.bind({ ...opts, address: '0.0.0.0' })
    }
  }

  private need(): Device {
    if (!this.device) throw new WireguardStateError('the interface is not up')
    return this.device
  }

  async setPeer(peer: PeerSettings): Promise<void> {
    this.need().setPeer(peer)
  }

  async removePeer(publicKey: string): Promise<void> {
    this.need().removePeer(publicKey)
  }

  async peers(): Promise<PeerStatus[]> {
    return this.need().peers()
  }

  /** See Device.setPeerRelay: the relay fallback exists only in this backend. */
  setPeerRelay(publicKey: string, link: RelayLink | null): void {
    this.need().setPeerRelay(publicKey, link)
  }

  hasPeer(publicKey: string): boolean {
    return this.device?.hasPeer(publicKey) ?? false
  }

  relayStats(publicKey: string): RelayLinkStats | undefined {
    return this.device?.relayStats(publicKey)
  }

  get interfaceName(): string | undefined {
    return this.settings?.interfaceName
  }

  async down(): Promise<void> {
    await this.uapi?.stop()
    this.uapi = undefined
    this.device?.stop()
    this.device = undefined
    this.udp?.close()
    this.udp = undefined
    this.tun?.close()
    this.tun = undefined
  }
}
