// A redis-server of the benchmark's own, in a temp dir it owns, configured as the embedded one
// runs (AOF, fsync every second) unless told otherwise; stopped by pid.
import { spawn } from 'node:child_process'
import { mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { command, freePort } from '../../packages/store/dist/test/redis-harness.js'
import { BenchError, disownPid, ownPid } from './cleanup.js'
import { sleep } from './clock.js'
import { stopProcess } from './processes.js'

/** The fields of an INFO reply. */
export function redisInfo(text) {
  return Object.fromEntries(
    (text ?? '')
      .split(/\r?\n/)
      .filter((l) => l.includes(':') && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1)]),
  )
}

const TCP_ATTEMPTS = 3

/**
 * A redis-server with its files in `dir`/redis, room for `maxClients` connections, listening
 * on a unix socket there (`listen: 'unix'`) or on a free loopback port (`listen: 'tcp'`; a
 * port taken in between is retried). `aof: false` runs it without persistence.
 */
export async function startRedis(dir, { maxClients, listen = 'unix', aof = true }) {
  const rdir = join(dir, 'redis')
  mkdirSync(rdir, { recursive: true, mode: 0o700 })
  const logFile = join(rdir, 'redis.log')
  const persistence = aof ? ['--appendonly', 'yes', '--appendfsync', 'everysec'] : ['--appendonly', 'no']
  for (let attempt = 1; ; attempt++) {
    const at = listen === 'tcp' ? { port: await freePort() } : { path: join(rdir, 'redis.sock') }
    const address = at.port ? ['--port', String(at.port), '--bind', '127.0.0.1'] : ['--port', '0', '--unixsocket', at.path, '--unixsocketperm', '700']
    const args = [...address, '--dir', rdir, '--logfile', logFile, '--daemonize', 'no', '--save', '', ...persistence, '--maxclients', String(maxClients)]
    const child = spawn('redis-server', args, { stdio: 'ignore' })
    child.once('error', () => {})
    if (child.pid === undefined) throw new BenchError('cannot run redis-server: is it installed? (npm run setup installs it)')
    ownPid(child.pid)
    child.once('exit', () => disownPid(child.pid))
    const deadline = Date.now() + 5_000
    while (child.exitCode === null && Date.now() < deadline) {
      if ((await command(at, ['PING'], 500)) === '+PONG') return server(child, at)
      await sleep(50)
    }
    await stopProcess(child, 'SIGKILL')
    let tail = ''
    try {
      tail = readFileSync(logFile, 'utf8').split('\n').slice(-10).join('\n')
    } catch {
      // no log yet
    }
    if (at.port && attempt < TCP_ATTEMPTS && /address already in use/i.test(tail)) continue
    throw new BenchError(`redis-server on ${at.port ? `port ${at.port}` : at.path} did not answer PING within 5 s:\n${tail}`)
  }
}

async function server(child, at) {
  const run = (args, ms = 2_000) => command(at, args, ms)
  const info = async (section) => redisInfo(await run(['INFO', section]))
  return {
    child,
    pid: child.pid,
    ...(at.port ? { port: at.port, url: `redis://127.0.0.1:${at.port}` } : { socket: at.path, url: `unix://${at.path}` }),
    version: (await info('server')).redis_version,
    /** One command, its raw reply (see redis-harness `command`). */
    command: run,
    info,
    /** CPU seconds redis-server has used so far (all its threads). */
    cpuSeconds: async () => {
      const c = await info('cpu')
      return Number(c.used_cpu_user) + Number(c.used_cpu_sys)
    },
  }
}
