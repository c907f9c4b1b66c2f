/**
 * The `kernel` backend: a WireGuard device programmed with the `wg` tool.
 *
 * The device is a kernel WireGuard link when the module exists, otherwise a `wireguard-go`
 * process in the foreground, tracked and stopped by its PID. Both answer the same `wg` UAPI,
 * so everything after creating the device is the same code.
 *
 * wireguard-go's control socket lives in /var/run/wireguard/<name>.sock, and `wg` looks there
 * before it asks the kernel. That directory is shared by every network namespace, so a
 * wireguard-go interface name must be unique on the host, not only inside its namespace.
 *
 * Private and preshared keys reach `wg` only through files of mode 0600 in a fresh 0700
 * directory that is removed right after: a command line is readable by every user in `ps`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FlatnetError, InvalidArgumentError } from '@flatnet/core'
import { formatShow, WireguardStateError, type InterfaceSettings, type PeerSettings, type PeerStatus, type WireguardBackend } from './backend.js'
import { canonicalAddress, canonicalAllowedIp, canonicalEndpoint, isWireguardKey, MAX_INTERFACE_MTU, MIN_INTERFACE_MTU } from './config.js'

/** A `wg` or `ip` command failed or did not finish in time. */
export class WireguardCommandError extends FlatnetError {
  readonly code = 'ERR_WG_COMMAND'
  constructor(
    /** The command line, which never holds a key. */
    readonly command: string,
    /** Exit status; undefined when the command could not start or was killed. */
    readonly status: number | undefined,
    reason: string,
  ) {
    super(`${command}: ${reason}`)
  }
}

/**
 * The WireGuard device could not be created or stopped: wireguard-go is not installed, exited,
 * did not open its control socket in time, or the interface name is taken.
 */
export class WireguardDeviceError extends FlatnetError {
  readonly code = 'ERR_WG_DEVICE'
}

export type DeviceKind = 'kernel' | 'wireguard-go'

export interface KernelBackendOptions {
  /** Run every command inside this network namespace (`ip netns exec <ns>`); it must exist. */
  readonly netns?: string | undefined
  /** `auto` (default) uses the kernel module when `detectKernelWireguard` finds it. */
  readonly device?: 'auto' | DeviceKind | undefined
  readonly wgPath?: string | undefined
  readonly ipPath?: string | undefined
  readonly wireguardGoPath?: string | undefined
  /** Parent of the short-lived key file directories; the OS temp dir by default. */
  readonly keyFileDir?: string | undefined
  /** How long wireguard-go may take to open its control socket. */
  readonly startTimeoutMs?: number | undefined
  /** Per `wg` / `ip` command. */
  readonly commandTimeoutMs?: number | undefined
  /** How long wireguard-go may take to exit after SIGTERM before it gets SIGKILL. */
  readonly stopTimeoutMs?: number | undefined
}

/** The interface as the device reports it. */
export interface InterfaceStatus {
  readonly interfaceName: string
  readonly publicKey: string
  /** The bound port, also when 0 was asked for. */
  readonly listenPort: number
  readonly peers: PeerStatus[]
}

export const WIREGUARD_GO_SOCKET_DIR = '/var/run/wireguard'
const OUTPUT_TAIL = 4096

const INTERFACE_NAME = /^[A-Za-z0-9_.-]{1,15}$/
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,64}$/

function checkInterfaceName(name: string): void {
  if (!INTERFACE_NAME.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(`interface name "${name}": 1 to 15 letters, digits, "_", "-" or "."`)
  }
}

function checkNetns(netns: string | undefined): void {
  if (netns !== undefined && (!NETNS_NAME.test(netns) || netns === '.' || netns === '..')) {
    throw new InvalidArgumentError(`network namespace name "${netns}" is not valid`)
  }
}

interface RunOptions {
  readonly netns: string | undefined
  readonly ipPath: string
  readonly timeoutMs: number
}

/** Runs one command without a shell; resolves with stdout, rejects with WireguardCommandError. */
function run(argv: readonly string[], opts: RunOptions): Promise<string> {
  const full = opts.netns === undefined ? argv : [opts.ipPath, 'netns', 'exec', opts.netns, ...argv]
  const shown = full.join(' ')
  return new Promise((resolve, reject) => {
    execFile(full[0]!, full.slice(1), { timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (!err) return resolve(stdout)
      const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean; signal?: string | null }
      if (e.code === 'ENOENT') return reject(new WireguardCommandError(shown, undefined, `${full[0]} is not installed${installHint(full[0]!)}`))
      if (e.killed || e.signal) return reject(new WireguardCommandError(shown, undefined, `did not finish within ${opts.timeoutMs} ms`))
      const status = typeof e.code === 'number' ? e.code : undefined
      const detail = stderr.trim().split('\n').slice(-5).join(' | ') || `exit status ${status ?? '?'}`
      reject(new WireguardCommandError(shown, status, detail))
    })
  })
}

function installHint(binary: string): string {
  if (binary.endsWith('wg')) return ' (Debian package wireguard-tools)'
  if (binary.endsWith('wireguard-go')) return ' (Debian package wireguard-go)'
  if (binary.endsWith('ip')) return ' (Debian package iproute2)'
  return ''
}

/**
 * Whether this kernel can create WireGuard links: creates a uniquely named probe link (which
 * loads the module on demand) and deletes it again. False without the module or without
 * CAP_NET_ADMIN. With `netns`, the probe runs in that namespace and leaves the host's alone.
 */
export async function detectKernelWireguard(options: { netns?: string | undefined; ipPath?: string | undefined; timeoutMs?: number | undefined } = {}): Promise<boolean> {
  checkNetns(options.netns)
  const opts: RunOptions = { netns: options.netns, ipPath: options.ipPath ?? 'ip', timeoutMs: options.timeoutMs ?? 10_000 }
  // Unique so that concurrent probes cannot mistake each other's link for "exists already".
  const name = `fn-wgp${randomBytes(4).toString('hex')}`
  try {
    await run([opts.ipPath, 'link', 'add', 'name', name, 'type', 'wireguard'], opts)
  } catch {
    return false
  }
  await run([opts.ipPath, 'link', 'del', 'dev', name], opts).catch(() => undefined)
  return true
}

function parseDump(text: string, interfaceName: string): InterfaceStatus {
  const lines = text.split('\n').filter((l) => l !== '')
  const head = lines[0]?.split('\t')
  if (!head || head.length < 4) throw new WireguardCommandError(`wg show ${interfaceName} dump`, 0, 'unexpected output (no interface line)')
  const peers: PeerStatus[] = []
  for (const line of lines.slice(1)) {
    const f = line.split('\t')
    if (f.length < 8) throw new WireguardCommandError(`wg show ${interfaceName} dump`, 0, `unexpected peer line with ${f.length} fields`)
    const handshake = Number(f[4])
    peers.push({
      publicKey: f[0]!,
      endpoint: f[2] === '(none)' ? undefined : f[2],
      allowedIps: f[3] === '(none)' || f[3] === '' ? [] : f[3]!.split(','),
      latestHandshake: handshake > 0 ? new Date(handshake * 1000) : undefined,
      rxBytes: Number(f[5]),
      txBytes: Number(f[6]),
      persistentKeepalive: f[7] === 'off' || f[7] === '0' ? undefined : Number(f[7]),
      hasPresharedKey: f[1] !== '(none)',
    })
  }
  return { interfaceName, publicKey: head[1]!, listenPort: Number(head[2]), peers }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms))
}

/** Resolves true when something accepts connections on the unix socket `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path)
    const done = (ok: boolean): void => {
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
    s.setTimeout(1000, () => done(false))
  })
}

export class KernelBackend implements WireguardBackend {
  readonly kind = 'kernel' as const
  private readonly opts: RunOptions
  private readonly options: KernelBackendOptions
  private name: string | undefined
  private deviceKind: DeviceKind | undefined
  private child: ChildProcess | undefined
  private childExit: Promise<void> | undefined
  private childOutput = ''
  private state: 'down' | 'up' = 'down'
  /** Set once this backend made the link, so a failed `up()` never deletes a link it found. */
  private created = false
  /** Calls run one at a time, so `down()` never races a half-done `up()`. */
  private queue: Promise<unknown> = Promise.resolve()

  constructor(options: KernelBackendOptions = {}) {
    checkNetns(options.netns)
    this.options = options
    this.opts = { netns: options.netns, ipPath: options.ipPath ?? 'ip', timeoutMs: options.commandTimeoutMs ?? 10_000 }
  }

  /** The interface name while up. */
  get interfaceName(): string | undefined {
    return this.name
  }

  /** Which kind of device `up()` created. */
  get device(): DeviceKind | undefined {
    return this.deviceKind
  }

  /** PID of the wireguard-go process while it runs. */
  get pid(): number | undefined {
    return this.child?.exitCode === null && this.child.signalCode === null ? this.child.pid : undefined
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.queue.then(fn, fn)
    this.queue = next.catch(() => undefined)
    return next
  }

  private get wg(): string {
    return this.options.wgPath ?? 'wg'
  }

  private get ip(): string {
    return this.opts.ipPath
  }

  up(config: InterfaceSettings): Promise<void> {
    return this.serial(async () => {
      if (this.state === 'up') throw new WireguardStateError(`interface ${this.name} is already up; call down() first`)
      checkInterfaceName(config.interfaceName)
      if (!isWireguardKey(config.privateKey)) throw new InvalidArgumentError('private key: not a base64 WireGuard key (32 bytes)')
      if (!Number.isInteger(config.listenPort) || config.listenPort < 0 || config.listenPort > 65535) {
        throw new InvalidArgumentError(`listen port ${config.listenPort}: must be an integer from 0 to 65535`)
      }
      if (!Number.isInteger(config.mtu) || config.mtu < MIN_INTERFACE_MTU || config.mtu > MAX_INTERFACE_MTU) {
        throw new InvalidArgumentError(`MTU ${config.mtu}: must be an integer from ${MIN_INTERFACE_MTU} to ${MAX_INTERFACE_MTU}`)
      }
      const addresses = config.addresses.map(canonicalAddress)
      const name = config.interfaceName
      const wanted = this.options.device ?? 'auto'
      const kind: DeviceKind = wanted !== 'auto' ? wanted : (await detectKernelWireguard({ netns: this.opts.netns, ipPath: this.ip })) ? 'kernel' : 'wireguard-go'
      this.name = name
      this.deviceKind = kind
      try {
        if (kind === 'kernel') await this.createKernelLink(name)
        else await this.startWireguardGo(name)
        this.created = true
        await this.withKeyFiles([config.privateKey], ([file]) => run([this.wg, 'set', name, 'private-key', file!, 'listen-port', String(config.listenPort)], this.opts))
        for (const a of addresses) await run([this.ip, 'address', 'add', a, 'dev', name], this.opts)
        await run([this.ip, 'link', 'set', 'dev', name, 'mtu', String(config.mtu), 'up'], this.opts)
        this.state = 'up'
      } catch (e) {
        await this.teardown().catch(() => undefined)
        throw e
      }
    })
  }

  setPeer(peer: PeerSettings): Promise<void> {
    return this.serial(async () => {
      const name = this.requireUp('setPeer')
      if (!isWireguardKey(peer.publicKey)) throw new InvalidArgumentError(`peer public key "${peer.publicKey}": not a base64 WireGuard key (32 bytes)`)
      if (peer.presharedKey !== undefined && !isWireguardKey(peer.presharedKey)) {
        throw new InvalidArgumentError('preshared key: not a base64 WireGuard key (32 bytes)')
      }
      const keepalive = peer.persistentKeepalive ?? 0
      if (!Number.isInteger(keepalive) || keepalive < 0 || keepalive > 65535) {
        throw new InvalidArgumentError(`persistent keepalive ${keepalive}: must be an integer number of seconds from 0 to 65535`)
      }
      const endpoint = peer.endpoint === undefined ? undefined : canonicalEndpoint(peer.endpoint)
      const allowed = peer.allowedIps.map(canonicalAllowedIp)
      this.checkDevice()
      const keys = peer.presharedKey === undefined ? [] : [peer.presharedKey]
      await this.withKeyFiles(keys, ([pskFile]) =>
        run(
          [
            this.wg, 'set', name, 'peer', peer.publicKey,
            // An empty key file clears a preshared key set earlier.
            'preshared-key', pskFile ?? '/dev/null',
            ...(endpoint !== undefined ? ['endpoint', endpoint] : []),
            'persistent-keepalive', keepalive > 0 ? String(keepalive) : 'off',
            'allowed-ips', allowed.join(','),
          ],
          this.opts,
        ),
      )
    })
  }

  removePeer(publicKey: string): Promise<void> {
    return this.serial(async () => {
      const name = this.requireUp('removePeer')
      if (!isWireguardKey(publicKey)) throw new InvalidArgumentError(`peer public key "${publicKey}": not a base64 WireGuard key (32 bytes)`)
      this.checkDevice()
      await run([this.wg, 'set', name, 'peer', publicKey, 'remove'], this.opts)
    })
  }

  async peers(): Promise<PeerStatus[]> {
    return (await this.status()).peers
  }

  /** The interface's public key, bound port and peers, from `wg show <if> dump`. */
  status(): Promise<InterfaceStatus> {
    return this.serial(async () => {
      const name = this.requireUp('status')
      this.checkDevice()
      // dump's first line holds the private key: it stays in this process, never in an error.
      return parseDump(await run([this.wg, 'show', name, 'dump'], this.opts), name)
    })
  }

  /** `wg show <if>` text. */
  async show(now: Date = new Date()): Promise<string> {
    const s = await this.status()
    return formatShow(s.interfaceName, s.publicKey, s.listenPort, s.peers, now)
  }

  down(): Promise<void> {
    return this.serial(async () => {
      if (this.name === undefined) return
      await this.teardown()
    })
  }

  private requireUp(call: string): string {
    if (this.state !== 'up' || this.name === undefined) throw new WireguardStateError(`${call}: the interface is not up; call up() first`)
    return this.name
  }

  /** Turns a vanished wireguard-go into one clear error instead of a confusing `wg` failure. */
  private checkDevice(): void {
    const c = this.child
    if (this.deviceKind === 'wireguard-go' && c && (c.exitCode !== null || c.signalCode !== null)) {
      throw new WireguardDeviceError(
        `wireguard-go for ${this.name} (pid ${c.pid}) exited unexpectedly (${c.signalCode ?? `status ${c.exitCode}`}); call down() and up() again${this.outputTail()}`,
      )
    }
  }

  private outputTail(): string {
    const t = this.childOutput.trim()
    return t === '' ? '' : `; its output ends with:\n${t}`
  }

  private async withKeyFiles<T>(keys: readonly string[], fn: (files: string[]) => Promise<T>): Promise<T> {
    if (keys.length === 0) return fn([])
    const dir = await mkdtemp(join(this.options.keyFileDir ?? tmpdir(), 'flatnet-wg-'))
    try {
      const files: string[] = []
      for (const [i, key] of keys.entries()) {
        const file = join(dir, `key${i}`)
        await writeFile(file, `${key}\n`, { mode: 0o600, flag: 'wx' })
        files.push(file)
      }
      return await fn(files)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }

  private async createKernelLink(name: string): Promise<void> {
    try {
      await run([this.ip, 'link', 'add', 'name', name, 'type', 'wireguard'], this.opts)
    } catch (e) {
      const hint = /Unknown device type|not supported/i.test((e as Error).message) ? '; this kernel has no WireGuard module: use device "auto" or "wireguard-go"' : ''
      throw new WireguardDeviceError(`cannot create kernel WireGuard link ${name}: ${(e as Error).message}${hint}`)
    }
  }

  private async startWireguardGo(name: string): Promise<void> {
    const socket = join(WIREGUARD_GO_SOCKET_DIR, `${name}.sock`)
    if (await socketAnswers(socket)) {
      throw new WireguardDeviceError(
        `interface name ${name} is taken: a wireguard-go device answers on ${socket}; its sockets are shared by all network namespaces, so the name must be unique on the host`,
      )
    }
    const bin = this.options.wireguardGoPath ?? 'wireguard-go'
    const argv = this.opts.netns === undefined ? [bin, '-f', name] : [this.ip, 'netns', 'exec', this.opts.netns, bin, '-f', name]
    this.childOutput = ''
    // `ip netns exec` execs in place, so the PID is wireguard-go's own.
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    this.child = child
    let spawnError: NodeJS.ErrnoException | undefined
    const keep = (chunk: Buffer): void => {
      this.childOutput = (this.childOutput + chunk.toString('utf8')).slice(-OUTPUT_TAIL)
    }
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    this.childExit = new Promise((resolve) => {
      child.once('error', (e) => {
        spawnError = e
        resolve()
      })
      child.once('close', () => resolve())
    })
    const deadline = Date.now() + (this.options.startTimeoutMs ?? 5000)
    while (true) {
      if (spawnError) {
        throw new WireguardDeviceError(
          spawnError.code === 'ENOENT' ? `${argv[0]} is not installed${installHint(argv[0]!)}` : `cannot start ${argv[0]}: ${spawnError.message}`,
        )
      }
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new WireguardDeviceError(`wireguard-go for ${name} exited (${child.signalCode ?? `status ${child.exitCode}`}) before it opened ${socket}${this.outputTail()}`)
      }
      if (await socketAnswers(socket)) return
      if (Date.now() >= deadline) {
        throw new WireguardDeviceError(`wireguard-go for ${name} did not open ${socket} within ${this.options.startTimeoutMs ?? 5000} ms${this.outputTail()}`)
      }
      await sleep(25)
    }
  }

  /** Removes the device whatever state it got to; leaves the backend down. */
  private async teardown(): Promise<void> {
    const name = this.name
    const child = this.child
    try {
      if (this.deviceKind === 'wireguard-go' && child) {
        await this.stopChild(child)
        // The TUN link normally goes with the process; make sure, and ignore "no such device".
        if (this.created && name !== undefined) await run([this.ip, 'link', 'del', 'dev', name], this.opts).catch(() => undefined)
      } else if (this.deviceKind === 'kernel' && this.created && name !== undefined) {
        await run([this.ip, 'link', 'del', 'dev', name], this.opts).catch((e: unknown) => {
          if (!(e instanceof WireguardCommandError && /Cannot find device/i.test(e.message))) throw e
        })
      }
    } finally {
      this.state = 'down'
      this.created = false
      this.name = undefined
      this.deviceKind = undefined
      this.child = undefined
      this.childExit = undefined
    }
  }

  private async stopChild(child: ChildProcess): Promise<void> {
    const exited = this.childExit ?? Promise.resolve()
    const running = (): boolean => child.pid !== undefined && child.exitCode === null && child.signalCode === null
    if (!running()) {
      await exited
      return
    }
    const wait = async (ms: number): Promise<boolean> => {
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))
      // A timer left pending would keep the caller's process alive for the whole timeout.
      const result = await Promise.race([exited.then(() => true), timeout])
      clearTimeout(timer)
      return result
    }
    child.kill('SIGTERM')
    if (await wait(this.options.stopTimeoutMs ?? 5000)) return
    child.kill('SIGKILL')
    if (await wait(5000)) return
    throw new WireguardDeviceError(`wireguard-go (pid ${child.pid}) did not exit after SIGTERM and SIGKILL`)
  }
}
