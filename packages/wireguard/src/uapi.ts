/**
 * The cross-platform WireGuard configuration protocol (UAPI) on a unix socket at
 * /var/run/wireguard/<interface>.sock, as wireguard-go serves it. Serving it means the stock
 * `wg show` and `wg set` work on a flatnet userspace interface, and `flatnet wg show` reads any
 * userspace interface, flatnet's or wireguard-go's, the same way.
 *
 *   request:  "get=1\n\n"            reply: key=value lines, then "errno=0\n\n"
 *   request:  "set=1\n" key=value lines "\n"   reply: "errno=0\n\n" (or errno=<n>)
 */
import { chmodSync, mkdirSync, rmSync } from 'node:fs'
import { createConnection, createServer, type Server } from 'node:net'
import { join } from 'node:path'
import type { PeerStatus } from './backend.js'
import { keyFromHex, keyToBase64, keyToHex, publicKey as derivePublicKey } from './crypto.js'
import type { Device, DevicePeerSettings } from './device.js'

export const UAPI_SOCKET_DIR = '/var/run/wireguard'
const EINVAL = 22

export function uapiSocketPath(interfaceName: string, dir = UAPI_SOCKET_DIR): string {
  return join(dir, `${interfaceName}.sock`)
}

function getReply(device: Device, privateKey: Uint8Array, listenPort: number): string {
  const lines = [`private_key=${keyToHex(privateKey)}`, `listen_port=${listenPort}`]
  const presharedKeys = new Map(device.peerList().map((p) => [p.publicKeyBase64, p.handshake.presharedKey]))
  for (const p of device.peers()) {
    lines.push(`public_key=${keyToHex(Buffer.from(p.publicKey, 'base64'))}`)
    // Sent always, all zeros for none, as wireguard-go does: without it `wg show` says "(none)"
    // and `wg showconf` drops the key. The socket is root's only, like the private key above.
    lines.push(`preshared_key=${keyToHex(presharedKeys.get(p.publicKey) ?? Buffer.alloc(32))}`)
    if (p.endpoint) lines.push(`endpoint=${p.endpoint}`)
    const ms = p.latestHandshake?.getTime() ?? 0
    lines.push(`last_handshake_time_sec=${Math.floor(ms / 1000)}`, `last_handshake_time_nsec=${(ms % 1000) * 1_000_000}`)
    lines.push(`tx_bytes=${p.txBytes}`, `rx_bytes=${p.rxBytes}`, `persistent_keepalive_interval=${p.persistentKeepalive ?? 0}`)
    for (const ip of p.allowedIps) lines.push(`allowed_ip=${ip}`)
    lines.push('protocol_version=1')
  }
  return `${lines.join('\n')}\nerrno=0\n\n`
}

/** Applies a `set=1` body; throws on anything it cannot apply (the reply is then errno=22). */
function applySet(device: Device, body: string[]): void {
  // presharedKey: undefined when not named (unchanged), null when set to all zeros (none).
  let peer: { publicKey: string; remove: boolean; settings: { presharedKey?: string | null; endpoint?: string; allowedIps?: string[]; replaceAllowedIps: boolean; persistentKeepalive?: number } } | undefined
  const flush = (): void => {
    if (!peer) return
    if (peer.remove) device.removePeer(peer.publicKey)
    else {
      const existing = device.peers().find((p) => p.publicKey === peer?.publicKey)
      const allowed = peer.settings.replaceAllowedIps ? (peer.settings.allowedIps ?? []) : [...(existing?.allowedIps ?? []), ...(peer.settings.allowedIps ?? [])]
      // setPeer takes the whole peer, where an absent key means none; in UAPI a key not named
      // stays as it is (`wg set wg0 peer X endpoint ...` must not drop X's preshared key).
      const kept = existing?.hasPresharedKey ? keyToBase64(device.peerList().find((p) => p.publicKeyBase64 === existing.publicKey)!.handshake.presharedKey) : undefined
      const presharedKey = peer.settings.presharedKey === undefined ? kept : (peer.settings.presharedKey ?? undefined)
      const settings: DevicePeerSettings = {
        publicKey: peer.publicKey,
        allowedIps: allowed,
        ...(presharedKey ? { presharedKey } : {}),
        ...(peer.settings.endpoint ? { endpoint: peer.settings.endpoint } : {}),
        persistentKeepalive: peer.settings.persistentKeepalive ?? existing?.persistentKeepalive ?? 0,
      }
      device.setPeer(settings)
    }
    peer = undefined
  }
  for (const line of body) {
    const eq = line.indexOf('=')
    if (eq < 1) throw new Error(`bad line "${line}"`)
    const key = line.slice(0, eq)
    const value = line.slice(eq + 1)
    switch (key) {
      case 'public_key':
        flush()
        peer = { publicKey: keyToBase64(keyFromHex(value)), remove: false, settings: { replaceAllowedIps: false } }
        break
      case 'replace_peers':
        if (value === 'true') for (const p of device.peers()) device.removePeer(p.publicKey)
        break
      case 'listen_port':
      case 'fwmark':
      case 'private_key':
      case 'protocol_version':
      case 'update_only':
        // The key and port are fixed at `up`; accepting an equal value keeps `wg setconf` usable.
        break
      default: {
        if (!peer) throw new Error(`"${key}" outside a peer`)
        if (key === 'remove') peer.remove = value === 'true'
        else if (key === 'preshared_key') peer.settings.presharedKey = /^0+$/.test(value) ? null : keyToBase64(keyFromHex(value))
        else if (key === 'endpoint') peer.settings.endpoint = value
        else if (key === 'persistent_keepalive_interval') peer.settings.persistentKeepalive = Number(value)
        else if (key === 'replace_allowed_ips') peer.settings.replaceAllowedIps = value === 'true'
        else if (key === 'allowed_ip') (peer.settings.allowedIps ??= []).push(value)
        else throw new Error(`unknown key "${key}"`)
      }
    }
  }
  flush()
}

export class UapiServer {
  private server: Server | undefined
  readonly path: string

  constructor(
    private readonly device: Device,
    private readonly interfaceName: string,
    private readonly privateKey: Uint8Array,
    private readonly listenPort: () => number,
    dir = UAPI_SOCKET_DIR,
  ) {
    this.path = uapiSocketPath(interfaceName, dir)
  }

  async start(): Promise<void> {
    mkdirSync(UAPI_SOCKET_DIR, { recursive: true, mode: 0o755 })
    rmSync(this.path, { force: true })
    const server = createServer((conn) => {
      let buf = ''
      conn.setEncoding('utf8')
      conn.on('data', (chunk: string) => {
        buf += chunk
        if (buf.length > 1 << 20) return void conn.destroy()
        const end = buf.indexOf('\n\n')
        if (end === -1) return
        const lines = buf.slice(0, end).split('\n')
        buf = buf.slice(end + 2)
        const op = lines.shift()
        if (op === 'get=1') conn.write(getReply(this.device, this.privateKey, this.listenPort()))
        else if (op === 'set=1') {
          try {
            applySet(this.device, lines)
            conn.write('errno=0\n\n')
          } catch {
            conn.write(`errno=${EINVAL}\n\n`)
          }
        } else conn.write(`errno=${EINVAL}\n\n`)
      })
      conn.on('error', () => undefined)
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.path, () => resolve())
    })
    // Like wireguard-go: the socket configures keys, so only root may use it.
    chmodSync(this.path, 0o600)
    this.server = server
  }

  async stop(): Promise<void> {
    const s = this.server
    this.server = undefined
    if (s) await new Promise<void>((r) => s.close(() => r()))
    rmSync(this.path, { force: true })
  }
}

export interface UapiInterfaceState {
  readonly publicKey: string
  readonly listenPort: number
  readonly peers: PeerStatus[]
}

/** Reads a userspace interface's state over its UAPI socket. */
export function uapiGet(interfaceName: string, timeoutMs = 2_000, dir = UAPI_SOCKET_DIR): Promise<UapiInterfaceState> {
  return new Promise((resolve, reject) => {
    const conn = createConnection(uapiSocketPath(interfaceName, dir))
    const timer = setTimeout(() => {
      conn.destroy()
      reject(new Error(`no answer from ${interfaceName} within ${timeoutMs} ms`))
    }, timeoutMs)
    let buf = ''
    conn.setEncoding('utf8')
    conn.on('connect', () => conn.write('get=1\n\n'))
    conn.on('data', (chunk: string) => {
      buf += chunk
      if (!buf.includes('\n\n')) return
      clearTimeout(timer)
      conn.end()
      try {
        resolve(parseGet(buf.slice(0, buf.indexOf('\n\n'))))
      } catch (err) {
        reject(err as Error)
      }
    })
    conn.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
  })
}

function parseGet(text: string): UapiInterfaceState {
  let publicKey = ''
  let listenPort = 0
  const peers: { publicKey: string; endpoint?: string; allowedIps: string[]; sec: number; nsec: number; rx: number; tx: number; keepalive: number; psk: boolean }[] = []
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=')
    const key = line.slice(0, eq)
    const value = line.slice(eq + 1)
    const p = peers[peers.length - 1]
    if (key === 'errno' && value !== '0') throw new Error(`the interface answered errno ${value}`)
    if (key === 'private_key') publicKey = keyToBase64(derivePublicKey(keyFromHex(value)))
    else if (key === 'listen_port') listenPort = Number(value)
    else if (key === 'public_key') peers.push({ publicKey: keyToBase64(keyFromHex(value)), allowedIps: [], sec: 0, nsec: 0, rx: 0, tx: 0, keepalive: 0, psk: false })
    else if (p && key === 'endpoint') p.endpoint = value
    else if (p && key === 'allowed_ip') p.allowedIps.push(value)
    else if (p && key === 'last_handshake_time_sec') p.sec = Number(value)
    else if (p && key === 'last_handshake_time_nsec') p.nsec = Number(value)
    else if (p && key === 'rx_bytes') p.rx = Number(value)
    else if (p && key === 'tx_bytes') p.tx = Number(value)
    else if (p && key === 'persistent_keepalive_interval') p.keepalive = Number(value)
    else if (p && key === 'preshared_key') p.psk = !/^0+$/.test(value)
  }
  return {
    publicKey,
    listenPort,
    peers: peers.map((p) => ({
      publicKey: p.publicKey,
      endpoint: p.endpoint,
      allowedIps: p.allowedIps,
      latestHandshake: p.sec === 0 ? undefined : new Date(p.sec * 1000 + Math.floor(p.nsec / 1e6)),
      rxBytes: p.rx,
      txBytes: p.tx,
      persistentKeepalive: p.keepalive > 0 ? p.keepalive : undefined,
      hasPresharedKey: p.psk,
    })),
  }
}
