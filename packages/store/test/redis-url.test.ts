/**
 * Redis URLs: every form parses to the ioredis options it should, bad ones fail with
 * ERR_REDIS_URL, no password ever shows in an error or a display string, and the standalone
 * forms (TCP with an ACL user, unix socket) really connect. Sentinel and cluster connections
 * are proven in redis-harness.test.ts, against the harness's sets.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import type { Cluster, Redis } from 'ioredis'
import { InputReadError, InvalidRedisUrlError } from '@flatnet/core'
import { backoffMs, connectRedis, parseRedisUrl, redactUrl, REDIS_CONNECT_DEFAULTS } from '../src/redis-url.js'
import { command, startRedis, type RedisServer } from './redis-harness.js'

const SECRET = 'S3cr3t-pw'

function parseError(url: string): InvalidRedisUrlError {
  try {
    parseRedisUrl(url)
  } catch (err) {
    assert.ok(err instanceof InvalidRedisUrlError, `expected InvalidRedisUrlError for ${url}, got ${String(err)}`)
    return err
  }
  assert.fail(`expected ${url} to be refused`)
}

describe('parseRedisUrl', () => {
  it('redis:// with user, password, port and db', () => {
    const p = parseRedisUrl(`redis://fn:${SECRET}@cache.example:6380/2`)
    assert.equal(p.mode, 'standalone')
    assert.deepEqual(p.options, { host: 'cache.example', port: 6380, username: 'fn', password: SECRET, db: 2 })
    assert.equal(p.display, 'redis://fn:***@cache.example:6380/2')
  })

  it('redis:// defaults: port 6379, no db, no credentials', () => {
    const p = parseRedisUrl('redis://localhost')
    assert.deepEqual(p.options, { host: 'localhost', port: 6379 })
    assert.equal(p.display, 'redis://localhost:6379')
    assert.deepEqual(parseRedisUrl('redis://localhost/').options, { host: 'localhost', port: 6379 })
  })

  it('password only (the default user), user only, IPv6 host, surrounding white space', () => {
    assert.deepEqual(parseRedisUrl(`redis://:${SECRET}@h`).options, { host: 'h', port: 6379, password: SECRET })
    assert.equal(parseRedisUrl(`redis://:${SECRET}@h`).display, 'redis://:***@h:6379')
    assert.deepEqual(parseRedisUrl('redis://fn@h').options, { host: 'h', port: 6379, username: 'fn' })
    assert.equal(parseRedisUrl('redis://fn@h').display, 'redis://fn@h:6379')
    const v6 = parseRedisUrl('redis://[::1]:7000/1')
    assert.deepEqual(v6.options, { host: '::1', port: 7000, db: 1 })
    assert.equal(v6.display, 'redis://[::1]:7000/1')
    assert.equal(parseRedisUrl('  redis://h:1\n').display, 'redis://h:1')
  })

  it('passwords with reserved characters, encoded or not', () => {
    const raw = 'p@ss:w/rd?#%x'
    const encoded = parseRedisUrl(`redis://fn:${encodeURIComponent(raw)}@h:1/3`)
    assert.equal(encoded.options.password, raw)
    assert.equal(encoded.options.db, 3)
    // Unencoded: the credentials end at the last "@".
    const plain = parseRedisUrl('redis://fn:p@ss/w?rd@h:1/3')
    assert.equal(plain.options.password, 'p@ss/w?rd')
    assert.equal(plain.options.host, 'h')
    assert.equal(plain.display, 'redis://fn:***@h:1/3')
  })

  it('rediss:// with ca= and insecure=', () => {
    const p = parseRedisUrl(`rediss://fn:${SECRET}@secure.example:6390/1?ca=/etc/flatnet/ca.pem&insecure=1`)
    assert.equal(p.mode, 'standalone')
    assert.ok(p.mode === 'standalone')
    assert.deepEqual(p.tls, { caFile: '/etc/flatnet/ca.pem', insecure: true })
    assert.deepEqual(p.options, {
      host: 'secure.example',
      port: 6390,
      username: 'fn',
      password: SECRET,
      db: 1,
      tls: { rejectUnauthorized: false, servername: 'secure.example' },
    })
    assert.equal(p.display, 'rediss://fn:***@secure.example:6390/1?ca=/etc/flatnet/ca.pem&insecure=1')
    const verified = parseRedisUrl('rediss://h')
    assert.ok(verified.mode === 'standalone')
    assert.deepEqual(verified.tls, { insecure: false })
    assert.deepEqual(verified.options.tls, { rejectUnauthorized: true, servername: 'h' })
  })

  it('unix:// and redis+unix:// sockets, with db and credentials', () => {
    const p = parseRedisUrl('unix:///var/lib/flatnet/redis.sock?db=4')
    assert.deepEqual(p.options, { path: '/var/lib/flatnet/redis.sock', db: 4 })
    assert.equal(p.display, 'unix:///var/lib/flatnet/redis.sock?db=4')
    assert.deepEqual(parseRedisUrl('redis+unix:///run/redis.sock').options, { path: '/run/redis.sock' })
    assert.deepEqual(parseRedisUrl('unix:///run/my%20dir/redis.sock').options, { path: '/run/my dir/redis.sock' })
    const auth = parseRedisUrl(`unix://fn:${SECRET}@/run/redis.sock`)
    assert.deepEqual(auth.options, { path: '/run/redis.sock', username: 'fn', password: SECRET })
    assert.equal(auth.display, 'unix://fn:***@/run/redis.sock')
  })

  it('redis-sentinel:// gives sentinels, master name, db and both sets of credentials', () => {
    const p = parseRedisUrl(`redis-sentinel://fn:${SECRET}@s1:26380,s2,[fd00::3]:26381/fnmaster?db=1&sentinelPassword=${SECRET}2&sentinelUsername=watch`)
    assert.equal(p.mode, 'sentinel')
    assert.deepEqual(p.options, {
      sentinels: [
        { host: 's1', port: 26380 },
        { host: 's2', port: 26379 },
        { host: 'fd00::3', port: 26381 },
      ],
      name: 'fnmaster',
      username: 'fn',
      password: SECRET,
      db: 1,
      sentinelUsername: 'watch',
      sentinelPassword: `${SECRET}2`,
    })
    assert.equal(p.display, 'redis-sentinel://fn:***@s1:26380,s2:26379,[fd00::3]:26381/fnmaster?db=1&sentinelUsername=watch&sentinelPassword=***')
  })

  it('redis-cluster:// gives seed nodes and per-node credentials', () => {
    const p = parseRedisUrl(`redis-cluster://fn:${SECRET}@n1:7000,n2:7001,n3`)
    assert.ok(p.mode === 'cluster')
    assert.deepEqual(p.nodes, [
      { host: 'n1', port: 7000 },
      { host: 'n2', port: 7001 },
      { host: 'n3', port: 6379 },
    ])
    assert.deepEqual(p.options, { username: 'fn', password: SECRET })
    assert.equal(p.display, 'redis-cluster://fn:***@n1:7000,n2:7001,n3:6379')
  })

  const invalid: [url: string, reason: RegExp][] = [
    ['', /expected scheme/],
    ['localhost:6379', /expected scheme/],
    [`http://fn:${SECRET}@h`, /unsupported scheme "http:\/\/"/],
    [`redis://fn:${SECRET}@`, /missing host/],
    [`redis://fn:${SECRET}@h:0`, /out of range/],
    [`redis://fn:${SECRET}@h:65536`, /out of range/],
    [`redis://fn:${SECRET}@h:port`, /port "port" of host h is not a number/],
    [`redis://fn:${SECRET}@h/zero`, /database "zero" is not a number/],
    [`redis://fn:${SECRET}@h/1/2`, /database "1\/2"/],
    [`redis://fn:${SECRET}@h1,h2`, /several hosts/],
    [`redis://fn:${SECRET}@h?db=1`, /unknown query parameter "db"; this scheme takes none/],
    [`redis://fn:${SECRET}@h#x`, /fragment/],
    [`redis://fn:${SECRET}@h h`, /white space/],
    [`redis://fn:${SECRET}@ho$t`, /not a host name/],
    [`redis://fn:${SECRET}@[::1`, /unclosed/],
    [`redis://fn:%ZZ${SECRET}@h`, /password is not valid percent-encoding/],
    [`redis://:@h`, /empty credentials/],
    [`rediss://fn:${SECRET}@h?insecure=maybe`, /insecure= takes 1, 0, true or false/],
    [`rediss://fn:${SECRET}@h?ca=`, /ca= needs/],
    [`rediss://fn:${SECRET}@h?insecure=1&insecure=0`, /given twice/],
    ['unix://', /missing socket path/],
    [`unix://fn:${SECRET}@host/run/redis.sock`, /has no host/],
    ['unix:///run/redis.sock?db=x', /database "x"/],
    [`redis-sentinel://fn:${SECRET}@s1,s2`, /missing master name/],
    [`redis-sentinel://fn:${SECRET}@s1,,s2/m`, /empty host/],
    [`redis-sentinel://fn:${SECRET}@s1/m!`, /master name "m!"/],
    [`redis-sentinel://s1/m?password=${SECRET}`, /unknown query parameter "password"/],
    [`redis-sentinel://s1/m?sentinelPassword=a@${SECRET}:1/m`, /cannot tell where the credentials end/],
    [`redis-cluster://fn:${SECRET}@n1:7000/1`, /only database 0/],
    [`redis-cluster://fn:${SECRET}@`, /missing host/],
  ]
  for (const [url, reason] of invalid) {
    it(`refuses ${JSON.stringify(url)}`, () => {
      const err = parseError(url)
      assert.equal(err.code, 'ERR_REDIS_URL')
      assert.equal(err.exitCode, 2)
      assert.match(err.reason, reason)
      assert.ok(!err.message.includes(SECRET), `secret in message: ${err.message}`)
      assert.ok(!err.url.includes(SECRET), `secret in url: ${err.url}`)
      assert.ok(!String(err.stack).includes(SECRET), 'secret in stack')
    })
  }
})

describe('redactUrl', () => {
  const cases: [url: string, expected: string][] = [
    [`redis://fn:${SECRET}@h:6379/0`, 'redis://fn:***@h:6379/0'],
    [`redis://:${SECRET}@h`, 'redis://:***@h'],
    ['redis://fn@h', 'redis://fn@h'],
    ['redis://h:6379/1', 'redis://h:6379/1'],
    [`rediss://fn:${SECRET}@h?ca=/x.pem`, 'rediss://fn:***@h?ca=/x.pem'],
    [`redis-sentinel://fn:${SECRET}@a:1,b:2/m?sentinelPassword=${SECRET}&db=1`, 'redis-sentinel://fn:***@a:1,b:2/m?sentinelPassword=***&db=1'],
    [`unix://fn:${SECRET}@/run/r.sock`, 'unix://fn:***@/run/r.sock'],
    // Not URLs at all, or ambiguous ones: still nothing secret left.
    [`fn:${SECRET}@h`, 'fn:***@h'],
    [`redis://fn:p@${SECRET}@h`, 'redis://fn:***@h'],
    [`redis://fn:a?password=${SECRET}@h`, 'redis://fn:***'],
    [`redis-sentinel://s:1/m?sentinelPassword=x@${SECRET}`, 'redis-sentinel://s:***'],
  ]
  for (const [url, expected] of cases) {
    it(`${JSON.stringify(url)} -> ${expected}`, () => {
      assert.equal(redactUrl(url), expected)
      assert.ok(!redactUrl(url).includes(SECRET))
    })
  }
})

describe('connectRedis', () => {
  let server: RedisServer
  const clients: (Redis | Cluster)[] = []
  const client = (url: string, opts = {}): Redis | Cluster => {
    const c = connectRedis(url, { connectTimeoutMs: 2_000, commandTimeoutMs: 2_000, ...opts })
    c.on('error', () => {}) // failures are asserted through the commands
    clients.push(c)
    return c
  }
  before(async () => {
    server = await startRedis({ unixSocket: true })
    assert.equal(
      await command(server, ['ACL', 'SETUSER', 'fnuser', 'on', `>${SECRET}`, '~*', '&*', '+@all']),
      '+OK',
    )
  })
  after(async () => {
    for (const c of clients) c.disconnect()
    await server?.stop()
  })

  it('has bounded, sane defaults', () => {
    assert.equal(REDIS_CONNECT_DEFAULTS.maxRetriesPerRequest > 0 && REDIS_CONNECT_DEFAULTS.maxRetriesPerRequest < 10, true)
    assert.ok(Object.isFrozen(REDIS_CONNECT_DEFAULTS))
    const c = client(`redis://127.0.0.1:${server.port}`, { lazy: true }) as Redis
    assert.equal(c.options.enableOfflineQueue, true)
    assert.equal(c.options.keyPrefix ?? '', '')
    assert.equal(c.options.connectTimeout, 2_000)
    assert.equal(c.options.commandTimeout, 2_000)
    assert.equal(c.options.maxRetriesPerRequest, REDIS_CONNECT_DEFAULTS.maxRetriesPerRequest)
    assert.equal(c.status, 'wait', 'lazy: not connected before the first command')
  })

  it('backs off exponentially, capped, with jitter', () => {
    for (let attempt = 1; attempt <= 40; attempt++) {
      const ceiling = Math.min(1_000, 100 * 2 ** (attempt - 1))
      const d = backoffMs(attempt, 100, 1_000)
      assert.ok(d >= ceiling / 2 - 1 && d <= ceiling + 1, `attempt ${attempt}: ${d}`)
    }
  })

  it('connects over TCP as an ACL user, to the database in the path', async () => {
    const c = client(`redis://fnuser:${encodeURIComponent(SECRET)}@127.0.0.1:${server.port}/2`) as Redis
    assert.equal(await c.set('flatnet:url-test', 'tcp'), 'OK')
    assert.equal(await c.get('flatnet:url-test'), 'tcp')
    assert.equal(await c.call('ACL', 'WHOAMI'), 'fnuser')
    assert.match(String(await c.call('CLIENT', 'INFO')), / db=2 /)
    assert.equal(await command(server, ['GET', 'flatnet:url-test']), '', 'db 0 does not have the key')
  })

  it('fails on a wrong password without showing it', async () => {
    const c = client(`redis://fnuser:wrong-${SECRET}@127.0.0.1:${server.port}`, { maxRetriesPerRequest: 0, lazy: true })
    const err = await c.ping().then(
      () => assert.fail('PING with a wrong password succeeded'),
      (e: Error) => e,
    )
    assert.match(err.message, /WRONGPASS/)
    assert.ok(!err.message.includes(SECRET), err.message)
    // Now, not in after(): ioredis waits up to 2 s for a closed socket to close, and that
    // overlaps with the other tests here.
    c.disconnect()
  })

  it('connects over a unix socket, both spellings, with ?db=', async () => {
    for (const scheme of ['unix', 'redis+unix']) {
      const c = client(`${scheme}://${server.socketPath}?db=3`) as Redis
      assert.equal(await c.set(`flatnet:${scheme}`, scheme), 'OK')
      assert.equal(await c.get(`flatnet:${scheme}`), scheme)
      const info = String(await c.call('CLIENT', 'INFO'))
      assert.match(info, / db=3 /)
      assert.ok(info.includes(`addr=${server.socketPath}`), info)
    }
  })

  it('reads the CA file of rediss:// when connecting, and says which file it could not read', () => {
    assert.throws(
      () => connectRedis(`rediss://fn:${SECRET}@127.0.0.1:1?ca=/nonexistent/flatnet-ca.pem`, { lazy: true }),
      (err: unknown) => err instanceof InputReadError && err.file === '/nonexistent/flatnet-ca.pem' && !err.message.includes(SECRET),
    )
    const ca = `${server.dir}/ca.pem`
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMA==\n-----END CERTIFICATE-----\n')
    const c = client(`rediss://127.0.0.1:1?ca=${ca}`, { lazy: true }) as Redis
    assert.ok(Buffer.isBuffer(c.options.tls?.ca))
  })

  it('throws ERR_REDIS_URL before creating a client', () => {
    assert.throws(() => connectRedis(`redis://fn:${SECRET}@h:x`), (err: unknown) => err instanceof InvalidRedisUrlError && !err.message.includes(SECRET))
  })
})
