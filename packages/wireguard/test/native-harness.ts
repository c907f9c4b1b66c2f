/**
 * Shared by the native-*.test files: network namespaces and processes made by a test run, each
 * removed or stopped (by PID) in the after hooks, and waits that always end.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'

export const isRoot = process.getuid?.() === 0

/** Why tests that need real kernel objects cannot run here, or false when they can. */
export function kernelSkipReason(): string | false {
  if (process.platform !== 'linux') return 'needs Linux'
  if (!isRoot) return 'needs root (CAP_NET_ADMIN) for TUN devices and network namespaces'
  if (!existsSync('/dev/net/tun')) return 'needs /dev/net/tun'
  return false
}

/** A name unique to this run and call, at most 15 bytes (IFNAMSIZ - 1), starting with `prefix`. */
export function uniqueName(prefix: string): string {
  return (prefix + process.pid.toString(36) + randomBytes(4).toString('hex')).slice(0, 15)
}

export interface RunResult {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command to completion (killed after timeoutMs); rejects on failure unless allowFail. */
export function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; allowFail?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 15_000, env: opts.env ?? process.env, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0
      const result = { code, stdout: String(stdout), stderr: String(stderr) }
      if (err && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${result.stderr}`))
      else resolve(result)
    })
  })
}

/** Resolves once `cond()` holds, polling every few ms; rejects after `ms` with `what` in the message. */
export async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

/** `p`, or a rejection naming `what` after `ms`; the timer never outlives the race. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)
  })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Network namespaces made by one test file; `cleanup()` deletes them all. */
export class Namespaces {
  readonly #names: string[] = []

  async create(): Promise<string> {
    const name = uniqueName('fn-')
    await run('ip', ['netns', 'add', name])
    this.#names.push(name)
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
    return name
  }

  async cleanup(): Promise<void> {
    for (const name of this.#names.splice(0)) await run('ip', ['netns', 'del', name], { allowFail: true })
  }
}

/** Child processes started by one test file; `stopAll()` ends each by its PID. */
export class Processes {
  readonly #children = new Set<ChildProcess>()

  /** `stdin: true` gives the child a pipe to talk to (test scripts driven line by line). */
  spawn(cmd: string, args: readonly string[], opts: { stdin?: boolean } = {}): ChildProcess & { output: () => string; exited: Promise<number | null> } {
    const child = spawn(cmd, args, { stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)))
    this.#children.add(child)
    void exited.then(() => this.#children.delete(child))
    return Object.assign(child, { output: () => out, exited })
  }

  async stopAll(): Promise<void> {
    const pending = [...this.#children].map(async (child) => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
      const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
      process.kill(child.pid, 'SIGTERM')
      const t = setTimeout(() => child.pid !== undefined && child.exitCode === null && process.kill(child.pid, 'SIGKILL'), 2000)
      await closed
      clearTimeout(t)
    })
    await Promise.all(pending)
    this.#children.clear()
  }
}

/** Internet checksum (RFC 1071) of `buf[start, end)`. */
export function inetChecksum(buf: Uint8Array, start: number, end: number): number {
  let sum = 0
  for (let i = start; i + 1 < end; i += 2) sum += ((buf[i] as number) << 8) | (buf[i + 1] as number)
  if ((end - start) % 2 === 1) sum += (buf[end - 1] as number) << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

/**
 * If `pkt` is an IPv4 ICMP echo request to `target`, writes the echo reply into `out` at
 * `outOffset` and returns its length; otherwise returns 0.
 */
export function writeEchoReply(pkt: Uint8Array, target: string, out: Uint8Array, outOffset: number): number {
  if (pkt.length < 28 || (pkt[0] as number) >> 4 !== 4 || pkt[9] !== 1) return 0
  const ihl = ((pkt[0] as number) & 15) * 4
  if (pkt[ihl] !== 8) return 0
  const dst = `${pkt[16]}.${pkt[17]}.${pkt[18]}.${pkt[19]}`
  if (dst !== target) return 0
  const r = out.subarray(outOffset, outOffset + pkt.length)
  r.set(pkt)
  r.set(pkt.subarray(16, 20), 12)
  r.set(pkt.subarray(12, 16), 16)
  r[8] = 64
  r[10] = 0
  r[11] = 0
  const ipSum = inetChecksum(r, 0, ihl)
  r[10] = ipSum >> 8
  r[11] = ipSum & 255
  r[ihl] = 0
  r[ihl + 2] = 0
  r[ihl + 3] = 0
  const icmpSum = inetChecksum(r, ihl, r.length)
  r[ihl + 2] = icmpSum >> 8
  r[ihl + 3] = icmpSum & 255
  return pkt.length
}

/** A counter from /proc/net/snmp inside `netns` (e.g. `Icmp`, `OutEchos`). */
export async function snmpCounter(netns: string, group: string, field: string): Promise<number> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, 'cat', '/proc/net/snmp'])
  const lines = stdout.split('\n').filter((l) => l.startsWith(`${group}:`))
  const names = (lines[0] ?? '').split(/\s+/)
  const values = (lines[1] ?? '').split(/\s+/)
  const i = names.indexOf(field)
  return i === -1 ? NaN : Number(values[i])
}
