/**
 * Shared by the plugin's tests: the real `flatnet-cni` process run with an environment and a
 * standard input, network namespaces of this run (`fn-cni-...`, deleted afterwards), and a
 * one-host lab whose real agent (`flatnet agent run` in the host's namespace, with its store)
 * serves the plugin.
 */
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { labDown, labUp, readTopology, type LabUpResult } from '@flatnet/lab'
import { connectRedis, FlatnetStore, Ipam } from '@flatnet/store'

export const skipUnlessRoot = process.platform !== 'linux' ? 'needs Linux' : process.getuid?.() !== 0 ? 'needs root for network namespaces' : false

/** The repository root (where turbo.json lives), found from this compiled file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 10 && !existsSync(join(dir, 'turbo.json')); i++) dir = dirname(dir)
  return dir
}

export const PLUGIN = join(repoRoot(), 'packages', 'cni', 'bin', 'flatnet-cni.js')
export const FLATNET = join(repoRoot(), 'packages', 'cli', 'bin', 'flatnet.js')

export interface PluginRun {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
  /** stdout parsed, when it is JSON. */
  readonly json: Record<string, unknown> | undefined
  readonly ms: number
}

/**
 * Runs an executable plugin once: `env` on top of a clean environment (PATH only, as a runtime
 * would give), `stdin` written and closed (a Buffer or string; `null` leaves it open).
 */
export function runPlugin(env: Readonly<Record<string, string | undefined>>, stdin: string | Buffer | null, program: string[] = [process.execPath, PLUGIN], timeoutMs = 60_000): Promise<PluginRun> {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const clean: Record<string, string> = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' }
    for (const [k, v] of Object.entries(env)) if (v !== undefined) clean[k] = v
    const child = spawn(program[0] as string, program.slice(1), { env: clean, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    const timer = setTimeout(() => child.pid !== undefined && process.kill(child.pid, 'SIGKILL'), timeoutMs)
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    child.stdin.on('error', () => undefined)
    child.once('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.once('close', (code) => {
      clearTimeout(timer)
      const stdout = Buffer.concat(out).toString()
      let json: Record<string, unknown> | undefined
      try {
        json = stdout.trim() === '' ? undefined : (JSON.parse(stdout) as Record<string, unknown>)
      } catch {
        json = undefined
      }
      resolve({ code, stdout, stderr: Buffer.concat(err).toString(), json, ms: performance.now() - started })
    })
    if (stdin !== null) child.stdin.end(stdin)
  })
}

export function sh(cmd: string, args: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: opts.timeoutMs ?? 30_000, maxBuffer: 16 << 20, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0
      if (err && !opts.allowFail) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message}\n${String(stderr)}`))
      else resolve({ code, stdout: String(stdout), stderr: String(stderr) })
    })
  })
}

/** Network namespaces made by one test file; `cleanup()` deletes them all. */
export class Namespaces {
  readonly #names: string[] = []

  async create(): Promise<{ name: string; path: string }> {
    const name = `fn-cni-${process.pid.toString(36)}-${randomBytes(3).toString('hex')}`
    await sh('ip', ['netns', 'add', name])
    this.#names.push(name)
    return { name, path: `/run/netns/${name}` }
  }

  async remove(name: string): Promise<void> {
    await sh('ip', ['netns', 'del', name], { allowFail: true })
  }

  async cleanup(): Promise<void> {
    for (const name of this.#names.splice(0)) await this.remove(name)
  }
}

export interface OneHostLab {
  readonly lab: LabUpResult
  readonly stateDir: string
  /** The host's network namespace (where its agent runs and the veths' host sides are). */
  readonly hostNetns: string
  readonly socket: string
  readonly store: FlatnetStore
  readonly ipam: Ipam
  /** Addresses allocated on the node now (its host address included). */
  allocated(): Promise<number>
  close(): Promise<void>
}

const ONE_HOST = 'apiVersion: flatnet.dev/v1alpha1\nkind: LabTopology\nnamespaces: {hosts: {}}\nhosts:\n- {name: node1, kind: k8s-node, namespace: hosts}\n'

/** A lab of one k8s-node host: Redis, and a real agent in the host's namespace. */
export async function startOneHostLab(): Promise<OneHostLab> {
  const stateDir = await mkdtemp(join(tmpdir(), 'fn-cni-lab-'))
  const id = `c${process.pid.toString(36)}${randomBytes(2).toString('hex')}`.slice(0, 8)
  let lab: LabUpResult
  try {
    lab = await labUp({ topology: readTopology('one-host.yaml', ONE_HOST), stateDir, id, agentArgv: [process.execPath, FLATNET, 'agent', 'run'], logLevel: 'warn' })
  } catch (err) {
    await labDown({ stateDir }).catch(() => undefined)
    await rm(stateDir, { recursive: true, force: true })
    throw err
  }
  const store = new FlatnetStore({ redis: connectRedis(lab.redisUrl, { connectTimeoutMs: 2000, commandTimeoutMs: 5000 }), where: lab.redisUrl }, { cluster: 'default', commandTimeoutMs: 5000 })
  const ipam = new Ipam(store)
  return {
    lab,
    stateDir,
    hostNetns: `fn-lab-${id}-node1`,
    socket: lab.agentSockets.node1 as string,
    store,
    ipam,
    allocated: async () => (await ipam.usage()).blocks.reduce((n, b) => n + b.allocated, 0),
    close: async () => {
      await store.close().catch(() => undefined)
      await labDown({ stateDir }).catch(() => undefined)
      await rm(stateDir, { recursive: true, force: true })
    },
  }
}
