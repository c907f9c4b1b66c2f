/**
 * The embedded store: a redis-server child on a unix socket in flatnet's state dir, for a
 * single host that has no Redis of its own. No TCP port, so nothing outside this machine (and,
 * through the socket's mode, no other user) can reach it; append-only file for durability.
 *
 * Several flatnet processes may share one state dir: the first starts redis-server, the others
 * find it answering on the socket and use it. A lock file (created with O_EXCL) keeps two
 * processes starting at the same moment from both spawning a server on the same files.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { constants as fsConstants } from 'node:fs'
import { access, mkdir, open, readFile, rename, stat, unlink, link, writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { delimiter, join, resolve } from 'node:path'
import { EmbeddedRedisError } from '@flatnet/core'

export interface EmbeddedRedisOptions {
  /** Holds the socket, the append-only files, the pid file, the log; created with mode 0700. */
  readonly stateDir: string
  /** The redis-server binary: a path, or a name looked up on PATH. */
  readonly redisServerPath?: string
  /** One line per thing worth telling an operator (started, reused, stopped, died). */
  readonly log?: (line: string) => void
  readonly startTimeoutMs?: number
  readonly stopTimeoutMs?: number
}

export interface EmbeddedRedis {
  /** `unix://<stateDir>/redis.sock`, for connectRedis. */
  readonly url: string
  /** The server's pid; 0 when a reused server would not tell (INFO denied, no pid file). */
  readonly pid: number
  /** False when another process had started it; then stop() leaves it running. */
  readonly startedByUs: boolean
  /** Shuts the server down if this process started it; resolves once it has exited. */
  stop(): Promise<void>
}

export const EMBEDDED_REDIS_DEFAULTS = Object.freeze({
  redisServerPath: 'redis-server',
  /** Bounds waiting for our server to answer, and again for one another process is starting. */
  startTimeoutMs: 5_000,
  stopTimeoutMs: 5_000,
  /** A start lock older than this is abandoned even if its pid is alive (pids get reused). */
  staleLockMs: 30_000,
  pollMs: 50,
  /** How much of the server's log a start failure shows. */
  logTailLines: 15,
})

const FILES = Object.freeze({
  socket: 'redis.sock',
  lock: 'redis.lock',
  pid: 'redis.pid',
  log: 'redis.log',
  config: 'redis.conf',
  rdb: 'dump.rdb',
  aof: 'appendonly.aof',
})

/** sun_path is 108 bytes on Linux, NUL included; redis-server would fail with a vaguer message. */
const MAX_SOCKET_PATH_BYTES = 107

const NOT_INSTALLED_HINT = 'install the Debian package redis-server, or set FLATNET_REDIS_URL to use an existing Redis'

export async function startEmbeddedRedis(options: EmbeddedRedisOptions): Promise<EmbeddedRedis> {
  const o = withDefaults(EMBEDDED_REDIS_DEFAULTS, options)
  const log = options.log ?? (() => {})
  const stateDir = resolve(options.stateDir)
  const socketPath = join(stateDir, FILES.socket)
  const url = `unix://${socketPath.split('/').map(encodeURIComponent).join('/')}`
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH_BYTES) {
    throw new EmbeddedRedisError(`state dir path too long for a unix socket: ${socketPath} is over ${MAX_SOCKET_PATH_BYTES} bytes; choose a shorter --state-dir`)
  }
  if ([...stateDir].some((ch) => ch.charCodeAt(0) < 0x20 || ch === '"' || ch === '\\')) {
    throw new EmbeddedRedisError(`state dir ${JSON.stringify(stateDir)} holds a control character, quote or backslash; choose another`)
  }
  await mkdir(stateDir, { recursive: true, mode: 0o700 })

  const reuse = async (): Promise<EmbeddedRedis> => {
    const pid = (await serverPid(socketPath, o.pollMs * 20)) ?? (await readPid(join(stateDir, FILES.pid))) ?? 0
    log(`using the redis-server (pid ${pid}) already running on ${socketPath}`)
    return { url, pid, startedByUs: false, stop: async () => {} }
  }

  // Waiting covers another process's whole start, which is bounded by the same timeout.
  const deadline = Date.now() + 2 * o.startTimeoutMs
  let waitingFor = ''
  while (true) {
    const probe = await ping(socketPath, o.pollMs * 10)
    if (probe === 'ready') return reuse()
    if (probe === 'absent') {
      const lock = await tryLock(join(stateDir, FILES.lock), o.staleLockMs, log)
      if (lock.acquired) {
        try {
          // Someone may have finished starting between our probe and our lock.
          if ((await ping(socketPath, o.pollMs * 10)) === 'ready') return await reuse()
          const running = await runningServerPid(join(stateDir, FILES.pid))
          if (running === undefined) return await spawnServer(o, stateDir, socketPath, url, log)
          waitingFor = `redis-server pid ${running} (from ${FILES.pid}) is running but does not answer on ${socketPath}`
        } finally {
          await unlink(lock.path).catch(() => {})
        }
      } else {
        waitingFor = `process ${lock.holder ?? '(unknown)'} holds ${join(stateDir, FILES.lock)} and has not got redis-server answering`
      }
    } else {
      waitingFor = `redis-server on ${socketPath} is still loading its data`
    }
    if (Date.now() >= deadline) throw new EmbeddedRedisError(`embedded Redis not available after ${2 * o.startTimeoutMs} ms: ${waitingFor}`)
    await sleep(o.pollMs)
  }
}

async function spawnServer(
  o: typeof EMBEDDED_REDIS_DEFAULTS,
  stateDir: string,
  socketPath: string,
  url: string,
  log: (line: string) => void,
): Promise<EmbeddedRedis> {
  const binary = await findExecutable(o.redisServerPath)
  if (binary === undefined) throw new EmbeddedRedisError(`redis-server not found (looked for "${o.redisServerPath}"${o.redisServerPath.includes('/') ? '' : ' on PATH'}): ${NOT_INSTALLED_HINT}`)

  // A pid file or socket left by a server that is gone would only confuse the next reader.
  await unlink(join(stateDir, FILES.pid)).catch(() => {})
  await unlink(socketPath).catch(() => {})
  const configPath = join(stateDir, FILES.config)
  const logPath = join(stateDir, FILES.log)
  await writeFile(configPath, serverConfig(stateDir, socketPath, logPath), { mode: 0o600 })

  const child = spawn(binary, [configPath], { cwd: stateDir, stdio: ['ignore', 'ignore', 'pipe'] })
  // Before the log file is open, redis-server reports (config errors, for one) on stderr only.
  let stderr = ''
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-8192)
  })
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined
  let spawnError: Error | undefined
  const exit = new Promise<void>((done) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal }
      done()
    })
    child.once('error', (err) => {
      spawnError = err
      done()
    })
  })

  const failure = async (what: string): Promise<EmbeddedRedisError> => {
    const tail = await logTail(logPath, stderr, o.logTailLines)
    return new EmbeddedRedisError(`${what}${tail ? `; last lines of its output:\n${tail}` : ` (no output; see ${logPath})`}`)
  }

  const deadline = Date.now() + o.startTimeoutMs
  while (true) {
    if (spawnError) {
      const code = (spawnError as NodeJS.ErrnoException).code
      if (code === 'ENOENT') throw new EmbeddedRedisError(`redis-server not found at ${binary}: ${NOT_INSTALLED_HINT}`)
      throw new EmbeddedRedisError(`cannot run ${binary}: ${spawnError.message}`)
    }
    if (exited) throw await failure(`redis-server exited during start (${exited.signal ? `signal ${exited.signal}` : `status ${exited.code}`})`)
    if ((await ping(socketPath, o.pollMs * 10)) === 'ready') break
    if (Date.now() >= deadline) {
      await killAndWait(child, exit, o.stopTimeoutMs)
      throw await failure(`redis-server (pid ${child.pid}) did not answer on ${socketPath} within ${o.startTimeoutMs} ms and was killed`)
    }
    await sleep(o.pollMs)
  }

  const pid = child.pid!
  log(`started redis-server pid ${pid} on ${socketPath}`)
  // The server serves every flatnet process on this state dir; it must not keep this one alive.
  child.unref()
  ;(child.stderr as Socket).unref()
  let stopping = false
  void exit.then(() => {
    if (!stopping) log(`redis-server pid ${pid} exited unexpectedly (${exited?.signal ?? `status ${exited?.code}`}); see ${logPath}`)
  })

  let stopped: Promise<void> | undefined
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      stopping = true
      // SIGTERM is redis-server's graceful shutdown (the AOF is flushed), and it reaches only the
      // process we started, even if another server were listening on the socket by now.
      if (!exited) {
        child.kill('SIGTERM')
        if (!(await within(exit, o.stopTimeoutMs))) {
          log(`redis-server pid ${pid} did not exit within ${o.stopTimeoutMs} ms of SIGTERM; killing it`)
          await killAndWait(child, exit, o.stopTimeoutMs)
        }
      }
      // redis-server removes both on a clean exit, not after SIGKILL. If ours had died earlier,
      // another process may have started a new server since: leave its socket and pid file be.
      if ((await ping(socketPath, o.pollMs * 10)) === 'absent') await unlink(socketPath).catch(() => {})
      if ((await readPid(join(stateDir, FILES.pid))) === pid) await unlink(join(stateDir, FILES.pid)).catch(() => {})
      log(`stopped redis-server pid ${pid}`)
    })()
    return stopped
  }
  return { url, pid, startedByUs: true, stop }
}

function serverConfig(stateDir: string, socketPath: string, logPath: string): string {
  const q = (s: string): string => JSON.stringify(s)
  return [
    '# Written by flatnet at every start of the embedded Redis; edits are overwritten.',
    'daemonize no',
    'supervised no',
    // No TCP listener at all: the socket, with owner-only permissions, is the only way in.
    'port 0',
    `unixsocket ${q(socketPath)}`,
    'unixsocketperm 600',
    `dir ${q(stateDir)}`,
    `pidfile ${q(join(stateDir, FILES.pid))}`,
    `logfile ${q(logPath)}`,
    'appendonly yes',
    `appendfilename ${q(FILES.aof)}`,
    'appendfsync everysec',
    `dbfilename ${q(FILES.rdb)}`,
    // The append-only file is the durable copy; periodic RDB snapshots would only add writes.
    'save ""',
    '',
  ].join('\n')
}

interface LockResult {
  readonly acquired: boolean
  readonly path: string
  readonly holder?: number
}

/**
 * Takes the start lock, or tells who holds it. A lock whose process is gone, or that is older
 * than any start can take, is removed and taken.
 */
async function tryLock(path: string, staleMs: number, log: (line: string) => void): Promise<LockResult> {
  try {
    const fh = await open(path, 'wx', 0o600)
    try {
      await fh.writeFile(`${process.pid}\n`)
    } finally {
      await fh.close()
    }
    return { acquired: true, path }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new EmbeddedRedisError(`cannot create ${path}: ${(err as Error).message}`)
  }
  const before = await stat(path).catch(() => undefined)
  if (before === undefined) return { acquired: false, path } // released meanwhile: try again
  const holder = await readPid(path)
  const age = Date.now() - before.mtimeMs
  // An empty lock is one being written right now, unless it is old.
  const gone = holder !== undefined && !(await isAlive(holder))
  if (!gone && age < staleMs) return holder === undefined ? { acquired: false, path } : { acquired: false, path, holder }

  // Move the stale lock aside instead of deleting it: if another process replaced it in the
  // meantime we notice (another inode) and put theirs back rather than break their lock.
  const aside = `${path}.stale-${process.pid}-${Date.now()}`
  try {
    await rename(path, aside)
  } catch {
    return { acquired: false, path }
  }
  const moved = await stat(aside).catch(() => undefined)
  if (moved !== undefined && moved.ino !== before.ino) {
    await link(aside, path).catch(() => {})
    await unlink(aside).catch(() => {})
    return { acquired: false, path }
  }
  await unlink(aside).catch(() => {})
  log(`removed stale start lock ${path} (${gone ? `process ${holder} is gone` : `${Math.round(age / 1000)} s old`})`)
  return tryLock(path, staleMs, log)
}

/** The pid in a redis pid file when that process is a live redis-server; undefined otherwise. */
async function runningServerPid(pidFile: string): Promise<number | undefined> {
  const pid = await readPid(pidFile)
  if (pid === undefined || !(await isAlive(pid))) return undefined
  // After a reboot the pid may belong to anything; only a redis-server counts.
  const comm = await readFile(`/proc/${pid}/comm`, 'utf8').catch(() => undefined)
  if (comm !== undefined && !comm.startsWith('redis-server')) return undefined
  return pid
}

async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '')
  const pid = Number(text.trim())
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

/** Whether a process exists and is not a zombie (an exited process nobody has reaped yet). */
async function isAlive(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')
  // The state letter follows the command name, which is in parentheses and may hold anything.
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
}

async function findExecutable(name: string): Promise<string | undefined> {
  const candidates = name.includes('/') ? [resolve(name)] : (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(delimiter).filter((d) => d !== '').map((d) => join(d, name))
  for (const file of candidates) {
    try {
      await access(file, fsConstants.X_OK)
      return file
    } catch {
      // not here
    }
  }
  return undefined
}

type Probe = 'ready' | 'loading' | 'absent'

/** One PING over the socket: a server answers, is loading its data set, or nothing is there. */
async function ping(socketPath: string, timeoutMs: number): Promise<Probe> {
  const reply = await command(socketPath, ['PING'], timeoutMs)
  if (reply === undefined) return 'absent'
  if (reply === '+PONG') return 'ready'
  if (reply.startsWith('-LOADING')) return 'loading'
  // Any other answer (NOAUTH, BUSY, ...) is still a server there: starting a second one would
  // take its socket away.
  return 'ready'
}

async function serverPid(socketPath: string, timeoutMs: number): Promise<number | undefined> {
  const reply = await command(socketPath, ['INFO', 'server'], timeoutMs)
  const m = reply === undefined ? null : /^process_id:(\d+)/m.exec(reply)
  return m ? Number(m[1]) : undefined
}

/**
 * Sends one command and returns the first line of a status or error reply, or the body of a
 * bulk reply; undefined when nothing answers. Just enough RESP to probe a server without a
 * client library and its reconnection machinery.
 */
function command(socketPath: string, args: readonly string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((done) => {
    let buf = ''
    let finished = false
    const sock = connect({ path: socketPath })
    const finish = (value: string | undefined): void => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      sock.destroy()
      done(value)
    }
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    sock.setEncoding('utf8')
    sock.on('error', () => finish(undefined))
    sock.on('close', () => finish(undefined))
    sock.on('connect', () => sock.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`))
    sock.on('data', (chunk: string) => {
      buf += chunk
      const eol = buf.indexOf('\r\n')
      if (eol < 0) return
      const head = buf.slice(0, eol)
      if (head[0] !== '$') return finish(head)
      const len = Number(head.slice(1))
      if (len < 0) return finish('')
      if (Buffer.byteLength(buf) >= Buffer.byteLength(head) + 2 + len + 2) finish(buf.slice(eol + 2, eol + 2 + len))
    })
  })
}

async function logTail(logPath: string, stderr: string, lines: number): Promise<string> {
  const fromLog = await readFile(logPath, 'utf8').catch(() => '')
  const all = `${fromLog}\n${stderr}`.split('\n').filter((l) => l.trim() !== '')
  return all
    .slice(-lines)
    .map((l) => `  ${l}`)
    .join('\n')
}

async function killAndWait(child: ChildProcess, exit: Promise<void>, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  child.kill('SIGKILL')
  await within(exit, timeoutMs)
}

async function within(p: Promise<void>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<boolean>((done) => {
    timer = setTimeout(() => done(false), ms)
  })
  try {
    return await Promise.race([p.then(() => true), timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** The defaults, overridden by every option that is given (an explicit undefined is not given). */
function withDefaults<T extends object>(defaults: T, given: object): T {
  const out: Record<string, unknown> = { ...(defaults as Record<string, unknown>) }
  for (const [k, v] of Object.entries(given)) if (v !== undefined) out[k] = v
  return out as T
}

function sleep(ms: number): Promise<void> {
  return new Promise((done) => setTimeout(done, ms))
}
