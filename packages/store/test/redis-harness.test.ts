/**
 * The harness itself (servers start, stop by pid, leave nothing behind, even when the test
 * process dies), and the client of connectRedis against the harness's Sentinel set (survives a
 * failover) and cluster (hash-tagged keys and EVAL).
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { after, describe, it } from 'node:test'
import type { Cluster, Redis } from 'ioredis'
import { connectRedis } from '../src/redis-url.js'
import { command, commandArray, isAlive, startCluster, startRedis, startSentinelSet, until } from './redis-harness.js'

const clients: (Redis | Cluster)[] = []
after(() => {
  for (const c of clients) c.disconnect()
})
function client(url: string): Redis | Cluster {
  const c = connectRedis(url, { connectTimeoutMs: 1_000, commandTimeoutMs: 1_000 })
  // Failover makes connections fail on purpose; commands report what matters.
  c.on('error', () => {})
  clients.push(c)
  return c
}

describe('startRedis', () => {
  it('runs a standalone server without persistence and stops it by pid, removing its dir', async () => {
    const s = await startRedis({ unixSocket: true })
    assert.equal(s.url, `redis://127.0.0.1:${s.port}`)
    assert.ok(isAlive(s.pid))
    assert.equal(await command(s, ['CONFIG', 'GET', 'save']), 'save\n')
    assert.equal(await command(s, ['CONFIG', 'GET', 'appendonly']), 'appendonly\nno')
    assert.equal(await command({ path: s.socketPath! }, ['PING']), '+PONG')
    await s.stop()
    assert.ok(!isAlive(s.pid))
    assert.ok(!existsSync(s.dir))
  })

  it('servers are killed when the test process exits abnormally', async () => {
    const harness = new URL('./redis-harness.js', import.meta.url).href
    const endings = {
      'process.exit': 'process.exit(3)',
      'uncaught exception': 'setTimeout(() => { throw new Error("boom") }, 0)',
      SIGTERM: 'process.kill(process.pid, "SIGTERM"); setTimeout(() => {}, 10_000)',
    }
    for (const [how, ending] of Object.entries(endings)) {
      const script = `
        const { startRedis } = await import(${JSON.stringify(harness)})
        const s = await startRedis()
        console.log(s.pid + ' ' + s.dir)
        ${ending}`
      const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] })
      let out = ''
      child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d))
      const status = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.once('exit', (code, signal) => resolve([code, signal])))
      const [pidText, dir] = out.trim().split(' ')
      const pid = Number(pidText)
      assert.ok(pid > 0 && dir, `${how}: the child printed its server's pid and dir (got ${JSON.stringify(out)}, exit ${status.join('/')})`)
      await until(`${how}: server pid ${pid} to be gone`, 2_000, () => !isAlive(pid))
      assert.ok(!existsSync(dir), `${how}: ${dir} removed`)
    }
  })
})

describe('startSentinelSet', () => {
  it('a client through the sentinel URL keeps writing after the primary is killed', async () => {
    const set = await startSentinelSet()
    try {
      assert.match(set.url, /^redis-sentinel:\/\/127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+\/fnmaster$/)
      const c = client(set.url) as Redis
      assert.equal(await c.set('flatnet:before', '1'), 'OK')
      assert.match(String(await c.info('server')), new RegExp(`tcp_port:${set.primary.port}\\r?\\n`))

      await set.killPrimary()
      assert.ok(!isAlive(set.primary.pid))
      // Sentinels see the primary down after 1 s, agree, and promote the replica.
      await set.waitForPrimary(set.replica.port, 15_000)
      let writes = 0
      await until('a write through the sentinel URL to succeed after failover', 10_000, async () => {
        writes++
        return (await c.set('flatnet:after', String(writes))) === 'OK'
      })
      assert.match(String(await c.info('server')), new RegExp(`tcp_port:${set.replica.port}\\r?\\n`))
      assert.equal(await c.get('flatnet:before'), '1', 'replicated before the failover')
      const role = await commandArray(set.replica, ['ROLE'])
      assert.equal(role?.[0], 'master')
    } finally {
      await set.stop()
    }
    for (const s of [set.primary, set.replica, ...set.sentinels]) assert.ok(!isAlive(s.pid), `pid ${s.pid} stopped`)
  })
})

describe('startCluster', () => {
  it('a cluster client writes and reads keys sharing a hash tag, and runs EVAL over them', async () => {
    const cluster = await startCluster()
    try {
      assert.equal(cluster.nodes.length, 3)
      for (const n of cluster.nodes) assert.match((await command(n, ['CLUSTER', 'INFO'])) ?? '', /cluster_state:ok/)
      const c = client(cluster.url) as Cluster
      assert.equal(await c.set('{c1}:a', 'left'), 'OK')
      assert.equal(await c.set('{c1}:b', 'right'), 'OK')
      assert.deepEqual(await c.mget('{c1}:a', '{c1}:b'), ['left', 'right'])
      const joined = await c.eval("return redis.call('GET', KEYS[1]) .. '+' .. redis.call('GET', KEYS[2])", 2, '{c1}:a', '{c1}:b')
      assert.equal(joined, 'left+right')
      // Keys in other slots land on other nodes, and the client follows them there.
      const slots = new Set<number>()
      for (let i = 0; i < 20; i++) {
        assert.equal(await c.set(`flatnet:spread:${i}`, String(i)), 'OK')
        slots.add(Number(await c.cluster('KEYSLOT', `flatnet:spread:${i}`)))
      }
      assert.ok(slots.size > 1)
      assert.equal(await c.get('flatnet:spread:7'), '7')
    } finally {
      await cluster.stop()
    }
    for (const n of cluster.nodes) assert.ok(!isAlive(n.pid), `pid ${n.pid} stopped`)
  })
})
