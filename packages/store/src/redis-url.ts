/**
 * flatnet's Redis URLs, parsed into ioredis options, and the client built from them.
 *
 *   redis://[user[:password]@]host[:port][/db]
 *   rediss://[user[:password]@]host[:port][/db][?ca=/path/ca.pem&insecure=1]
 *   unix://[user[:password]@]/path/to/redis.sock[?db=N]          (also redis+unix://)
 *   redis-sentinel://[user[:password]@]h1[:p1],h2[:p2],.../<masterName>[?db=N&sentinelPassword=...]
 *   redis-cluster://[user[:password]@]h1[:p1],h2[:p2],...
 *
 * The credentials end at the last `@` of the URL, so a password may hold any character, `@`
 * `/` `?` `#` included, encoded or not; in exchange an `@` in a path or query value must be
 * written `%40`. Credentials go into the ioredis options and nowhere else: error messages and
 * `display` carry `***` in their place, because both end up in logs.
 */
import { readFileSync } from 'node:fs'
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis'
import { InputReadError, InvalidRedisUrlError } from '@flatnet/core'

export type RedisMode = 'standalone' | 'sentinel' | 'cluster'

export interface RedisHostPort {
  readonly host: string
  readonly port: number
}

/** TLS settings of a `rediss://` URL. The CA file is read when connecting, not when parsing. */
export interface RedisTlsSettings {
  readonly caFile?: string
  /** `?insecure=1`: do not verify the server certificate. */
  readonly insecure: boolean
}

interface ParsedCommon {
  /** The URL in normal form with every secret replaced by `***`: the one to log. */
  readonly display: string
}

export interface StandaloneRedisUrl extends ParsedCommon {
  readonly mode: 'standalone'
  /** host/port or path, db, username, password; `tls` for rediss:// (without the CA, see `tls`). */
  readonly options: RedisOptions
  readonly tls?: RedisTlsSettings
}

export interface SentinelRedisUrl extends ParsedCommon {
  readonly mode: 'sentinel'
  /** sentinels, name (the master group), db, username, password, sentinelUsername, sentinelPassword. */
  readonly options: RedisOptions
}

export interface ClusterRedisUrl extends ParsedCommon {
  readonly mode: 'cluster'
  /** Seed nodes; the client learns the rest of the cluster from them. */
  readonly nodes: readonly RedisHostPort[]
  /** Options for the connection to every node: username, password. */
  readonly options: RedisOptions
}

export type ParsedRedisUrl = StandaloneRedisUrl | SentinelRedisUrl | ClusterRedisUrl

const DEFAULT_PORT = Object.freeze({ redis: 6379, sentinel: 26379 })

const SCHEMES = ['redis', 'rediss', 'unix', 'redis+unix', 'redis-sentinel', 'redis-cluster'] as const
type Scheme = (typeof SCHEMES)[number]

/** Query parameters each scheme accepts; anything else is refused, so that a typo is not silently ignored. */
const QUERY_KEYS: Record<Scheme, readonly string[]> = {
  redis: [],
  rediss: ['ca', 'insecure'],
  unix: ['db'],
  'redis+unix': ['db'],
  'redis-sentinel': ['db', 'sentinelUsername', 'sentinelPassword'],
  'redis-cluster': [],
}

const SECRET_QUERY_VALUE = /([?&][^=&#]*pass[^=&#]*=)[^&#]*/gi

/**
 * The URL with the password of its credentials and every password-like query value replaced by
 * `***`; the user name is kept. Works on any string, valid URL or not, and errs on the side of
 * hiding too much.
 */
export function redactUrl(url: string): string {
  const hidden = new Array<boolean>(url.length).fill(false)
  const hide = (from: number, to: number): void => {
    for (let i = from; i < to; i++) hidden[i] = true
  }
  const start = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(url)?.[0].length ?? 0
  const at = url.lastIndexOf('@')
  if (at >= start) {
    const colon = url.indexOf(':', start)
    if (colon >= 0 && colon < at) hide(colon + 1, at)
  }
  // Any query key naming a password, not only the ones we know: this runs on invalid URLs too.
  for (const m of url.matchAll(SECRET_QUERY_VALUE)) hide(m.index + m[1]!.length, m.index + m[0].length)
  // Both rules over the original text, hiding what either hides: when a URL is ambiguous (an
  // "@" in a password-like query value), neither reading can expose the secret.
  let out = ''
  for (let i = 0; i < url.length; i++) {
    if (!hidden[i]) out += url[i]
    else if (i === 0 || !hidden[i - 1]) out += '***'
  }
  return out
}

/** Parses a flatnet Redis URL; throws InvalidRedisUrlError (which never shows the password). */
export function parseRedisUrl(url: string): ParsedRedisUrl {
  const fail = (reason: string): never => {
    throw new InvalidRedisUrlError(redactUrl(url), reason)
  }
  // A trailing newline from a file or an env var is a mistake nobody means.
  const text = url.trim()
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([\s\S]*)$/.exec(text)
  if (!m) return fail(`expected scheme://..., one of ${SCHEMES.map((s) => `${s}://`).join(', ')}`)
  const scheme = m[1]!.toLowerCase()
  if (!isScheme(scheme)) return fail(`unsupported scheme "${scheme}://"; flatnet reads ${SCHEMES.map((s) => `${s}://`).join(', ')}`)

  let rest = m[2]!
  const secretKey = /[?&][^=&#]*pass[^=&#]*=/i.exec(rest)
  if (secretKey && rest.indexOf('@', secretKey.index) >= 0) {
    // Either the password holds "?...pass...=" or a query value holds "@": with both, where the
    // credentials end is a guess, and a wrong guess would print part of a secret.
    return fail('cannot tell where the credentials end: write "@" in query values, and "?" in passwords, as %40 and %3F')
  }
  let username: string | undefined
  let password: string | undefined
  const at = rest.lastIndexOf('@')
  if (at >= 0) {
    const userinfo = rest.slice(0, at)
    rest = rest.slice(at + 1)
    const colon = userinfo.indexOf(':')
    const rawUser = colon >= 0 ? userinfo.slice(0, colon) : userinfo
    const rawPassword = colon >= 0 ? userinfo.slice(colon + 1) : undefined
    const user = decode(rawUser)
    const pass = rawPassword === undefined ? '' : decode(rawPassword)
    if (user === undefined) return fail('the user name is not valid percent-encoding')
    if (pass === undefined) return fail('the password is not valid percent-encoding')
    if (user !== '') username = user
    if (rawPassword !== undefined && pass !== '') password = pass
    if (username === undefined && password === undefined) return fail('empty credentials before "@"')
  }
  if (/\s/.test(rest)) return fail('white space in the URL')
  if (rest.includes('#')) return fail('a fragment (#...) is not allowed')

  const q = rest.indexOf('?')
  const query = parseQuery(q >= 0 ? rest.slice(q + 1) : '', QUERY_KEYS[scheme], fail)
  rest = q >= 0 ? rest.slice(0, q) : rest
  const slash = rest.indexOf('/')
  const authority = slash >= 0 ? rest.slice(0, slash) : rest
  const path = slash >= 0 ? rest.slice(slash) : ''

  const credentials: RedisOptions = {}
  if (username !== undefined) credentials.username = username
  if (password !== undefined) credentials.password = password
  const shownCredentials = username === undefined && password === undefined ? '' : `${username === undefined ? '' : encodeURIComponent(username)}${password === undefined ? '' : ':***'}@`

  switch (scheme) {
    case 'unix':
    case 'redis+unix': {
      if (authority !== '') return fail(`a socket URL has no host: write ${scheme}:///absolute/path (three slashes), got host "${authority}"`)
      const socketPath = decode(path)
      if (socketPath === undefined) return fail('the socket path is not valid percent-encoding')
      if (socketPath === '' || socketPath === '/') return fail('missing socket path')
      const db = parseDb(query.get('db'), fail)
      const options: RedisOptions = { path: socketPath, ...credentials }
      if (db !== undefined) options.db = db
      const display = `${scheme}://${shownCredentials}${encodePath(socketPath)}${db === undefined ? '' : `?db=${db}`}`
      return { mode: 'standalone', options, display }
    }
    case 'redis':
    case 'rediss': {
      const hosts = parseHosts(authority, DEFAULT_PORT.redis, fail)
      if (hosts.length !== 1) return fail('several hosts: use redis-sentinel:// or redis-cluster:// for more than one')
      const { host, port } = hosts[0]!
      const db = path === '' || path === '/' ? undefined : parseDb(path.slice(1), fail)
      const options: RedisOptions = { host, port, ...credentials }
      if (db !== undefined) options.db = db
      let display = `${scheme}://${shownCredentials}${formatHost(host)}:${port}${db === undefined ? '' : `/${db}`}`
      if (scheme === 'redis') return { mode: 'standalone', options, display }
      const insecure = parseFlag(query.get('insecure'), 'insecure', fail)
      const caFile = query.get('ca')
      if (caFile === '') return fail('ca= needs the path of a PEM file')
      const tls: RedisTlsSettings = caFile === undefined ? { insecure } : { caFile, insecure }
      // The certificate names the host the user wrote, not the address it resolved to.
      options.tls = { rejectUnauthorized: !insecure, servername: host }
      const shownQuery = [caFile === undefined ? '' : `ca=${encodePath(caFile)}`, insecure ? 'insecure=1' : ''].filter((s) => s !== '')
      if (shownQuery.length > 0) display += `?${shownQuery.join('&')}`
      return { mode: 'standalone', options, tls, display }
    }
    case 'redis-sentinel': {
      const sentinels = parseHosts(authority, DEFAULT_PORT.sentinel, fail)
      const name = decode(path.slice(1))
      if (name === undefined || name === '') return fail('missing master name: redis-sentinel://host:port,.../<masterName>')
      if (!/^[A-Za-z0-9._-]+$/.test(name)) return fail(`master name "${name}" may only hold letters, digits, ".", "_" and "-"`)
      const db = parseDb(query.get('db'), fail)
      const options: RedisOptions = { sentinels: sentinels.map((s) => ({ ...s })), name, ...credentials }
      if (db !== undefined) options.db = db
      const sentinelUsername = query.get('sentinelUsername')
      const sentinelPassword = query.get('sentinelPassword')
      if (sentinelUsername) options.sentinelUsername = sentinelUsername
      if (sentinelPassword) options.sentinelPassword = sentinelPassword
      const shownQuery = [
        db === undefined ? '' : `db=${db}`,
        sentinelUsername ? `sentinelUsername=${encodeURIComponent(sentinelUsername)}` : '',
        sentinelPassword ? 'sentinelPassword=***' : '',
      ].filter((s) => s !== '')
      const display = `${scheme}://${shownCredentials}${sentinels.map(formatHostPort).join(',')}/${name}${shownQuery.length > 0 ? `?${shownQuery.join('&')}` : ''}`
      return { mode: 'sentinel', options, display }
    }
    case 'redis-cluster': {
      const nodes = parseHosts(authority, DEFAULT_PORT.redis, fail)
      if (path !== '' && path !== '/') return fail('a cluster has only database 0: remove the path')
      const display = `${scheme}://${shownCredentials}${nodes.map(formatHostPort).join(',')}`
      return { mode: 'cluster', nodes, options: credentials, display }
    }
  }
}

export interface RedisConnectOptions {
  /** Give up on one connection attempt after this long. */
  readonly connectTimeoutMs?: number
  /**
   * Reject a command not answered after this long. It covers blocking commands too (BLPOP,
   * XREAD BLOCK): those need a client of their own with a longer timeout.
   */
  readonly commandTimeoutMs?: number
  /** Connect on the first command instead of now. */
  readonly lazy?: boolean
  /**
   * How many reconnections a command waits through before it fails. Commands issued while
   * disconnected are queued; this bounds how long a caller can hang on an unreachable Redis.
   */
  readonly maxRetriesPerRequest?: number
  /** First reconnection delay; it doubles per attempt up to `retryMaxMs`. */
  readonly retryBaseMs?: number
  readonly retryMaxMs?: number
}

export const REDIS_CONNECT_DEFAULTS: Readonly<Required<RedisConnectOptions>> = Object.freeze({
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 5_000,
  lazy: false,
  maxRetriesPerRequest: 3,
  retryBaseMs: 100,
  retryMaxMs: 3_000,
})

/**
 * The ioredis client for a flatnet Redis URL: `Cluster` for redis-cluster://, `Redis` for the
 * rest. It reconnects forever with capped exponential backoff; each command is bounded by
 * `commandTimeoutMs` and `maxRetriesPerRequest`. No ioredis `keyPrefix`: it is not applied to
 * SCAN patterns nor to key names in replies, so keys are spelled out in full by the caller.
 * Throws InvalidRedisUrlError, or InputReadError when the `ca=` file cannot be read.
 */
export function connectRedis(url: string, opts: RedisConnectOptions = {}): Redis | Cluster {
  // An option given as undefined keeps its default.
  const o = { ...REDIS_CONNECT_DEFAULTS }
  for (const [k, v] of Object.entries(opts)) if (v !== undefined) Object.assign(o, { [k]: v })
  const parsed = parseRedisUrl(url)
  const retry = (attempt: number): number => backoffMs(attempt, o.retryBaseMs, o.retryMaxMs)
  const perConnection: RedisOptions = {
    connectTimeout: o.connectTimeoutMs,
    commandTimeout: o.commandTimeoutMs,
    maxRetriesPerRequest: o.maxRetriesPerRequest,
    // CLIENT SETINFO exists from Redis 7.2 on (Debian 12 ships 7.0): two failing round trips per
    // connection, and timers that outlive a disconnect.
    disableClientInfo: true,
    // After a failover the old primary may come back as a replica while we are still connected
    // to it: writes then fail with READONLY, and reconnecting finds the new primary.
    reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
  }
  if (parsed.mode === 'cluster') {
    const options: ClusterOptions = {
      clusterRetryStrategy: retry,
      enableOfflineQueue: true,
      lazyConnect: o.lazy,
      slotsRefreshTimeout: o.connectTimeoutMs,
      redisOptions: { ...parsed.options, ...perConnection },
    }
    return new Cluster(
      parsed.nodes.map((n) => ({ ...n })),
      options,
    )
  }
  const options: RedisOptions = {
    ...parsed.options,
    ...perConnection,
    retryStrategy: retry,
    enableOfflineQueue: true,
    lazyConnect: o.lazy,
  }
  if (parsed.mode === 'standalone' && parsed.tls?.caFile !== undefined) {
    options.tls = { ...parsed.options.tls, ca: readCa(parsed.tls.caFile) }
  }
  return new Redis(options)
}

/**
 * Capped exponential backoff with jitter: many flatnet nodes lose the same Redis at the same
 * moment, and should not all come back at the same moment.
 */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(attempt - 1, 0), 30))
  return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2)
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file)
  } catch (err) {
    throw new InputReadError(file, (err as Error).message)
  }
}

function isScheme(s: string): s is Scheme {
  return (SCHEMES as readonly string[]).includes(s)
}

function decode(s: string): string | undefined {
  try {
    return decodeURIComponent(s)
  } catch {
    return undefined
  }
}

function parseQuery(text: string, allowed: readonly string[], fail: (reason: string) => never): Map<string, string> {
  const out = new Map<string, string>()
  if (text === '') return out
  for (const part of text.split('&')) {
    if (part === '') continue
    const eq = part.indexOf('=')
    const key = decode(eq >= 0 ? part.slice(0, eq) : part)
    if (key === undefined) return fail('a query parameter name is not valid percent-encoding')
    if (!allowed.includes(key)) {
      const accepted = allowed.length > 0 ? `; accepted: ${allowed.join(', ')}` : '; this scheme takes none'
      return fail(`unknown query parameter "${key}"${accepted}`)
    }
    if (out.has(key)) return fail(`query parameter "${key}" given twice`)
    const value = decode(eq >= 0 ? part.slice(eq + 1) : '')
    if (value === undefined) return fail(`the value of query parameter "${key}" is not valid percent-encoding`)
    out.set(key, value)
  }
  return out
}

function parseHosts(authority: string, defaultPort: number, fail: (reason: string) => never): RedisHostPort[] {
  if (authority === '') return fail('missing host')
  return authority.split(',').map((item) => {
    if (item === '') return fail('empty host in the host list')
    let host: string
    let portText: string | undefined
    if (item.startsWith('[')) {
      const close = item.indexOf(']')
      if (close < 0) return fail(`unclosed "[" in host "${item}"`)
      host = item.slice(1, close)
      const after = item.slice(close + 1)
      if (after !== '' && !after.startsWith(':')) return fail(`unexpected "${after}" after IPv6 address`)
      portText = after === '' ? undefined : after.slice(1)
      if (!/^[0-9A-Fa-f:.]+$/.test(host) || !host.includes(':')) return fail(`"${host}" is not an IPv6 address`)
    } else {
      const colon = item.indexOf(':')
      host = colon >= 0 ? item.slice(0, colon) : item
      portText = colon >= 0 ? item.slice(colon + 1) : undefined
      if (host === '') return fail(`missing host before ":${portText}"`)
      if (!/^[A-Za-z0-9_.-]+$/.test(host)) return fail(`host "${host}" is not a host name or address (IPv6 addresses go in [brackets])`)
    }
    let port = defaultPort
    if (portText !== undefined) {
      if (!/^\d{1,5}$/.test(portText)) return fail(`port "${portText}" of host ${host} is not a number`)
      port = Number(portText)
      if (port < 1 || port > 65535) return fail(`port ${port} of host ${host} is out of range 1-65535`)
    }
    return { host, port }
  })
}

function parseDb(text: string | undefined, fail: (reason: string) => never): number | undefined {
  if (text === undefined) return undefined
  if (!/^\d{1,9}$/.test(text)) return fail(`database "${text}" is not a number`)
  return Number(text)
}

function parseFlag(text: string | undefined, name: string, fail: (reason: string) => never): boolean {
  if (text === undefined) return false
  if (text === '1' || text === 'true') return true
  if (text === '0' || text === 'false') return false
  return fail(`${name}= takes 1, 0, true or false, got "${text}"`)
}

function formatHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}

function formatHostPort(h: RedisHostPort): string {
  return `${formatHost(h.host)}:${h.port}`
}

/** Keeps "/" readable while encoding what would change the meaning of the URL. */
function encodePath(path: string): string {
  return path.split('/').map(encodeURIComponent).join('/')
}
