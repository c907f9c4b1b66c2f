/**
 * A Kubernetes API server for the syncer's tests, speaking the real wire protocol over HTTPS
 * with bearer tokens, from recorded API objects:
 *
 *   - list: `limit` + `continue` pages served from one snapshot, `metadata.resourceVersion`;
 *     items without apiVersion/kind, as the API server sends built-in types; an expired continue
 *     token answers 410 `Expired`;
 *   - watch (`watch=1`): a chunked response of JSON lines, ADDED/MODIFIED/DELETED from the
 *     requested resourceVersion on, BOOKMARK when asked (`allowWatchBookmarks`), ERROR with a 410
 *     Status when the resourceVersion is older than the compacted history ("too old resource
 *     version"), `timeoutSeconds` honoured;
 *   - coordination.k8s.io/v1 Leases: GET, POST (409 AlreadyExists), PUT (409 Conflict when
 *     metadata.resourceVersion is not the current one);
 *   - one resourceVersion counter for everything, as etcd's revision.
 *
 * Test controls: change objects (each change is a watch event), compact the history, end watches
 * cleanly or drop their connections, cut one client off (its token), make a resource unserved
 * (a CRD not installed).
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:https'
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

type Json = Record<string, unknown>

export interface FakeResource {
  readonly name: string
  readonly path: string
  readonly apiVersion: string
  readonly kind: string
  readonly namespaced: boolean
  /** CRD objects keep apiVersion/kind in list items; built-in types do not. */
  readonly crd: boolean
}

export const FAKE_RESOURCES: readonly FakeResource[] = [
  { name: 'namespaces', path: '/api/v1/namespaces', apiVersion: 'v1', kind: 'Namespace', namespaced: false, crd: false },
  { name: 'pods', path: '/api/v1/pods', apiVersion: 'v1', kind: 'Pod', namespaced: true, crd: false },
  { name: 'networkpolicies', path: '/apis/networking.k8s.io/v1/networkpolicies', apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', namespaced: true, crd: false },
  {
    name: 'clusternetworkpolicies',
    path: '/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies',
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    namespaced: false,
    crd: true,
  },
]

const LEASES = /^\/apis\/coordination\.k8s\.io\/v1\/namespaces\/([^/]+)\/leases(?:\/([^/]+))?$/

interface WatchEvent {
  readonly resource: string
  readonly type: 'ADDED' | 'MODIFIED' | 'DELETED'
  readonly object: Json
  readonly rv: number
}

interface OpenWatch {
  readonly resource: FakeResource
  readonly res: ServerResponse
  readonly socket: Socket
  readonly token: string
  readonly bookmarks: boolean
  timer: NodeJS.Timeout | undefined
}

export interface RecordedRequest {
  readonly method: string
  readonly path: string
  readonly query: URLSearchParams
  readonly token: string
}

const clone = <T>(v: T): T => structuredClone(v)

function status(code: number, reason: string, message: string): Json {
  return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code }
}

function keyOf(resource: FakeResource, o: Json): string {
  const m = o.metadata as Json
  return resource.namespaced ? `${m.namespace as string}/${m.name as string}` : (m.name as string)
}

export class FakeApiServer {
  /** Bearer tokens accepted. */
  readonly tokens = new Set<string>()
  readonly requests: RecordedRequest[] = []
  private readonly objects = new Map<string, Map<string, Json>>(FAKE_RESOURCES.map((r) => [r.name, new Map()]))
  private readonly history: WatchEvent[] = []
  private readonly leases = new Map<string, Json>()
  private readonly watches = new Set<OpenWatch>()
  private readonly snapshots = new Map<string, { rv: number; items: Json[] }>()
  private readonly unserved = new Set<string>()
  private readonly blocked = new Set<string>()
  private readonly sockets = new Set<Socket>()
  private rv = 1000
  private compactedRv = 0
  private snapshotSeq = 0
  private expireNextContinue: string | undefined
  private leaseConflicts = 0
  private stalled = false
  private server: Server | undefined
  private dir: string | undefined
  /** The CA certificate (PEM) clients must trust. */
  ca = ''
  url = ''

  async start(): Promise<void> {
    this.dir = mkdtempSync(join(tmpdir(), 'fn-fake-kube-'))
    const key = join(this.dir, 'key.pem')
    const cert = join(this.dir, 'cert.pem')
    execFileSync(
      'openssl',
      ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=fake-kube-apiserver', '-addext', 'subjectAltName=IP:127.0.0.1'],
      { stdio: 'ignore', timeout: 10_000 },
    )
    this.ca = readFileSync(cert, 'utf8')
    const server = createServer({ key: readFileSync(key), cert: this.ca }, (req, res) => this.handle(req, res))
    server.on('connection', (s: Socket) => {
      this.sockets.add(s)
      s.on('close', () => this.sockets.delete(s))
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()))
    this.server = server
    this.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  }

  async stop(): Promise<void> {
    for (const w of this.watches) this.endWatch(w, 'drop')
    for (const s of this.sockets) s.destroy()
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
    if (this.dir) rmSync(this.dir, { recursive: true, force: true })
  }

  /** A kubeconfig (YAML is JSON) for this server and one of its tokens. */
  kubeconfig(token: string, namespace = 'default'): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [{ name: 'fake', cluster: { server: this.url, 'certificate-authority-data': Buffer.from(this.ca).toString('base64') } }],
      users: [{ name: 'syncer', user: { token } }],
      contexts: [{ name: 'fake', context: { cluster: 'fake', user: 'syncer', namespace } }],
      'current-context': 'fake',
    })
  }

  get resourceVersion(): number {
    return this.rv
  }

  // ---- test controls ----------------------------------------------------------------------

  private resource(name: string): FakeResource {
    const r = FAKE_RESOURCES.find((x) => x.name === name)
    if (!r) throw new Error(`no resource ${name}`)
    return r
  }

  /** Loads a recorded list (e.g. `kubectl get --raw /api/v1/pods`) without watch events. */
  load(name: string, list: { items: Json[] }): void {
    const r = this.resource(name)
    for (const item of list.items) {
      const o = clone(item)
      const rv = Number((o.metadata as Json).resourceVersion)
      if (rv > this.rv) this.rv = rv
      this.objects.get(name)!.set(keyOf(r, o), o)
    }
  }

  /** Creates or replaces an object; a watch event for every watcher. Returns its resourceVersion. */
  put(name: string, object: Json): number {
    const r = this.resource(name)
    const o = clone(object)
    const key = keyOf(r, o)
    const map = this.objects.get(name)!
    const type = map.has(key) ? 'MODIFIED' : 'ADDED'
    const rv = ++this.rv
    ;(o.metadata as Json).resourceVersion = String(rv)
    map.set(key, o)
    this.publish({ resource: name, type, object: o, rv })
    return rv
  }

  /** Deletes an object (namespace/name or name); a DELETED event. */
  remove(name: string, key: string): number {
    const map = this.objects.get(name)!
    const o = map.get(key)
    if (!o) throw new Error(`no ${name} ${key}`)
    map.delete(key)
    const rv = ++this.rv
    const gone = clone(o)
    ;(gone.metadata as Json).resourceVersion = String(rv)
    this.publish({ resource: name, type: 'DELETED', object: gone, rv })
    return rv
  }

  get(name: string, key: string): Json | undefined {
    return clone(this.objects.get(name)!.get(key))
  }

  /** Forgets the history up to now: a watch from an older resourceVersion gets 410 Gone. */
  compact(): void {
    this.compactedRv = this.rv
    this.history.length = 0
  }

  /** Sends a BOOKMARK at the current resourceVersion to every watcher that asked for them. */
  bookmark(): number {
    for (const w of this.watches) {
      if (!w.bookmarks) continue
      const object: Json = { kind: w.resource.kind, apiVersion: w.resource.apiVersion, metadata: { resourceVersion: String(this.rv), creationTimestamp: null } }
      if (w.resource.kind === 'Pod') Object.assign(object, { spec: { containers: null }, status: {} })
      w.res.write(`${JSON.stringify({ type: 'BOOKMARK', object })}\n`)
    }
    return this.rv
  }

  /** Ends watches: `close` ends the response cleanly, `drop` cuts the connection, `expire` sends ERROR 410 first. */
  endWatches(how: 'close' | 'drop' | 'expire', resource?: string): number {
    let n = 0
    for (const w of [...this.watches]) {
      if (resource && w.resource.name !== resource) continue
      this.endWatch(w, how)
      n++
    }
    return n
  }

  watchCount(resource?: string): number {
    return [...this.watches].filter((w) => !resource || w.resource.name === resource).length
  }

  /** Every list snapshot taken so far becomes too old: continuing one answers 410 Expired. */
  expireContinueTokens(): void {
    this.snapshots.clear()
  }

  /** The next request that continues a list of `resource` finds its snapshot compacted away (410 Expired). */
  expireNextContinueToken(resource: string): void {
    this.expireNextContinue = resource
  }

  /** A resource no longer (or again) served: 404, as when its CRD is not installed. */
  setServed(name: string, served: boolean): void {
    if (served) this.unserved.delete(name)
    else this.unserved.add(name)
  }

  /** Cuts off (or lets back) the client with this token: its requests and watches are dropped. */
  setBlocked(token: string, blocked: boolean): void {
    if (!blocked) return void this.blocked.delete(token)
    this.blocked.add(token)
    for (const w of [...this.watches]) if (w.token === token) this.endWatch(w, 'drop')
  }

  /**
   * Watches opened from now on get their headers and then nothing, ever, and are not ended by
   * their timeoutSeconds: a connection that died without a FIN (a NAT or firewall dropped it).
   */
  stallWatches(stalled: boolean): void {
    this.stalled = stalled
  }

  /** The next `n` Lease PUTs find the Lease changed by someone else (409 Conflict). */
  conflictLeasePuts(n: number): void {
    this.leaseConflicts = n
  }

  lease(namespace: string, name: string): Json | undefined {
    return clone(this.leases.get(`${namespace}/${name}`))
  }

  // ---- protocol -----------------------------------------------------------------------------

  private publish(e: WatchEvent): void {
    this.history.push(e)
    for (const w of this.watches) if (w.resource.name === e.resource) this.send(w, e)
  }

  private send(w: OpenWatch, e: WatchEvent): void {
    const object = { ...clone(e.object), apiVersion: w.resource.apiVersion, kind: w.resource.kind }
    w.res.write(`${JSON.stringify({ type: e.type, object })}\n`)
  }

  private endWatch(w: OpenWatch, how: 'close' | 'drop' | 'expire'): void {
    this.watches.delete(w)
    clearTimeout(w.timer)
    if (how === 'drop') {
      w.socket.destroy()
      return
    }
    if (how === 'expire') w.res.write(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', 'too old resource version: 1 (2)') })}\n`)
    w.res.end()
  }

  private reply(res: ServerResponse, code: number, body: Json): void {
    const text = JSON.stringify(body)
    res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'https://fake')
    const auth = req.headers.authorization ?? ''
    const token = auth.startsWith('Bearer ') ? auth.slice(7) : ''
    this.requests.push({ method: req.method ?? '', path: url.pathname, query: url.searchParams, token })
    if (this.blocked.has(token)) return void req.socket.destroy()
    if (!this.tokens.has(token)) return this.reply(res, 401, status(401, 'Unauthorized', 'Unauthorized'))
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => {
      try {
        this.route(req.method ?? 'GET', url, body, token, req, res)
      } catch (err) {
        this.reply(res, 500, status(500, 'InternalError', (err as Error).message))
      }
    })
  }

  private route(method: string, url: URL, body: string, token: string, req: IncomingMessage, res: ServerResponse): void {
    const lease = LEASES.exec(url.pathname)
    if (lease) return this.leaseRequest(method, decodeURIComponent(lease[1]!), lease[2] ? decodeURIComponent(lease[2]) : undefined, body, res)
    const resource = FAKE_RESOURCES.find((r) => r.path === url.pathname)
    if (!resource || this.unserved.has(resource.name)) return this.reply(res, 404, status(404, 'NotFound', 'the server could not find the requested resource'))
    if (method !== 'GET') return this.reply(res, 405, status(405, 'MethodNotAllowed', `${method} is not supported here`))
    const watch = url.searchParams.get('watch')
    if (watch === '1' || watch === 'true') return this.watch(resource, url.searchParams, token, req, res)
    this.list(resource, url.searchParams, res)
  }

  private list(resource: FakeResource, q: URLSearchParams, res: ServerResponse): void {
    const limit = Number(q.get('limit') ?? '0')
    const cont = q.get('continue') ?? ''
    let snapshot: { rv: number; items: Json[] }
    let offset = 0
    let id: string
    if (cont && this.expireNextContinue === resource.name) {
      this.expireNextContinue = undefined
      this.snapshots.clear()
    }
    if (cont) {
      const [sid, off] = Buffer.from(cont, 'base64url').toString().split(':')
      const found = this.snapshots.get(sid ?? '')
      if (!found) {
        return this.reply(res, 410, status(410, 'Expired', 'The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.'))
      }
      snapshot = found
      offset = Number(off)
      id = sid!
    } else {
      const items = [...this.objects.get(resource.name)!.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, o]) => clone(o))
      snapshot = { rv: this.rv, items }
      id = String(++this.snapshotSeq)
      this.snapshots.set(id, snapshot)
    }
    const page = limit > 0 ? snapshot.items.slice(offset, offset + limit) : snapshot.items.slice(offset)
    const next = offset + page.length
    const metadata: Json = { resourceVersion: String(snapshot.rv) }
    if (next < snapshot.items.length) metadata.continue = Buffer.from(`${id}:${next}`).toString('base64url')
    const items = page.map((o) => {
      if (resource.crd) return { ...o, apiVersion: resource.apiVersion, kind: resource.kind }
      const rest = { ...o }
      delete rest.apiVersion
      delete rest.kind
      return rest
    })
    this.reply(res, 200, { kind: `${resource.kind}List`, apiVersion: resource.apiVersion, metadata, items })
  }

  private watch(resource: FakeResource, q: URLSearchParams, token: string, req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' })
    res.flushHeaders()
    const from = q.get('resourceVersion') ?? ''
    if (from !== '' && from !== '0' && Number(from) < this.compactedRv) {
      res.end(`${JSON.stringify({ type: 'ERROR', object: status(410, 'Expired', `too old resource version: ${from} (${this.compactedRv})`) })}\n`)
      return
    }
    if (this.stalled) {
      res.on('close', () => undefined)
      return
    }
    const w: OpenWatch = { resource, res, socket: req.socket, token, bookmarks: q.get('allowWatchBookmarks') === 'true', timer: undefined }
    this.watches.add(w)
    res.on('close', () => {
      this.watches.delete(w)
      clearTimeout(w.timer)
    })
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? '0')
    if (timeoutSeconds > 0) w.timer = setTimeout(() => this.endWatch(w, 'close'), timeoutSeconds * 1000)
    if (from === '' || from === '0') {
      for (const o of this.objects.get(resource.name)!.values()) this.send(w, { resource: resource.name, type: 'ADDED', object: o, rv: this.rv })
    } else {
      for (const e of this.history) if (e.resource === resource.name && e.rv > Number(from)) this.send(w, e)
    }
  }

  private leaseRequest(method: string, namespace: string, name: string | undefined, body: string, res: ServerResponse): void {
    if (method === 'POST' && name === undefined) {
      const lease = JSON.parse(body) as Json
      const n = (lease.metadata as Json).name as string
      const key = `${namespace}/${n}`
      if (this.leases.has(key)) return this.reply(res, 409, status(409, 'AlreadyExists', `leases.coordination.k8s.io "${n}" already exists`))
      const stored = { ...lease, apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { ...(lease.metadata as Json), namespace, uid: `lease-${n}`, resourceVersion: String(++this.rv), creationTimestamp: new Date().toISOString() } }
      this.leases.set(key, stored)
      return this.reply(res, 201, stored)
    }
    if (name === undefined) return this.reply(res, 405, status(405, 'MethodNotAllowed', `${method} on the lease collection`))
    const key = `${namespace}/${name}`
    const current = this.leases.get(key)
    if (method === 'GET') {
      if (!current) return this.reply(res, 404, status(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`))
      return this.reply(res, 200, current)
    }
    if (method === 'PUT') {
      if (!current) return this.reply(res, 404, status(404, 'NotFound', `leases.coordination.k8s.io "${name}" not found`))
      const lease = JSON.parse(body) as Json
      const meta = lease.metadata as Json
      if (this.leaseConflicts > 0) {
        this.leaseConflicts--
        ;(current.metadata as Json).resourceVersion = String(++this.rv)
      }
      if (meta.resourceVersion !== (current.metadata as Json).resourceVersion) {
        return this.reply(res, 409, status(409, 'Conflict', `Operation cannot be fulfilled on leases.coordination.k8s.io "${name}": the object has been modified; please apply your changes to the latest version and try again`))
      }
      const stored = { ...lease, metadata: { ...(current.metadata as Json), resourceVersion: String(++this.rv) } }
      this.leases.set(key, stored)
      return this.reply(res, 200, stored)
    }
    this.reply(res, 405, status(405, 'MethodNotAllowed', `${method} on a lease`))
  }
}

/** The recorded lists in test/fixtures. */
export function fixture(name: string): { items: Json[] } {
  return JSON.parse(readFileSync(new URL(`../../test/fixtures/${name}.json`, import.meta.url), 'utf8')) as { items: Json[] }
}
