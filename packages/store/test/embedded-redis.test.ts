/**
 * The embedded redis-server: start, reuse by a second caller (same process, concurrent callers,
 * another process), stop, stale lock and pid files, and the failures an operator must be able
 * to act on (not installed, exits at once, never answers).
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { EmbeddedRedisError } from '@flatnet/core'
import { EMBEDDED_REDIS_DEFAULTS, startEmbeddedRedis, type EmbeddedRedis } from '../src/embedded-redis.js'
import { command, isAlive, until } from './redis-harness.js'

const roots: string[] = []
const running: EmbeddedRedis[] = []
after(async () => {
  for (const r of running) await r.stop()
  for (const dir of roots) rmSync(dir, { recursive: true, force: true })
})

/** A state dir that does not exist yet, under a fresh temp dir. */
function stateDir(): string {
  const root = mkdtempSync(join(tmpdir(), 'flatnet-embedded-'))
  roots.push(root)
  return join(root, 'state')
}

async function start(opts: Parameters<typeof startEmbeddedRedis>[0]): Promise<EmbeddedRedis> {
  const r = await startEmbeddedRedis(opts)
  running.push(r)
  return r
}

function socketOf(r: EmbeddedRedis): string {
  return decodeURIComponent(r.url.slice('unix://'.length))
}

/** A pid that certainly belongs to no process any more. */
function deadPid(): number {
  const pid = spawnSync('sh', ['-c', 'echo $$'], { encoding: 'utf8' }).stdout.trim()
  return Number(pid)
}

async function expectError(p: Promise<unknown>, message: RegExp): Promise<EmbeddedRedisError> {
  const err = await p.then(
    () => assert.fail('expected startEmbeddedRedis to fail'),
    (e: unknown) => e,
  )
  assert.ok(err instanceof EmbeddedRedisError, String(err))
  assert.equal(err.code, 'ERR_EMBEDDED_REDIS')
  assert.match(err.message, message)
  return err
}

describe('startEmbeddedRedis', () => {
  it('starts redis-server on a private unix socket, with no TCP port and an append-only file', async () => {
    const dir = stateDir()
    const lines: string[] = []
    const r = await start({ stateDir: dir, log: (l) => lines.push(l) })
    assert.equal(r.startedByUs, true)
    assert.equal(r.url, `unix://${dir}/redis.sock`)
    assert.ok(isAlive(r.pid))
    assert.equal(statSync(dir).mode & 0o777, 0o700)
    const sock = statSync(socketOf(r))
    assert.ok(sock.isSocket())
    assert.equal(sock.mode & 0o777, 0o600)
    const path = socketOf(r)
    assert.equal(await command({ path }, ['PING']), '+PONG')
    assert.equal(await command({ path }, ['CONFIG', 'GET', 'port']), 'port\n0')
    assert.equal(await command({ path }, ['CONFIG', 'GET', 'appendonly']), 'appendonly\nyes')
    assert.equal(await command({ path }, ['CONFIG', 'GET', 'dir']), `dir\n${dir}`)
    assert.match(lines.join('\n'), new RegExp(`started redis-server pid ${r.pid}`))

    // What was written survives a stop and a new start: the append-only file is in the state dir.
    assert.equal(await command({ path }, ['SET', 'flatnet:durable', 'yes']), '+OK')
    await r.stop()
    assert.ok(!isAlive(r.pid), 'stopped')
    assert.ok(!existsSync(path), 'socket removed')
    await r.stop() // a second stop is harmless
    const again = await start({ stateDir: dir })
    assert.equal(again.startedByUs, true)
    assert.notEqual(again.pid, r.pid)
    assert.equal(await command({ path }, ['GET', 'flatnet:durable']), 'yes')
    await again.stop()
    assert.ok(!isAlive(again.pid))
  })

  it('reuses a server already answering on the socket, and then stop() leaves it running', async () => {
    const dir = stateDir()
    const first = await start({ stateDir: dir })
    const second = await start({ stateDir: dir })
    assert.equal(second.startedByUs, false)
    assert.equal(second.pid, first.pid)
    assert.equal(second.url, first.url)
    await second.stop()
    assert.ok(isAlive(first.pid), 'the reusing side does not stop it')
    await first.stop()
    assert.ok(!isAlive(first.pid))
  })

  it('starts one server for callers racing on the same state dir', async () => {
    const dir = stateDir()
    const all = await Promise.all([1, 2, 3, 4].map(() => start({ stateDir: dir })))
    assert.equal(all.filter((r) => r.startedByUs).length, 1)
    assert.equal(new Set(all.map((r) => r.pid)).size, 1)
    assert.ok(!existsSync(join(dir, 'redis.lock')), 'lock released')
    for (const r of all) await r.stop()
    assert.ok(!isAlive(all[0]!.pid))
  })

  it('reuses a server another process started, which alone stops it', async () => {
    const dir = stateDir()
    const moduleUrl = new URL('../src/embedded-redis.js', import.meta.url).href
    const script = `
      const { startEmbeddedRedis } = await import(${JSON.stringify(moduleUrl)})
      const r = await startEmbeddedRedis({ stateDir: ${JSON.stringify(dir)} })
      console.log(JSON.stringify({ pid: r.pid, startedByUs: r.startedByUs }))
      process.stdin.once('data', async () => { await r.stop(); process.exit(0) })`
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'inherit'] })
    try {
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s))
      await until('the other process to start redis-server', 5_000, () => out.includes('\n'))
      const theirs = JSON.parse(out) as { pid: number; startedByUs: boolean }
      assert.equal(theirs.startedByUs, true)
      const ours = await start({ stateDir: dir })
      assert.equal(ours.startedByUs, false)
      assert.equal(ours.pid, theirs.pid)
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.stdin.write('stop\n')
      assert.equal(await exited, 0)
      assert.ok(!isAlive(theirs.pid))
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('notices when its server dies, and the next start replaces it', async () => {
    const dir = stateDir()
    const lines: string[] = []
    const r = await start({ stateDir: dir, log: (l) => lines.push(l) })
    process.kill(r.pid, 'SIGKILL')
    await until('the death to be logged', 2_000, () => lines.some((l) => l.includes(`redis-server pid ${r.pid} exited unexpectedly`)))
    const next = await start({ stateDir: dir })
    assert.equal(next.startedByUs, true)
    // The dead one's stop() must not take the new server's socket away.
    await r.stop()
    assert.equal(await command({ path: socketOf(next) }, ['PING']), '+PONG')
    await next.stop()
    assert.ok(!existsSync(socketOf(next)))
  })

  it('takes over a lock whose process is gone, and one that is too old', async () => {
    const dir = stateDir()
    const first = await start({ stateDir: dir })
    await first.stop()
    writeFileSync(join(dir, 'redis.lock'), `${deadPid()}\n`)
    const r = await start({ stateDir: dir })
    assert.equal(r.startedByUs, true)
    assert.ok(!existsSync(join(dir, 'redis.lock')))
    await r.stop()

    // This process is alive, but no start takes an hour: the lock was abandoned.
    writeFileSync(join(dir, 'redis.lock'), `${process.pid}\n`)
    const anHourAgo = new Date(Date.now() - 3_600_000)
    utimesSync(join(dir, 'redis.lock'), anHourAgo, anHourAgo)
    const r2 = await start({ stateDir: dir })
    assert.equal(r2.startedByUs, true)
    await r2.stop()
  })

  it('waits, bounded, for a live lock holder, and says who holds it', async () => {
    const dir = stateDir()
    const first = await start({ stateDir: dir })
    await first.stop()
    writeFileSync(join(dir, 'redis.lock'), `${process.pid}\n`)
    const t0 = Date.now()
    await expectError(startEmbeddedRedis({ stateDir: dir, startTimeoutMs: 200 }), new RegExp(`process ${process.pid} holds .*redis.lock`))
    assert.ok(Date.now() - t0 < 2_000)
  })

  it('ignores a pid file and socket left by a server that is gone', async () => {
    const dir = stateDir()
    const first = await start({ stateDir: dir })
    await first.stop()
    writeFileSync(join(dir, 'redis.pid'), `${deadPid()}\n`)
    writeFileSync(join(dir, 'redis.sock'), '')
    const r = await start({ stateDir: dir })
    assert.equal(r.startedByUs, true)
    assert.equal(readFileSync(join(dir, 'redis.pid'), 'utf8').trim(), String(r.pid))
    await r.stop()
  })

  it('says how to install redis-server when it is missing', async () => {
    const hint = /install the Debian package redis-server, or set FLATNET_REDIS_URL/
    await expectError(startEmbeddedRedis({ stateDir: stateDir(), redisServerPath: '/nonexistent/redis-server' }), hint)
    await expectError(startEmbeddedRedis({ stateDir: stateDir(), redisServerPath: 'flatnet-no-such-redis-server' }), hint)
  })

  it('shows the tail of the output of a server that exits during start', async () => {
    const dir = stateDir()
    const fake = join(dir, '..', 'fake-redis-server')
    writeFileSync(fake, '#!/bin/sh\necho "*** FATAL CONFIG FILE ERROR: fake for the test" >&2\nexit 1\n')
    chmodSync(fake, 0o755)
    await expectError(startEmbeddedRedis({ stateDir: dir, redisServerPath: fake }), /exited during start \(status 1\).*\n.*FATAL CONFIG FILE ERROR: fake for the test/)
  })

  it('kills a server that does not answer in time, and says so', async () => {
    const dir = stateDir()
    const fake = join(dir, '..', 'silent-redis-server')
    const pidFile = join(dir, '..', 'silent.pid')
    writeFileSync(fake, `#!/bin/sh\necho $$ > ${pidFile}\necho "starting, slowly" >&2\nexec sleep 30\n`)
    chmodSync(fake, 0o755)
    await expectError(startEmbeddedRedis({ stateDir: dir, redisServerPath: fake, startTimeoutMs: 300 }), /did not answer .* within 300 ms and was killed.*\n.*starting, slowly/s)
    const pid = Number(readFileSync(pidFile, 'utf8').trim())
    await until(`pid ${pid} to be gone`, 2_000, () => !isAlive(pid))
    assert.ok(!existsSync(join(dir, 'redis.lock')), 'lock released')
  })

  it('refuses a state dir whose socket path would not fit in sun_path', async () => {
    const long = join(stateDir(), 'x'.repeat(120))
    await expectError(startEmbeddedRedis({ stateDir: long }), /path too long for a unix socket/)
  })

  it('has frozen defaults with a bounded start', () => {
    assert.ok(Object.isFrozen(EMBEDDED_REDIS_DEFAULTS))
    assert.ok(EMBEDDED_REDIS_DEFAULTS.startTimeoutMs <= 10_000)
  })
})
