/**
 * The local API over a real unix socket, driven by the real client: routes, errors as
 * `{code, message}`, the body limit, socket permissions, a live or stale agent on the socket,
 * stop closing connections, and the client's unreachable cases.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { InvalidArgumentError } from '@flatnet/core'
import { NotFoundError } from '@flatnet/store'
import {
  AgentAlreadyRunningError,
  AgentClient,
  AgentListenError,
  AgentRequestError,
  AgentUnreachableError,
  createLocalApi,
  RouteTable,
  silentApiLog,
  type ApiLog,
  type ApiRoutes,
  type LocalApi,
  withPrivateUmask,
} from '../src/index.js'

const tmp = mkdtempSync(join(tmpdir(), 'fn-api-'))
const started: LocalApi[] = []
let n = 0
const sockPath = (): string => join(tmp, `a${++n}`, 'agent.sock')

after(async () => {
  for (const api of started) await api.stop()
  rmSync(tmp, { recursive: true, force: true })
})

async function startApi(routes: ApiRoutes, opts: { socketPath?: string; log?: ApiLog; maxBodyBytes?: number } = {}): Promise<{ api: LocalApi; client: AgentClient }> {
  const socketPath = opts.socketPath ?? sockPath()
  const api = createLocalApi({ socketPath, routes, log: opts.log ?? silentApiLog, options: opts.maxBodyBytes ? { maxBodyBytes: opts.maxBodyBytes } : {} })
  await api.start()
  started.push(api)
  return { api, client: new AgentClient({ socketPath, timeoutMs: 3_000 }) }
}

/** A logger that keeps what it is given, to check what the API logs. */
function capturingLog(): ApiLog & { lines: { level: string; obj: Record<string, unknown>; msg: string }[] } {
  const lines: { level: string; obj: Record<string, unknown>; msg: string }[] = []
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => void lines.push({ level, obj, msg })
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

async function rejectsWith<T extends Error>(p: Promise<unknown>, cls: new (...args: never[]) => T): Promise<T> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${(err as Error)?.constructor?.name}: ${(err as Error)?.message}`)
    return err
  }
  assert.fail(`expected ${cls.name}, but it resolved`)
}

/** A raw request, for what the client never sends (malformed JSON). */
function rawRequest(socketPath: string, method: string, path: string, body: string): Promise<{ status: number; json: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { 'content-type': 'application/json' } }, (res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

describe('local API', () => {
  it('answers GET, POST and DELETE routes with JSON: path params, query and body reach the handler', async () => {
    const workloads = new Map<string, unknown>()
    const { client } = await startApi({
      'GET /v1/status': (req) => ({ ok: true, verbose: req.query.get('verbose') === '1' }),
      'POST /v1/workloads': (req) => {
        const b = req.body as { id: string; ns: string }
        workloads.set(b.id, b)
        return { created: b.id }
      },
      'DELETE /v1/workloads/:id': (req) => {
        workloads.delete(req.params.id as string)
        return undefined
      },
      'GET /v1/workloads/:id': async (req) => workloads.get(req.params.id as string) ?? { missing: req.params.id },
    })
    assert.deepEqual(await client.get('/v1/status?verbose=1'), { ok: true, verbose: true })
    assert.deepEqual(await client.post('/v1/workloads', { id: 'c/1', ns: 'shop' }), { created: 'c/1' })
    assert.deepEqual(await client.get(`/v1/workloads/${encodeURIComponent('c/1')}`), { id: 'c/1', ns: 'shop' })
    assert.equal(await client.delete(`/v1/workloads/${encodeURIComponent('c/1')}`), undefined, 'an empty answer (204) is undefined')
    assert.equal(workloads.size, 0)
  })

  it('creates the socket mode 0600 and its missing directory mode 0700', async () => {
    const socketPath = join(tmp, 'deep', 'er', 'agent.sock')
    await startApi({ 'GET /v1/status': () => ({}) }, { socketPath })
    assert.ok(statSync(socketPath).isSocket())
    assert.equal(statSync(socketPath).mode & 0o777, 0o600)
    assert.equal(statSync(dirname(socketPath)).mode & 0o777, 0o700)
  })

  it('lets no other user connect, even through an open directory', { skip: process.getuid?.() !== 0 ? 'needs root to run a client as nobody' : false }, async () => {
    const dir = join(tmp, 'open')
    mkdirSync(dir, { mode: 0o755 })
    chmodSync(tmp, 0o755)
    const socketPath = join(dir, 'agent.sock')
    // As if the agent ran with a permissive umask (systemd UMask=0000): the socket must still be private.
    const umask = process.umask(0)
    try {
      await startApi({ 'GET /v1/status': () => ({}) }, { socketPath })
    } finally {
      process.umask(umask)
    }
    const child = spawn(process.execPath, ['-e', `require('net').connect(${JSON.stringify(socketPath)}).on('connect', () => { console.log('connected'); process.exit(0) }).on('error', (e) => { console.log(e.code); process.exit(0) })`], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] })
    let said = ''
    child.stdout.on('data', (c: Buffer) => (said += c.toString()))
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => (child.kill('SIGKILL'), reject(new Error('the client as nobody did not finish within 5 s'))), 5_000)
      child.once('exit', () => (clearTimeout(t), resolve(undefined)))
    })
    assert.equal(said.trim(), 'EACCES')
  })

  it('binds under a umask that keeps the socket private from its first moment', () => {
    const file = join(tmp, 'umask-probe')
    withPrivateUmask(() => writeFileSync(file, '', { mode: 0o666 }))
    assert.equal(statSync(file).mode & 0o777, 0o600)
    writeFileSync(join(tmp, 'umask-after'), '', { mode: 0o666 })
    assert.notEqual(statSync(join(tmp, 'umask-after')).mode & 0o077, 0, 'the previous umask is restored')
  })

  it("answers a handler's FlatnetError as {code, message} with its status, and the client raises it with the agent's code", async () => {
    const log = capturingLog()
    const { client } = await startApi(
      {
        'POST /v1/workloads': () => {
          throw new InvalidArgumentError('workload needs a namespace')
        },
        'GET /v1/workloads/:id': (req) => {
          throw new NotFoundError(`workload ${req.params.id}`)
        },
        'GET /v1/boom': () => {
          throw new TypeError('cannot read properties of undefined')
        },
      },
      { log },
    )
    const bad = await rejectsWith(client.post('/v1/workloads', {}), AgentRequestError)
    assert.equal(bad.code, 'ERR_INVALID_ARGUMENT')
    assert.equal(bad.status, 400)
    assert.equal(bad.message, 'workload needs a namespace')
    assert.equal(bad.exitCode, 2)
    const missing = await rejectsWith(client.get('/v1/workloads/x'), AgentRequestError)
    assert.deepEqual([missing.code, missing.status, missing.message], ['ERR_NOT_FOUND', 404, 'workload x not found'])
    const bug = await rejectsWith(client.get('/v1/boom'), AgentRequestError)
    assert.equal(bug.code, 'ERR_API_INTERNAL')
    assert.equal(bug.status, 500)
    assert.doesNotMatch(bug.message, /cannot read properties/, 'internals stay in the log')
    const logged = log.lines.find((l) => l.level === 'error' && l.msg === 'API handler failed')
    assert.match(String((logged?.obj.err as Error | undefined)?.stack), /TypeError: cannot read properties of undefined/)
  })

  it('answers 404 for an unknown path and 405 naming the allowed methods for a known one', async () => {
    const { client } = await startApi({ 'GET /v1/status': () => ({}) })
    const nf = await rejectsWith(client.get('/v1/nothing'), AgentRequestError)
    assert.deepEqual([nf.code, nf.status], ['ERR_API_NOT_FOUND', 404])
    const na = await rejectsWith(client.post('/v1/status', {}), AgentRequestError)
    assert.deepEqual([na.code, na.status], ['ERR_API_METHOD_NOT_ALLOWED', 405])
    assert.match(na.message, /use GET/)
  })

  it('answers a body that is not JSON with 400 ERR_INVALID_ARGUMENT', async () => {
    const { api } = await startApi({ 'POST /v1/workloads': (req) => req.body })
    const r = await rawRequest(api.socketPath, 'POST', '/v1/workloads', '{"id": ')
    assert.equal(r.status, 400)
    assert.equal((r.json as { code: string }).code, 'ERR_INVALID_ARGUMENT')
  })

  it('refuses a body over the limit (default 1 MiB) with 413 without calling the handler, and keeps serving', async () => {
    let calls = 0
    const { client } = await startApi({ 'POST /v1/workloads': (req) => (calls++, { got: (req.body as string).length }) })
    const big = 'x'.repeat(1024 * 1024)
    const e = await rejectsWith(client.post('/v1/workloads', big), AgentRequestError)
    assert.deepEqual([e.code, e.status], ['ERR_API_REQUEST_TOO_LARGE', 413])
    assert.equal(calls, 0)
    const fits = 'x'.repeat(1024 * 1024 - 2)
    assert.deepEqual(await client.post('/v1/workloads', fits), { got: fits.length }, 'exactly 1 MiB of JSON is accepted')
  })

  it('refuses to start while another agent answers on the socket, and leaves that agent working', async () => {
    const { api, client } = await startApi({ 'GET /v1/status': () => ({ first: true }) })
    const second = createLocalApi({ socketPath: api.socketPath, routes: {}, log: silentApiLog })
    const e = await rejectsWith(second.start(), AgentAlreadyRunningError)
    assert.equal(e.code, 'ERR_AGENT_ALREADY_RUNNING')
    assert.match(e.message, new RegExp(api.socketPath))
    assert.deepEqual(await client.get('/v1/status'), { first: true })
  })

  it('replaces the socket left behind by an agent that was killed', async () => {
    const socketPath = sockPath()
    mkdirSync(dirname(socketPath), { recursive: true })
    // A real process listens and is SIGKILLed: nothing removes its socket file.
    const child = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'inherit'] })
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('the child did not listen within 5 s')), 5_000)
      child.stdout.once('data', () => (clearTimeout(t), resolve()))
    })
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGKILL')
    await exited
    assert.ok(statSync(socketPath).isSocket(), 'the killed process left its socket')
    const log = capturingLog()
    const { client } = await startApi({ 'GET /v1/status': () => ({ replaced: true }) }, { socketPath, log })
    assert.deepEqual(await client.get('/v1/status'), { replaced: true })
    assert.ok(log.lines.some((l) => /stale API socket/.test(l.msg)))
  })

  it('refuses a socket path that is a regular file and leaves the file alone', async () => {
    const path = join(tmp, 'not-a-socket')
    writeFileSync(path, 'keep me')
    const e = await rejectsWith(createLocalApi({ socketPath: path, routes: {}, log: silentApiLog }).start(), AgentListenError)
    assert.match(e.message, /not a socket/)
    assert.equal(readFileSync(path, 'utf8'), 'keep me')
  })

  it('stop() closes open connections, even with a request in flight, and removes the socket', async () => {
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    const socketPath = sockPath()
    const api = createLocalApi({ socketPath, routes: { 'GET /v1/slow': async () => (await held, {}) }, log: silentApiLog })
    await api.start()
    const client = new AgentClient({ socketPath, timeoutMs: 5_000 })
    const inFlight = client.get('/v1/slow')
    await new Promise((r) => setTimeout(r, 100))
    const t0 = Date.now()
    await api.stop()
    assert.ok(Date.now() - t0 < 2_000, 'stop did not wait for the request')
    const e = await rejectsWith(inFlight, AgentUnreachableError)
    assert.match(e.message, /closed before the agent answered/)
    assert.equal(existsSync(socketPath), false)
    await api.stop()
    release()
  })

  it('rejects malformed and duplicate route keys at construction', () => {
    assert.throws(() => new RouteTable({ 'FETCH /v1/x': () => 1 }), InvalidArgumentError)
    assert.throws(() => new RouteTable({ 'GET v1/x': () => 1 }), InvalidArgumentError)
    assert.throws(() => new RouteTable({ 'GET /v1/:a': () => 1, 'GET /v1/:a ': () => 1 }), InvalidArgumentError)
  })
})

describe('agent client', () => {
  it('reports a missing socket as ERR_AGENT_UNREACHABLE naming the path and what to check', async () => {
    const path = join(tmp, 'nowhere', 'agent.sock')
    const e = await rejectsWith(new AgentClient({ socketPath: path }).get('/v1/status'), AgentUnreachableError)
    assert.equal(e.code, 'ERR_AGENT_UNREACHABLE')
    assert.equal(e.exitCode, 3)
    assert.match(e.message, new RegExp(`${path}: no such socket; is the agent running\\?`))
  })

  it('reports a socket nobody listens on as unreachable', async () => {
    const socketPath = sockPath()
    const api = createLocalApi({ socketPath, routes: {}, log: silentApiLog })
    await api.start()
    // Keep the file but close the listener under it: the state a crashed agent leaves.
    const copy = `${socketPath}.stale`
    renameSync(socketPath, copy)
    await api.stop()
    const e = await rejectsWith(new AgentClient({ socketPath: copy }).get('/v1/status'), AgentUnreachableError)
    assert.match(e.message, /nothing listens on it/)
  })

  it('gives up after timeoutMs when the agent does not answer', async () => {
    let release: () => void = () => {}
    const held = new Promise<void>((resolve) => (release = resolve))
    const { api } = await startApi({ 'GET /v1/slow': async () => (await held, {}) })
    const t0 = Date.now()
    const e = await rejectsWith(new AgentClient({ socketPath: api.socketPath, timeoutMs: 300 }).get('/v1/slow'), AgentUnreachableError)
    const took = Date.now() - t0
    assert.ok(took >= 250 && took < 3_000, `gave up after ${took} ms`)
    assert.match(e.message, /no answer within 300 ms to GET \/v1\/slow/)
    release()
  })

  it('@flatnet/agent/client loads nothing but node builtins and @flatnet/core', () => {
    // Walk the compiled import graph from the entry point the package exports as ./client.
    const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..')
    const pkg = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { exports: Record<string, { default: string }> }
    const entry = join(pkgDir, (pkg.exports['./client'] as { default: string }).default)
    const seen = new Set<string>()
    const external = new Set<string>()
    const visit = (file: string): void => {
      if (seen.has(file)) return
      seen.add(file)
      for (const m of readFileSync(file, 'utf8').matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
        const spec = (m[1] ?? m[2]) as string
        if (spec.startsWith('.')) visit(resolve(dirname(file), spec))
        else external.add(spec)
      }
    }
    visit(entry)
    assert.ok(seen.size >= 4, `followed ${seen.size} files`)
    assert.deepEqual([...external].filter((s) => !s.startsWith('node:') && s !== '@flatnet/core'), [])
  })
})
