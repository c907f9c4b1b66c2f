/**
 * Real Redis for the store's tests: a standalone server, a Sentinel set (primary, replica, three
 * sentinels) and a three-primary cluster, each on free loopback ports in a temp dir of its own.
 *
 * Every process is started here and stopped here by its pid, every wait is bounded, and the
 * temp dirs are removed. If the test process ends without stopping them (a failed assertion
 * before stop(), an uncaught exception, SIGINT/SIGTERM from the runner), an exit handler
 * SIGKILLs whatever is still running, so no test run leaves a server behind.
 *
 * The harness talks RESP itself instead of using ioredis: it must keep working when the client
 * code under test does not.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const HARNESS_DEFAULTS = Object.freeze({
  startTimeoutMs: 5_000,
  stopTimeoutMs: 5_000,
  /** Sentinels agreeing on each other and on the replica; hello messages go out every 2 s. */
  sentinelSettleTimeoutMs: 15_000,
  clusterTimeoutMs: 15_000,
  pollMs: 50,
  /** Sentinel: how long the primary must be silent to be considered down. */
  downAfterMs: 1_000,
  failoverTimeoutMs: 3_000,
  masterName: 'fnmaster',
})

export interface RedisServer {
  readonly port: number
  /** redis://127.0.0.1:<port> */
  readonly url: string
  readonly pid: number
  readonly dir: string
  /** The unix socket, when started with `unixSocket: true`. */
  readonly socketPath?: string
  /** Sends SIGKILL, as a crash would; stop() afterwards only cleans up. */
  kill(): Promise<void>
  stop(): Promise<void>
}

export interface StartRedisOptions {
  /** Also listen on `<dir>/redis.sock`. */
  readonly unixSocket?: boolean
  /** Extra `--option value` arguments for redis-server. */
  readonly args?: readonly string[]
}

export interface SentinelSet {
  readonly primary: RedisServer
  readonly replica: RedisServer
  readonly sentinels: readonly RedisServer[]
  /** redis-sentinel://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3/fnmaster */
  readonly url: string
  readonly masterName: string
  /** SIGKILLs the primary; the sentinels then promote the replica. */
  killPrimary(): Promise<void>
  /** Waits until every sentinel names `port` as the primary. */
  waitForPrimary(port: number, timeoutMs?: number): Promise<void>
  stop(): Promise<void>
}

export interface RedisClusterSet {
  readonly nodes: readonly RedisServer[]
  /** redis-cluster://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3 */
  readonly url: string
  stop(): Promise<void>
}

// ---- process bookkeeping -------------------------------------------------------------------

const running = new Set<ChildProcess>()
const tempDirs = new Set<string>()
let handlersInstalled = false

function makeTempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true })
  tempDirs.delete(dir)
}

/**
 * SIGKILLs every child still running when the test process goes away, however it goes, and
 * removes the temp dirs not removed yet.
 */
function installExitHandlers(): void {
  if (handlersInstalled) return
  handlersInstalled = true
  const killAll = (): void => {
    for (const child of running) {
      try {
        process.kill(child.pid!, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    running.clear()
    for (const dir of tempDirs) {
      try {
        rmSync(dir, { recursive: true, force: true })
      } catch {
        // best effort: the process is ending
      }
    }
    tempDirs.clear()
  }
  process.on('exit', killAll)
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // A listener replaces the default action (exit without running 'exit' listeners): clean up,
    // then die of the same signal so the parent sees what happened.
    process.once(signal, () => {
      killAll()
      process.kill(process.pid, signal)
    })
  }
}

interface Spawned {
  readonly child: ChildProcess
  readonly pid: number
  readonly exited: Promise<void>
  isRunning(): boolean
  /** Why it could not be started (e.g. ENOENT: not installed), if that is what happened. */
  spawnError(): Error | undefined
}

function spawnTracked(command: string, args: readonly string[], cwd: string): Spawned {
  installExitHandlers()
  // Output goes to log files; no pipes, so an unstopped child never keeps the test process alive.
  const child = spawn(command, args, { cwd, stdio: 'ignore' })
  if (child.pid === undefined) {
    // spawn() reports ENOENT asynchronously; swallow the event, the error is thrown here.
    child.once('error', () => {})
    throw new Error(`cannot run ${command}: is it installed? (Debian packages redis-server, redis-sentinel, redis-tools; scripts/setup.sh installs them)`)
  }
  running.add(child)
  let done = false
  let spawnError: Error | undefined
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      done = true
      running.delete(child)
      resolve()
    })
  })
  child.once('error', (err) => {
    done = true
    spawnError = err
    running.delete(child)
  })
  child.unref()
  return { child, pid: child.pid, exited, isRunning: () => !done, spawnError: () => spawnError }
}

async function terminate(p: Spawned, timeoutMs: number): Promise<void> {
  if (!p.isRunning()) return
  process.kill(p.pid, 'SIGTERM')
  if (await within(p.exited, timeoutMs)) return
  process.kill(p.pid, 'SIGKILL')
  if (!(await within(p.exited, timeoutMs))) throw new Error(`pid ${p.pid} survived SIGKILL for ${timeoutMs} ms`)
}

// ---- servers -------------------------------------------------------------------------------

/** A free TCP port on the loopback interface (bound once by us, then released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))))
    })
  })
}

/** A standalone redis-server on 127.0.0.1, no persistence, in a temp dir of its own. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  installExitHandlers()
  const dir = makeTempDir('flatnet-redis-')
  try {
    return await startInDir('redis-server', dir, (port) => {
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', join(dir, 'redis.log')]
      if (opts.unixSocket) args.push('--unixsocket', join(dir, 'redis.sock'), '--unixsocketperm', '600')
      return [...args, ...(opts.args ?? [])]
    }, opts.unixSocket ? join(dir, 'redis.sock') : undefined)
  } catch (err) {
    removeTempDir(dir)
    throw err
  }
}

/**
 * Starts `binary` in `dir` on a free port and waits for PING. A port taken between our probe
 * and the server's bind makes the server exit: then it is tried again on another port.
 */
async function startInDir(binary: string, dir: string, argsFor: (port: number) => string[], socketPath?: string, removeDir = true): Promise<RedisServer> {
  const logFile = join(dir, binary === 'redis-sentinel' ? 'sentinel.log' : 'redis.log')
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const p = spawnTracked(binary, argsFor(port), dir)
    const deadline = Date.now() + HARNESS_DEFAULTS.startTimeoutMs
    let ready = false
    while (p.isRunning() && Date.now() < deadline) {
      if ((await command({ port }, ['PING'], 500)) === '+PONG') {
        ready = true
        break
      }
      await sleep(HARNESS_DEFAULTS.pollMs)
    }
    if (ready) return server(p, port, dir, socketPath, removeDir)
    const spawnError = p.spawnError()
    if (spawnError) throw new Error(`cannot run ${binary}: ${spawnError.message}`)
    await terminate(p, HARNESS_DEFAULTS.stopTimeoutMs)
    const log = tail(logFile)
    if (attempt < 3 && /address already in use/i.test(log)) continue
    throw new Error(`${binary} on port ${port} did not answer PING within ${HARNESS_DEFAULTS.startTimeoutMs} ms; last log lines:\n${log}`)
  }
}

function server(p: Spawned, port: number, dir: string, socketPath: string | undefined, removeDir: boolean): RedisServer {
  let stopped: Promise<void> | undefined
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: p.pid,
    dir,
    ...(socketPath === undefined ? {} : { socketPath }),
    async kill() {
      if (!p.isRunning()) return
      process.kill(p.pid, 'SIGKILL')
      if (!(await within(p.exited, HARNESS_DEFAULTS.stopTimeoutMs))) throw new Error(`pid ${p.pid} survived SIGKILL`)
    },
    stop() {
      stopped ??= terminate(p, HARNESS_DEFAULTS.stopTimeoutMs).finally(() => {
        if (removeDir) removeTempDir(dir)
      })
      return stopped
    },
  }
}

/**
 * One primary, one replica and three sentinels watching them (quorum 2). Returns once every
 * sentinel knows the replica and the two other sentinels, since a failover needs both.
 */
export async function startSentinelSet(): Promise<SentinelSet> {
  const d = HARNESS_DEFAULTS
  installExitHandlers()
  const dir = makeTempDir('flatnet-sentinel-')
  const started: RedisServer[] = []
  const stopAll = async (): Promise<void> => {
    const results = await Promise.allSettled(started.map((s) => s.stop()))
    removeTempDir(dir)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }
  try {
    const sub = (prefix: string): string => mkdtempSync(join(dir, prefix))
    // A primary waits 5 s by default before a diskless full sync, hoping for more replicas.
    const redisArgs = (subdir: string, port: number): string[] => [
      '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', subdir, '--logfile', join(subdir, 'redis.log'),
      '--repl-diskless-sync-delay', '0',
    ]
    const primaryDir = sub('primary-')
    const primary = await startInDir('redis-server', primaryDir, (port) => redisArgs(primaryDir, port), undefined, false)
    started.push(primary)
    const replicaDir = sub('replica-')
    const replica = await startInDir('redis-server', replicaDir, (port) => [...redisArgs(replicaDir, port), '--replicaof', '127.0.0.1', String(primary.port)], undefined, false)
    started.push(replica)
    await until(`replica ${replica.port} in sync with primary ${primary.port}`, d.startTimeoutMs, async () => /master_link_status:up/.test((await command({ port: replica.port }, ['INFO', 'replication'], 500)) ?? ''))

    const sentinels: RedisServer[] = []
    for (let i = 0; i < 3; i++) {
      const sdir = sub(`sentinel${i}-`)
      const s = await startInDir('redis-sentinel', sdir, (port) => {
        // Sentinel rewrites its config file as it learns the topology, so each gets its own.
        const conf = join(sdir, 'sentinel.conf')
        writeFileSync(
          conf,
          [
            `port ${port}`,
            'bind 127.0.0.1',
            'daemonize no',
            `dir "${sdir}"`,
            `logfile "${join(sdir, 'sentinel.log')}"`,
            `sentinel monitor ${d.masterName} 127.0.0.1 ${primary.port} 2`,
            `sentinel down-after-milliseconds ${d.masterName} ${d.downAfterMs}`,
            `sentinel failover-timeout ${d.masterName} ${d.failoverTimeoutMs}`,
            `sentinel parallel-syncs ${d.masterName} 1`,
            '',
          ].join('\n'),
        )
        return [conf]
      }, undefined, false)
      started.push(s)
      sentinels.push(s)
    }
    await until('sentinels to discover each other and the replica', d.sentinelSettleTimeoutMs, async () => {
      for (const s of sentinels) {
        const info = (await command({ port: s.port }, ['INFO', 'sentinel'], 500)) ?? ''
        if (!new RegExp(`name=${d.masterName},status=ok,.*slaves=1,sentinels=3`).test(info)) return false
      }
      return true
    })

    const waitForPrimary = (port: number, timeoutMs = d.sentinelSettleTimeoutMs): Promise<void> =>
      until(`every sentinel to name port ${port} as primary`, timeoutMs, async () => {
        for (const s of sentinels) {
          const reply = await commandArray({ port: s.port }, ['SENTINEL', 'get-master-addr-by-name', d.masterName], 500)
          if (reply?.[1] !== String(port)) return false
        }
        return true
      })
    return {
      primary,
      replica,
      sentinels,
      masterName: d.masterName,
      url: `redis-sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${d.masterName}`,
      killPrimary: () => primary.kill(),
      waitForPrimary,
      stop: stopAll,
    }
  } catch (err) {
    await stopAll().catch(() => {})
    throw err
  }
}

/** Three primaries, no replicas, all slots assigned; returns once every node says cluster_state:ok. */
export async function startCluster(): Promise<RedisClusterSet> {
  const d = HARNESS_DEFAULTS
  installExitHandlers()
  const dir = makeTempDir('flatnet-cluster-')
  const nodes: RedisServer[] = []
  const stopAll = async (): Promise<void> => {
    const results = await Promise.allSettled(nodes.map((n) => n.stop()))
    removeTempDir(dir)
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
  }
  try {
    for (let i = 0; i < 3; i++) {
      const ndir = mkdtempSync(join(dir, `node${i}-`))
      nodes.push(
        await startInDir(
          'redis-server',
          ndir,
          (port) => [
            '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', ndir, '--logfile', join(ndir, 'redis.log'),
            '--cluster-enabled', 'yes', '--cluster-config-file', join(ndir, 'nodes.conf'), '--cluster-node-timeout', '2000',
          ],
          undefined,
          false,
        ),
      )
    }
    await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes'], d.clusterTimeoutMs)
    await until('cluster_state:ok on every node', d.clusterTimeoutMs, async () => {
      for (const n of nodes) {
        const info = (await command({ port: n.port }, ['CLUSTER', 'INFO'], 500)) ?? ''
        if (!/cluster_state:ok/.test(info) || !/cluster_known_nodes:3/.test(info)) return false
      }
      return true
    })
    return { nodes, url: `redis-cluster://${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}`, stop: stopAll }
  } catch (err) {
    await stopAll().catch(() => {})
    throw err
  }
}

// ---- small helpers -------------------------------------------------------------------------

/** Whether a process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat[stat.lastIndexOf(')') + 2] !== 'Z'
  } catch {
    return false
  }
}

/** Polls `check` until it is true; throws naming what it waited for after `timeoutMs`. */
export async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  while (true) {
    try {
      if (await check()) return
    } catch (err) {
      last = err
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${(last as Error).message})` : ''}`)
    await sleep(HARNESS_DEFAULTS.pollMs)
  }
}

type Target = { readonly port: number; readonly host?: string } | { readonly path: string }

/**
 * One command over a fresh connection; the raw reply: a status or error line (`+OK`, `-ERR
 * ...`), an integer line, or a bulk string's body. Undefined when nothing answers in time.
 */
export async function command(target: Target, args: readonly string[], timeoutMs = 1_000): Promise<string | undefined> {
  const reply = await roundTrip(target, args, timeoutMs)
  return reply === undefined ? undefined : Array.isArray(reply) ? reply.join('\n') : reply
}

/** Like `command`, for commands that answer with a flat array of bulk strings. */
export async function commandArray(target: Target, args: readonly string[], timeoutMs = 1_000): Promise<string[] | undefined> {
  const reply = await roundTrip(target, args, timeoutMs)
  return Array.isArray(reply) ? reply : undefined
}

function roundTrip(target: Target, args: readonly string[], timeoutMs: number): Promise<string | string[] | undefined> {
  return new Promise((resolve) => {
    let buf = Buffer.alloc(0)
    let finished = false
    const sock = 'path' in target ? connect({ path: target.path }) : connect({ port: target.port, host: target.host ?? '127.0.0.1' })
    const finish = (value: string | string[] | undefined): void => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      sock.destroy()
      resolve(value)
    }
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    sock.on('error', () => finish(undefined))
    sock.on('close', () => finish(undefined))
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`))
    sock.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk])
      const parsed = parseReply(buf, 0)
      if (parsed) finish(parsed.value)
    })
  })
}

/** Enough RESP2 for the harness: status, error, integer, bulk, and arrays of those. */
function parseReply(buf: Buffer, at: number): { value: string | string[]; end: number } | undefined {
  const eol = buf.indexOf('\r\n', at)
  if (eol < 0) return undefined
  const head = buf.toString('utf8', at, eol)
  const type = head[0]
  if (type === '$') {
    const len = Number(head.slice(1))
    if (len < 0) return { value: '', end: eol + 2 }
    if (buf.length < eol + 2 + len + 2) return undefined
    return { value: buf.toString('utf8', eol + 2, eol + 2 + len), end: eol + 2 + len + 2 }
  }
  if (type === '*') {
    const n = Number(head.slice(1))
    const items: string[] = []
    let pos = eol + 2
    for (let i = 0; i < n; i++) {
      const item = parseReply(buf, pos)
      if (!item) return undefined
      items.push(Array.isArray(item.value) ? item.value.join(' ') : item.value)
      pos = item.end
    }
    return { value: items, end: pos }
  }
  return { value: head, end: eol + 2 }
}

/** Runs a command to completion (killed after `timeoutMs`), tracked like the servers. */
function run(file: string, args: readonly string[], timeoutMs: number): Promise<string> {
  installExitHandlers()
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      running.delete(child)
      if (err) reject(new Error(`${file} ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`))
      else resolve(stdout)
    })
    if (child.pid !== undefined) running.add(child)
  })
}

function tail(file: string, lines = 15): string {
  try {
    return readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

async function within(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms)
  })
  try {
    return await Promise.race([p.then(() => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
