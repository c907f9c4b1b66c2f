/**
 * What interop.test.ts and security.test.ts share, on top of native-harness.ts (namespaces made
 * per run, processes stopped by PID, bounded waits): veth links, WireGuard nodes of three kinds
 * (wireguard-go configured with `wg`, `flatnet wg up`, and the wg-node.js test script), pings,
 * UAPI reads and a checksummed TCP transfer, all inside the run's namespaces.
 *
 * Interface names must be unique on the whole machine: every userspace implementation keeps its
 * UAPI socket in /var/run/wireguard, which all namespaces share.
 */
import { spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { uapiGet, uapiSocketPath, type UapiInterfaceState } from '../src/index.js'
import { kernelSkipReason, run, uniqueName, waitFor, within, type Processes } from './native-harness.js'
import { RpcClient } from './rpc.js'

export const FLATNET_CLI = fileURLToPath(new URL('../../../cli/bin/flatnet.js', import.meta.url))
const WG_NODE = fileURLToPath(new URL('./wg-node.js', import.meta.url))
const PEER_WORKER = fileURLToPath(new URL('./wg-peer-worker.js', import.meta.url))
const TCP_TRANSFER = fileURLToPath(new URL('./tcp-transfer.js', import.meta.url))

/** Why the WireGuard namespace tests cannot run here, or false. */
export function wgSkipReason(extra: { cli?: boolean } = {}): string | false {
  const kernel = kernelSkipReason()
  if (kernel) return kernel
  const missing = ['wg', 'wireguard-go', 'ping'].filter((cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status !== 0)
  if (missing.length > 0) return `needs ${missing.join(', ')} (scripts/setup.sh installs them)`
  if (extra.cli && !existsSync(join(FLATNET_CLI, '../../dist/src/main.js'))) return 'needs the flatnet CLI built (scripts/setup.sh)'
  return false
}

/** A veth pair from `nsA` to `nsB`, addressed and up. Goes away with its namespaces. */
export async function vethPair(nsA: string, cidrA: string, nsB: string, cidrB: string): Promise<void> {
  const a = uniqueName('fnv')
  const b = uniqueName('fnv')
  await run('ip', ['link', 'add', 'name', a, 'netns', nsA, 'type', 'veth', 'peer', 'name', b, 'netns', nsB])
  for (const [ns, dev, cidr] of [
    [nsA, a, cidrA],
    [nsB, b, cidrB],
  ] as const) {
    await run('ip', ['-n', ns, 'address', 'add', cidr, 'dev', dev])
    await run('ip', ['-n', ns, 'link', 'set', dev, 'up'])
  }
}

export interface PeerConfig {
  readonly publicKey: string
  readonly presharedKey?: string | undefined
  readonly endpoint?: string | undefined
  readonly allowedIps: readonly string[]
}

export interface NodeConfig {
  /** Interface name, unique on the machine (see uniqueName). */
  readonly name: string
  readonly privateKey: string
  readonly listenPort: number
  /** Tunnel address with prefix, e.g. 10.0.0.1/24. */
  readonly address: string
  readonly peers: readonly PeerConfig[]
}

export interface WgNode {
  readonly kind: 'wireguard-go' | 'flatnet'
  readonly ns: string
  readonly name: string
  readonly child: ChildProcess & { output: () => string; exited: Promise<number | null> }
  /** Stops the process by its PID and removes its UAPI socket. */
  stop(): Promise<void>
}

/** Ends `child` by PID: SIGTERM, then SIGKILL after `graceMs`; always returns. */
export async function stopByPid(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const closed = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  process.kill(child.pid, 'SIGTERM')
  try {
    await within(closed, graceMs, `pid ${child.pid} to exit after SIGTERM`)
  } catch {
    if (child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL')
    await within(closed, graceMs, `pid ${child.pid} to exit after SIGKILL`)
  }
}

function removeSocket(name: string): void {
  rmSync(uapiSocketPath(name), { force: true })
}

async function waitUapi(name: string, child: ChildProcess & { output: () => string }, ms: number): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${name} exited before its UAPI socket answered:\n${child.output()}`)
    if (existsSync(uapiSocketPath(name))) {
      const ok = await uapiGet(name, 1000).then(
        () => true,
        () => false,
      )
      if (ok) return
    }
    if (Date.now() > deadline) throw new Error(`${name}: no UAPI answer within ${ms} ms:\n${child.output()}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function wgSetArgs(cfg: NodeConfig, keyFile: (key: string) => string): string[] {
  const args = ['set', cfg.name, 'private-key', keyFile(cfg.privateKey), 'listen-port', String(cfg.listenPort)]
  for (const p of cfg.peers) {
    args.push('peer', p.publicKey, 'allowed-ips', p.allowedIps.join(','))
    if (p.endpoint) args.push('endpoint', p.endpoint)
    if (p.presharedKey) args.push('preshared-key', keyFile(p.presharedKey))
  }
  return args
}

/**
 * wireguard-go in the foreground (verbose log kept), configured with the stock `wg set`. The
 * keys pass through files in `dir` (wg reads keys only from files, and a stdin pipe from Node
 * is a socket it cannot open), removed as soon as wg has read them.
 */
export async function startWireguardGo(procs: Processes, ns: string, cfg: NodeConfig, dir: string): Promise<WgNode> {
  // `ip netns exec` and `env` exec in place: the PID is wireguard-go's own.
  const child = procs.spawn('ip', ['netns', 'exec', ns, 'env', 'LOG_LEVEL=verbose', 'wireguard-go', '-f', cfg.name])
  const node: WgNode = {
    kind: 'wireguard-go',
    ns,
    name: cfg.name,
    child,
    async stop() {
      await stopByPid(child)
      removeSocket(cfg.name)
    },
  }
  try {
    await waitUapi(cfg.name, child, 10_000)
    const files: string[] = []
    const keyFile = (key: string): string => {
      const file = join(dir, `${cfg.name}.${files.length}.key`)
      files.push(file)
      writeFileSync(file, `${key}\n`, { mode: 0o600 })
      return file
    }
    try {
      await run('ip', ['netns', 'exec', ns, 'wg', ...wgSetArgs(cfg, keyFile)])
    } finally {
      for (const f of files) rmSync(f, { force: true })
    }
    await run('ip', ['-n', ns, 'address', 'add', cfg.address, 'dev', cfg.name])
    await run('ip', ['-n', ns, 'link', 'set', cfg.name, 'up'])
  } catch (e) {
    await node.stop()
    throw e
  }
  return node
}

export function confText(cfg: NodeConfig): string {
  const lines = ['[Interface]', `PrivateKey = ${cfg.privateKey}`, `Address = ${cfg.address}`, `ListenPort = ${cfg.listenPort}`]
  for (const p of cfg.peers) {
    lines.push('', '[Peer]', `PublicKey = ${p.publicKey}`, `AllowedIPs = ${p.allowedIps.join(', ')}`)
    if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`)
    if (p.presharedKey) lines.push(`PresharedKey = ${p.presharedKey}`)
  }
  return `${lines.join('\n')}\n`
}

/** `flatnet wg up FILE --name NAME` in `ns`; `env` holds the FLATNET_WG_TEST_* knobs. The file is gone once the interface is up. */
export async function startFlatnetCli(procs: Processes, ns: string, cfg: NodeConfig, dir: string, env: Record<string, string> = {}): Promise<WgNode> {
  const file = join(dir, `${cfg.name}.conf`)
  writeFileSync(file, confText(cfg), { mode: 0o600 })
  const envArgs = Object.entries(env).map(([k, v]) => `${k}=${v}`)
  const child = procs.spawn('ip', ['netns', 'exec', ns, 'env', ...envArgs, process.execPath, FLATNET_CLI, 'wg', 'up', file, '--name', cfg.name])
  const node: WgNode = {
    kind: 'flatnet',
    ns,
    name: cfg.name,
    child,
    async stop() {
      await stopByPid(child)
      removeSocket(cfg.name)
    },
  }
  try {
    await waitUapi(cfg.name, child, 15_000)
    // The CLI sets the peers after the socket opens; it says so when it is done.
    await waitFor(() => child.output().includes(`interface ${cfg.name} up`), 10_000, `${cfg.name} to finish coming up`)
  } catch (e) {
    await node.stop()
    throw e
  } finally {
    rmSync(file, { force: true })
  }
  return node
}

export interface DropStats {
  readonly drops: Record<string, number>
  readonly rss: number
  readonly heapUsed: number
}

/** The wg-node.js test script: a flatnet interface whose drop counters and memory the test can read. */
export async function startFlatnetNode(
  procs: Processes,
  ns: string,
  cfg: NodeConfig,
  options: Record<string, unknown> = {},
): Promise<WgNode & { rpc: RpcClient; stats: () => Promise<DropStats> }> {
  const child = procs.spawn('ip', ['netns', 'exec', ns, process.execPath, '--expose-gc', WG_NODE], { stdin: true })
  const rpc = new RpcClient(child, child.output)
  const node = {
    kind: 'flatnet' as const,
    ns,
    name: cfg.name,
    child,
    rpc,
    stats: () => rpc.call<DropStats>('stats'),
    async stop() {
      await stopByPid(child)
      removeSocket(cfg.name)
    },
  }
  try {
    await rpc.call('up', {
      name: cfg.name,
      privateKey: cfg.privateKey,
      listenPort: cfg.listenPort,
      addresses: [cfg.address],
      peers: cfg.peers.map((p) => ({ publicKey: p.publicKey, endpoint: p.endpoint, allowedIps: p.allowedIps })),
      options,
    }, 15_000)
  } catch (e) {
    await node.stop()
    throw e
  }
  return node
}

/** The hand-driven peer (wg-peer-worker.js) in `ns`. */
export function startPeerWorker(procs: Processes, ns: string): { child: ChildProcess; rpc: RpcClient } {
  const child = procs.spawn('ip', ['netns', 'exec', ns, process.execPath, PEER_WORKER], { stdin: true })
  return { child, rpc: new RpcClient(child, child.output) }
}

/** Echo requests from `ns` to `addr`; how many came back. */
export async function ping(ns: string, addr: string, count: number, waitS = 2): Promise<{ sent: number; received: number; text: string }> {
  const r = await run('ip', ['netns', 'exec', ns, 'ping', '-n', '-q', '-c', String(count), '-i', '0.2', '-W', String(waitS), addr], {
    allowFail: true,
    timeoutMs: (count * 0.2 + waitS + 5) * 1000,
  })
  const m = /(\d+) packets transmitted, (\d+) received/.exec(r.stdout)
  return { sent: Number(m?.[1] ?? 0), received: Number(m?.[2] ?? 0), text: r.stdout }
}

/** One interface's state over its UAPI socket (wireguard-go's and flatnet's alike). */
export function uapi(name: string): Promise<UapiInterfaceState> {
  return uapiGet(name, 2000)
}

export interface WgDumpPeer {
  readonly publicKey: string
  /** base64, or `(none)`. */
  readonly presharedKey: string
  readonly endpoint: string
  readonly allowedIps: string
  readonly latestHandshake: number
  readonly rx: number
  readonly tx: number
  /** Seconds as text, or `off`. */
  readonly keepalive: string
}

/** `wg show NAME dump` as the stock tool prints it, peers parsed. */
export async function wgDump(ns: string, name: string): Promise<{ publicKey: string; listenPort: number; peers: WgDumpPeer[] }> {
  const { stdout } = await run('ip', ['netns', 'exec', ns, 'wg', 'show', name, 'dump'])
  const [head, ...rest] = stdout.trim().split('\n').map((l) => l.split('\t'))
  return {
    publicKey: head![1]!,
    listenPort: Number(head![2]),
    peers: rest.map((f) => ({ publicKey: f[0]!, presharedKey: f[1]!, endpoint: f[2]!, allowedIps: f[3]!, latestHandshake: Number(f[4]), rx: Number(f[5]), tx: Number(f[6]), keepalive: f[7]! })),
  }
}

/** RX/TX packet counters of a link, from the kernel's side. */
export async function linkPackets(ns: string, dev: string): Promise<{ rx: number; tx: number }> {
  const { stdout } = await run('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev])
  const s = (JSON.parse(stdout) as { stats64: { rx: { packets: number }; tx: { packets: number } } }[])[0]!.stats64
  return { rx: s.rx.packets, tx: s.tx.packets }
}

export interface TransferResult {
  readonly bytes: number
  readonly sha256: string
  readonly ms: number
}

/**
 * `bytes` of random data over TCP from `fromNs` to `host:port` (listened on in `toNs`); both
 * ends' byte counts and SHA-256.
 */
export async function tcpTransfer(procs: Processes, fromNs: string, toNs: string, host: string, port: number, bytes: number, timeoutMs: number): Promise<{ sender: TransferResult; receiver: TransferResult }> {
  const recv = procs.spawn('ip', ['netns', 'exec', toNs, process.execPath, TCP_TRANSFER, 'recv', host, String(port)])
  try {
    await waitFor(() => recv.output().includes('"listening"') || recv.exitCode !== null, 10_000, 'the transfer receiver to listen')
    const send = procs.spawn('ip', ['netns', 'exec', fromNs, process.execPath, TCP_TRANSFER, 'send', host, String(port), String(bytes)])
    try {
      const [sc, rc] = await within(Promise.all([send.exited, recv.exited]), timeoutMs, `a ${bytes}-byte transfer`)
      const last = (out: string): TransferResult => JSON.parse(out.trim().split('\n').filter((l) => l.startsWith('{"bytes"')).pop() ?? 'null') as TransferResult
      if (sc !== 0 || rc !== 0) throw new Error(`transfer failed: sender ${sc} ${send.output()} receiver ${rc} ${recv.output()}`)
      return { sender: last(send.output()), receiver: last(recv.output()) }
    } finally {
      await stopByPid(send)
    }
  } finally {
    await stopByPid(recv)
  }
}

/** Lines of a wireguard-go verbose log matching `re`. */
export function countLog(node: WgNode, re: RegExp): number {
  return node.child.output().split('\n').filter((l) => re.test(l)).length
}

/** Calls `sample` every `everyMs` until `stop()`; what it resolved to each time. */
export function poll<T>(sample: () => Promise<T>, everyMs: number): { stop: () => Promise<T[]> } {
  const seen: T[] = []
  let running = true
  const loop = (async () => {
    while (running) {
      try {
        seen.push(await sample())
      } catch {
        // A read that races a rekey or a busy socket is skipped, not fatal.
      }
      await new Promise((r) => setTimeout(r, everyMs))
    }
  })()
  return {
    async stop() {
      running = false
      await loop
      return seen
    },
  }
}
