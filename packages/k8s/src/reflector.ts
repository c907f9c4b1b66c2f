/**
 * List, then watch, one Kubernetes resource, as client-go's reflector does:
 *
 *   list (limit/continue pages, one resourceVersion) ──> replace(all items)
 *   watch from that resourceVersion, bookmarks on ──> event(ADDED|MODIFIED|DELETED) per change
 *     │ BOOKMARK                        ──> only the resourceVersion moves
 *     │ the server ends the watch       ──> watch again from the last resourceVersion
 *     │ nothing at all for too long     ──> (a dead connection) the same
 *     │ 410 Gone (ERROR event or status) ──> the history is compacted past us: list again
 *     │ a continue token expired (410)  ──> the list starts over
 *     └ any other failure               ──> capped backoff, then resume (or list, if never listed)
 *
 * A resource served by a CRD that is not installed (404 on list) counts as "no objects", and is
 * listed again after `absentRetryMs`.
 */
import type { Logger } from 'pino'
import { K8sApiError } from './errors.js'
import { expectStatus, statusDetail, type KubeTransport } from './kube-transport.js'
import type { SyncerMetrics } from './metrics.js'
import type { K8sResource } from './resources.js'
import { backoffMs, sleep } from './sleep.js'

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED'

export interface ReflectorHandlers {
  /** Every object of the resource, from a complete list: it replaces whatever came before. */
  replace(items: readonly unknown[], resourceVersion: string): void
  /** One change, in the order the API server sent them. */
  event(type: WatchEventType, object: unknown): void
}

export interface ReflectorConfig {
  /** Items per list page (`limit`); the API server may send fewer. */
  readonly pageSize: number
  /** Asked of the server (`timeoutSeconds`): it ends each watch after this, and we watch again. */
  readonly watchTimeoutSeconds: number
  /** A watch silent (no event, no bookmark) for watchTimeoutSeconds plus this is taken for dead. */
  readonly idleGraceMs: number
  /** Timeout of one list page, and of the wait for a watch's response headers. */
  readonly requestTimeoutMs: number
  readonly retryMinMs: number
  readonly retryMaxMs: number
  /** How long to wait before listing an absent optional resource (CRD not installed) again. */
  readonly absentRetryMs: number
}

export const REFLECTOR_DEFAULTS: ReflectorConfig = Object.freeze({
  pageSize: 500,
  watchTimeoutSeconds: 300,
  idleGraceMs: 30_000,
  requestTimeoutMs: 30_000,
  retryMinMs: 250,
  retryMaxMs: 30_000,
  absentRetryMs: 60_000,
})

export interface ReflectorComponents {
  readonly transport: KubeTransport
  readonly resource: K8sResource
  readonly handlers: ReflectorHandlers
  readonly log: Logger
  readonly metrics: SyncerMetrics
}

type WatchEnd = { readonly end: 'expired' } | { readonly end: 'closed'; readonly progressed: boolean; readonly idle: boolean; readonly dropped: boolean }

export class Reflector {
  /** The last resourceVersion seen (list, event or bookmark); '' before the first list. */
  resourceVersion = ''
  /** Whether a complete list has been delivered. */
  listed = false
  readonly config: ReflectorConfig
  private readonly stopping = new AbortController()
  private loop: Promise<void> | undefined
  /** The last list found the resource not served (404). */
  private absent = false

  constructor(
    private readonly components: ReflectorComponents,
    options: Partial<ReflectorConfig> = {},
  ) {
    this.config = Object.freeze({ ...REFLECTOR_DEFAULTS, ...options })
  }

  private get resource(): K8sResource {
    return this.components.resource
  }

  get resourceName(): string {
    return this.components.resource.name
  }

  start(): void {
    this.loop ??= this.run()
  }

  /** Ends the watch in flight and the loop; no handler is called after this resolves. */
  async stop(): Promise<void> {
    this.stopping.abort()
    await this.loop
  }

  private async run(): Promise<void> {
    const { log, metrics } = this.components
    const labels = { resource: this.resource.name }
    let failures = 0
    let listReason = 'start'
    while (!this.stopping.signal.aborted) {
      try {
        if (this.resourceVersion === '') {
          const absent = await this.list(listReason)
          if (absent) {
            await sleep(this.config.absentRetryMs, this.stopping.signal)
            continue
          }
        }
        const result = await this.watch()
        if (this.stopping.signal.aborted) break
        if (result.end === 'expired') {
          log.info({ resource: this.resource.name, resourceVersion: this.resourceVersion }, 'watch history expired (410 Gone): listing again')
          this.resourceVersion = ''
          listReason = 'expired'
          failures = 0
          continue
        }
        metrics.watchRestarts.inc({ ...labels, reason: result.idle ? 'idle' : result.dropped ? 'dropped' : 'closed' })
        if (result.idle) log.warn({ resource: this.resource.name, resourceVersion: this.resourceVersion }, 'watch silent for too long: reconnecting')
        // A server that ends every watch at once must not make us spin.
        if (result.progressed || result.idle) failures = 0
        else await sleep(backoffMs(++failures, this.config.retryMinMs, this.config.retryMaxMs), this.stopping.signal)
      } catch (err) {
        if (this.stopping.signal.aborted) break
        failures++
        const retryInMs = backoffMs(failures, this.config.retryMinMs, this.config.retryMaxMs)
        metrics.apiErrors.inc(labels)
        if (this.resourceVersion !== '') metrics.watchRestarts.inc({ ...labels, reason: 'error' })
        log.warn({ resource: this.resource.name, err: (err as Error).message, retryInMs }, 'Kubernetes API request failed')
        await sleep(retryInMs, this.stopping.signal)
      }
    }
  }

  /** One complete list, page by page. Returns true when the resource is absent (optional, 404). */
  private async list(reason: string): Promise<boolean> {
    const { transport, handlers, metrics, log } = this.components
    const items: unknown[] = []
    let token = ''
    let resourceVersion = ''
    for (;;) {
      const query = new URLSearchParams({ limit: String(this.config.pageSize) })
      if (token) query.set('continue', token)
      const path = `${this.resource.path}?${query}`
      const response = await transport.request('GET', path, { timeoutMs: this.config.requestTimeoutMs, signal: this.stopping.signal })
      if (this.stopping.signal.aborted) return false
      if (response.status === 404 && this.resource.optional && !token) {
        if (!this.absent) log.info({ resource: this.resource.name }, 'resource not served (CRD not installed?): mirroring none, asking again later')
        this.absent = true
        metrics.lists.inc({ resource: this.resource.name, reason: 'absent' })
        handlers.replace([], '')
        this.listed = true
        return true
      }
      if (response.status === 410 && token) {
        // The snapshot the continue token points into was compacted: start the list over.
        log.info({ resource: this.resource.name }, 'list continue token expired (410 Gone): listing again from the start')
        metrics.lists.inc({ resource: this.resource.name, reason: 'continue-expired' })
        items.length = 0
        token = ''
        continue
      }
      const body = expectStatus('GET', path, response, [200]) as { items?: unknown; metadata?: { resourceVersion?: unknown; continue?: unknown } }
      if (!Array.isArray(body?.items)) throw new K8sApiError('GET', path, 200, '', 'the answer is not a list (no items)')
      items.push(...body.items)
      resourceVersion = typeof body.metadata?.resourceVersion === 'string' ? body.metadata.resourceVersion : ''
      token = typeof body.metadata?.continue === 'string' ? body.metadata.continue : ''
      if (!token) break
    }
    if (resourceVersion === '') throw new K8sApiError('GET', this.resource.path, 200, '', 'the list has no metadata.resourceVersion to watch from')
    metrics.lists.inc({ resource: this.resource.name, reason })
    this.absent = false
    log.info({ resource: this.resource.name, objects: items.length, resourceVersion }, 'listed')
    handlers.replace(items, resourceVersion)
    this.resourceVersion = resourceVersion
    this.listed = true
    return false
  }

  private async watch(): Promise<WatchEnd> {
    const { transport, handlers, metrics } = this.components
    const query = new URLSearchParams({
      watch: '1',
      allowWatchBookmarks: 'true',
      resourceVersion: this.resourceVersion,
      timeoutSeconds: String(this.config.watchTimeoutSeconds),
    })
    const path = `${this.resource.path}?${query}`
    const aborted = new AbortController()
    const onStop = (): void => aborted.abort()
    this.stopping.signal.addEventListener('abort', onStop, { once: true })
    let idle = false
    let idleTimer: NodeJS.Timeout | undefined
    const armIdle = (): void => {
      clearTimeout(idleTimer)
      idleTimer = setTimeout(() => {
        idle = true
        aborted.abort()
      }, this.config.watchTimeoutSeconds * 1000 + this.config.idleGraceMs)
    }
    let progressed = false
    try {
      const stream = await transport.stream(path, { signal: aborted.signal, timeoutMs: this.config.requestTimeoutMs })
      if (stream.status === 410) return { end: 'expired' }
      if (stream.status !== 200) {
        const { reason, message } = statusDetail(stream.errorBody, 'watch refused')
        throw new K8sApiError('GET', path, stream.status, reason, message)
      }
      armIdle()
      let dropped = false
      try {
        for await (const line of stream.lines) {
          if (this.stopping.signal.aborted) break
          armIdle()
          if (line.trim() === '') continue
          let event: { type?: unknown; object?: unknown }
          try {
            event = JSON.parse(line) as { type?: unknown; object?: unknown }
          } catch {
            throw new K8sApiError('GET', path, 200, '', `a watch event is not JSON: ${line.slice(0, 120)}`)
          }
          const type = event.type
          const object = event.object as { metadata?: { resourceVersion?: unknown } } | undefined
          if (type === 'ERROR') {
            const status = event.object as { code?: unknown; reason?: unknown; message?: unknown } | undefined
            if (status?.code === 410) return { end: 'expired' }
            const { reason, message } = statusDetail(status, 'error event')
            throw new K8sApiError('GET', path, typeof status?.code === 'number' ? status.code : 0, reason, message)
          }
          if (type !== 'ADDED' && type !== 'MODIFIED' && type !== 'DELETED' && type !== 'BOOKMARK') continue
          metrics.events.inc({ resource: this.resource.name, type })
          if (type !== 'BOOKMARK') {
            handlers.event(type, object)
            progressed = true
          }
          const rv = object?.metadata?.resourceVersion
          if (typeof rv === 'string' && rv !== '') this.resourceVersion = rv
        }
      } catch (err) {
        // What the server said (an ERROR event, a line that is not JSON) is an error; a
        // connection that broke is a dropped watch: resume from the last resourceVersion.
        if (err instanceof K8sApiError) throw err
        dropped = true
      } finally {
        stream.close()
      }
      return { end: 'closed', progressed, idle, dropped: dropped || (!idle && !stream.complete()) }
    } finally {
      clearTimeout(idleTimer)
      this.stopping.signal.removeEventListener('abort', onStop)
    }
  }
}
