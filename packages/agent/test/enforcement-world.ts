/**
 * A small node for the enforcement tests, built from real network namespaces:
 *
 *   host netns  (ip_forward, the flatnet table, the host endpoint's addresses on lo)
 *     ├── veth ── workload netns 1
 *     ├── veth ── workload netns 2
 *     └── veth ── workload netns 3
 *
 * Workloads are attached the way the agent attaches them (dataplane/workload-link.ts). Each
 * namespace runs enforcement-probe.js: echo servers plus a probe client driven over stdin.
 * Everything made here is removed by `destroy()`; processes are stopped by their PID.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createInterface } from 'node:readline'
import { attachWorkload } from '../src/dataplane/workload-link.js'

export interface RunResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion (killed after timeoutMs); rejects on failure unless allowFail. */
export function run(argv: readonly string[], opts: { timeoutMs?: number; allowFail?: boolean; input?: string } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(argv[0]!, argv.slice(1), { timeout: opts.timeoutMs ?? 15_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0
      const result = { code, stdout: String(stdout), stderr: String(stderr) }
      if (err && !opts.allowFail) reject(new Error(`${argv.join(' ')} failed: ${err.message}\n${result.stderr}`))
      else resolve(result)
    })
    // A command that exits without reading its input must not turn into an EPIPE error.
    child.stdin?.on('error', () => undefined)
    child.stdin?.end(opts.input ?? '')
  })
}

/** Why these tests cannot run here, or false when they can. */
export function enforcementSkipReason(): string | false {
  if (process.platform !== 'linux') return 'needs Linux'
  if (process.getuid?.() !== 0) return 'needs root for network namespaces and nftables'
  for (const [tool, pkg] of [
    ['nft', 'nftables'],
    ['conntrack', 'conntrack'],
    ['tcpdump', 'tcpdump'],
    ['ip', 'iproute2'],
  ] as const) {
    if (!['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(`${d}/${tool}`))) return `needs ${tool} (Debian package ${pkg})`
  }
  return false
}

export interface Response {
  readonly id: number
  readonly ok: boolean
  readonly conn?: number
  readonly localPort?: number
  readonly error?: string
}

/** The probe process of one namespace. */
export class Probe {
  private nextId = 1
  private readonly pending = new Map<number, (r: Response) => void>()

  private constructor(
    readonly netns: string,
    private readonly child: ChildProcess,
    readonly output: () => string,
  ) {}

  static async start(netns: string, ports: readonly number[]): Promise<Probe> {
    const script = fileURLToPath(new URL('./enforcement-probe.js', import.meta.url))
    const child = spawn('ip', ['netns', 'exec', netns, process.execPath, script, ...ports.map(String)], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)))
    const probe = new Probe(netns, child, () => stderr)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`probe in ${netns} did not start within 10 s: ${stderr}`)), 10_000)
      child.once('close', (code) => {
        clearTimeout(timer)
        reject(new Error(`probe in ${netns} exited with ${code}: ${stderr}`))
      })
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const msg = JSON.parse(line) as Response & { ready?: boolean }
        if (msg.ready) {
          clearTimeout(timer)
          resolve()
          return
        }
        probe.pending.get(msg.id)?.(msg)
        probe.pending.delete(msg.id)
      })
    })
    return probe
  }

  /** Sends one request; rejects if no answer comes within `ms`. */
  request(req: Record<string, unknown>, ms = 10_000): Promise<Response> {
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`probe in ${this.netns} did not answer ${JSON.stringify(req)} within ${ms} ms: ${this.output()}`))
      }, ms)
      this.pending.set(id, (r) => {
        clearTimeout(timer)
        resolve(r)
      })
      this.child.stdin!.write(`${JSON.stringify({ ...req, id })}\n`)
    })
  }

  async stop(): Promise<void> {
    const child = this.child
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
    process.kill(child.pid, 'SIGTERM')
    const t = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 2000)
    await closed
    clearTimeout(t)
  }
}

export interface WorkloadSpec {
  readonly key: string
  readonly addresses: readonly string[]
}

export interface WorkloadNetns extends WorkloadSpec {
  readonly netns: string
  readonly hostIfname: string
}

/** A host namespace with workloads attached, and a probe in each namespace. */
export class World {
  readonly tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`
  readonly host: string
  readonly workloads: WorkloadNetns[] = []
  readonly probes = new Map<string, Probe>()
  private readonly made: string[] = []

  constructor() {
    this.host = `fn-enf-${this.tag}-h`
  }

  private async netns(name: string): Promise<void> {
    await run(['ip', 'netns', 'add', name])
    this.made.push(name)
    await run(['ip', '-n', name, 'link', 'set', 'lo', 'up'])
  }

  async build(hostAddresses: readonly string[], workloads: readonly WorkloadSpec[]): Promise<void> {
    await this.netns(this.host)
    await run(['ip', 'netns', 'exec', this.host, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
    // The host endpoint's addresses sit on lo (this kernel may lack the dummy link type).
    for (const a of hostAddresses) await run(['ip', '-n', this.host, 'addr', 'add', a.includes(':') ? `${a}/128` : `${a}/32`, 'dev', 'lo'])
    for (const [i, w] of workloads.entries()) {
      const netns = `fn-enf-${this.tag}-${i}`
      await this.netns(netns)
      const hostIfname = `fnv${this.tag}${i}`.slice(0, 15)
      await attachWorkload({ netns, hostNetns: this.host, hostIfname, addresses: [...w.addresses] })
      this.workloads.push({ ...w, netns, hostIfname })
    }
  }

  /** Starts a probe in every namespace; the host's is found under `hostKey`, the workloads' under their keys. */
  async startProbes(hostKey: string, hostPorts: readonly number[], workloadPorts: readonly number[]): Promise<void> {
    const started = await Promise.all([
      Probe.start(this.host, hostPorts).then((p) => [hostKey, p] as const),
      ...this.workloads.map((w) => Probe.start(w.netns, workloadPorts).then((p) => [w.key, p] as const)),
    ])
    for (const [k, p] of started) this.probes.set(k, p)
  }

  probe(key: string): Probe {
    const p = this.probes.get(key)
    if (!p) throw new Error(`no probe for ${key}`)
    return p
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.probes.values()].map((p) => p.stop()))
    this.probes.clear()
    for (const name of this.made.splice(0).reverse()) await run(['ip', 'netns', 'del', name], { allowFail: true })
  }
}
