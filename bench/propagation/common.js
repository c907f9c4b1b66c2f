// What both parts of the propagation benchmark share: everything it starts is owned here (pids,
// temp dirs, and async clean-ups such as `lab down`) and removed on the way out, also after a
// failure, an exception or SIGINT/SIGTERM; worker processes driven over IPC with bounded waits;
// a redis-server on a unix socket; per-process CPU and memory from /proc.
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { command } from '../../packages/store/dist/test/redis-harness.js'
import { sleep } from '../store/common.js'

export { cpuSample, cpuShare, rssOf, sleep, stats, wallNow } from '../store/common.js'

/** A failure the message explains: reported without a stack. */
export class BenchError extends Error {}

export const log = (line) => process.stderr.write(`${line}\n`)

// ---------------------------------------------------------------- ownership and clean-up

const pids = new Set()
const dirs = new Set()
/** Async clean-ups (lab down), newest first; each removes itself when done. */
const hooks = []

export function ownPid(pid) {
  if (pid !== undefined) pids.add(pid)
}
export function disownPid(pid) {
  pids.delete(pid)
}
export function ownDir(dir) {
  dirs.add(dir)
  return dir
}
export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}
/** Registers an async clean-up; returns the function that runs it once and unregisters it. */
export function ownCleanup(name, fn) {
  let done
  const hook = { name, run: () => (done ??= fn().finally(() => hooks.splice(hooks.indexOf(hook) >>> 0, 1))) }
  hooks.unshift(hook)
  return hook.run
}

function killOwnedNow() {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  pids.clear()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs.clear()
}

/** Runs the async clean-ups (bounded), then kills and removes whatever is still owned. */
export async function cleanUpEverything() {
  for (const hook of [...hooks]) {
    await Promise.race([hook.run().catch((err) => log(`clean-up "${hook.name}" failed: ${err?.message ?? err}`)), sleep(30_000)])
  }
  killOwnedNow()
}

let installed = false
/** Clean-up on every way out; the whole run is bounded by `limitMs`. */
export function installExitHandlers(limitMs, what) {
  if (installed) return
  installed = true
  process.on('exit', killOwnedNow)
  let dying = false
  const die = async (why, status) => {
    // Errors of connections that the clean-up itself cuts come after the first cause: not news.
    if (dying) return
    dying = true
    log(why)
    await cleanUpEverything()
    process.exit(status)
  }
  const numbers = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }
  for (const [signal, n] of Object.entries(numbers)) process.on(signal, () => void die(`${what}: ${signal}, cleaning up`, 128 + n))
  process.on('uncaughtException', (err) => void die(`${what} failed: ${err instanceof BenchError ? err.message : (err?.stack ?? err)}`, 2))
  process.on('unhandledRejection', (err) => void die(`${what} failed: ${err instanceof BenchError ? err.message : (err?.stack ?? err)}`, 2))
  setTimeout(() => void die(`${what} still running after ${limitMs / 1000} s: giving up`, 2), limitMs).unref()
}

// ---------------------------------------------------------------- processes

export function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

export async function stopProcess(child, signal = 'SIGTERM', ms = 5_000) {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal)
    if (!(await waitExit(child, ms))) {
      child.kill('SIGKILL')
      await waitExit(child, ms)
    }
  }
  disownPid(child.pid)
}

/** A node child process with IPC; its messages awaited by type, each with a time limit. */
export function spawnWorker(file, args = []) {
  const child = spawn(process.execPath, [...process.execArgv, file, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  ownPid(child.pid)
  const queue = []
  const waiters = []
  let failure
  const fail = (err) => {
    failure ??= err
    for (const w of waiters.splice(0)) w.reject(failure)
  }
  child.on('message', (m) => {
    if (m.type === 'error') return fail(new BenchError(`worker pid ${child.pid}: ${m.message}`))
    const i = waiters.findIndex((w) => w.type === m.type)
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m)
    else queue.push(m)
  })
  child.on('exit', (code, signal) => {
    disownPid(child.pid)
    fail(new BenchError(`worker pid ${child.pid} exited (${code ?? signal})`))
  })
  child.on('error', (err) => fail(err))
  return {
    pid: child.pid,
    child,
    send: (m) => child.send(m),
    next(type, ms) {
      const i = queue.findIndex((m) => m.type === type)
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0])
      if (failure) return Promise.reject(failure)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const at = waiters.indexOf(w)
          if (at >= 0) waiters.splice(at, 1)
          reject(new BenchError(`worker pid ${child.pid}: no "${type}" within ${ms} ms`))
        }, ms)
        const w = { type, resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (e) => (clearTimeout(timer), reject(e)) }
        waiters.push(w)
      })
    },
    async stop() {
      if (child.connected) child.send({ type: 'exit' })
      if (!(await waitExit(child, 5_000))) await stopProcess(child, 'SIGKILL')
      disownPid(child.pid)
    },
  }
}

// ---------------------------------------------------------------- redis

export function redisInfo(text) {
  return Object.fromEntries(
    (text ?? '')
      .split(/\r?\n/)
      .filter((l) => l.includes(':') && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
  )
}

/**
 * A redis-server on a unix socket in `dir`, configured as the embedded one runs (AOF, fsync
 * every second), with room for `maxClients` connections.
 */
export async function startRedis(dir, maxClients) {
  const rdir = join(dir, 'redis')
  mkdirSync(rdir, { recursive: true, mode: 0o700 })
  const socket = join(rdir, 'redis.sock')
  const logFile = join(rdir, 'redis.log')
  const args = ['--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', rdir, '--logfile', logFile, '--daemonize', 'no', '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec', '--maxclients', String(maxClients)]
  const child = spawn('redis-server', args, { stdio: 'ignore' })
  child.once('error', () => {})
  if (child.pid === undefined) throw new BenchError('cannot run redis-server: is it installed? (npm run setup installs it)')
  ownPid(child.pid)
  child.once('exit', () => disownPid(child.pid))
  const deadline = Date.now() + 5_000
  while (child.exitCode === null && Date.now() < deadline) {
    if ((await command({ path: socket }, ['PING'], 500)) === '+PONG') {
      const info = async (section) => redisInfo(await command({ path: socket }, ['INFO', section], 2_000))
      const version = (await info('server')).redis_version
      return {
        child,
        pid: child.pid,
        socket,
        url: `unix://${socket}`,
        version,
        info,
        /** CPU seconds redis-server has used so far. */
        cpuSeconds: async () => {
          const c = await info('cpu')
          return Number(c.used_cpu_user) + Number(c.used_cpu_sys)
        },
      }
    }
    await sleep(50)
  }
  await stopProcess(child, 'SIGKILL')
  let tail = ''
  try {
    tail = readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n')
  } catch {
    // no log
  }
  throw new BenchError(`redis-server on ${socket} did not answer PING within 5 s:\n${tail}`)
}

// ---------------------------------------------------------------- /proc

const TICKS = 100

/** CPU seconds (user + system) a process has used so far; undefined once it is gone. */
export function cpuSecondsOf(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
    return (f[11] + f[12]) / TICKS
  } catch {
    return undefined
  }
}

/** Peak resident set (VmHWM) and current one (VmRSS) of a process, in bytes. */
export function memoryOf(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
    return { peak: kb('VmHWM'), now: kb('VmRSS') }
  } catch {
    return { peak: NaN, now: NaN }
  }
}

export const mib = (b) => (Number.isFinite(b) ? `${(b / 1024 ** 2).toFixed(0)} MiB` : 'n/a')
export const msf = (x) => (Number.isFinite(x) ? `${x.toFixed(x < 10 ? 1 : 0)} ms` : 'n/a')
export const lat = (s) => `p50 ${msf(s.p50)}, p99 ${msf(s.p99)}, max ${msf(s.max)}`
