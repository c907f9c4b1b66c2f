/**
 * The userspace backend: a TUN device, a batched UDP socket and the protocol in TypeScript
 * (device.ts), configured through the same interface as the kernel backend, and reachable over
 * the standard UAPI socket (so `wg show` works on it).
 */
import { keyFromBase64 } from './crypto.js'
import { WireguardStateError, type InterfaceSettings, type PeerSettings, type PeerStatus, type WireguardBackend } from './backend.js'
import { Device, type DeviceOptions } from './device.js'
import { TunDevice } from './tun.js'
import { UdpSocket } from './udp.js'
import { UapiServer } from './uapi.js'

export interface UserspaceBackendOptions extends DeviceOptions {
  /** Serve the UAPI socket (default true). */
  readonly uapi?: boolean | undefined
  /** Local address to bind the UDP socket to (default `::`, falling back to `0.0.0.0`). */
  readonly bindAddress?: string | undefined
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
    const tun = TunDevice.open({ name: settings.interfaceName, mtu: settings.mtu })
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

  private bind(port: number): UdpSocket {
    if (this.options.bindAddress) return UdpSocket.bind({ address: this.options.bindAddress, port })
    try {
      return UdpSocket.bind({ address: '::', port })
    } catch {
      // A namespace without IPv6 cannot bind `::`.
      return UdpSocket.bind({ address: '0.0.0.0', port })
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
