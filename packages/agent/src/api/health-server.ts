/**
 * The agent's metrics and health endpoints on a local TCP address (default 127.0.0.1:9469;
 * an empty address disables the server):
 *
 *   GET /metrics   Prometheus text format, from the agent's own registry
 *   GET /healthz   200 "ok" while the process lives: the answer is served by the event loop
 *                  itself, so a blocked loop fails the probe by its timeout
 *   GET /readyz    200 "ok" when the readiness callback says ready, else 503 and one reason a line
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { AgentListenError } from './api-errors.js'
import type { ApiLog } from './api-log.js'
import { formatListenAddress, parseListenAddress, type ListenAddress } from './listen-address.js'
import type { AgentMetrics } from './metrics.js'

export interface Readiness {
  readonly ready: boolean
  /** Why not ready (empty when ready), e.g. "waiting for the first store sync". */
  readonly reasons: readonly string[]
}

export type ReadinessCheck = () => Readiness | Promise<Readiness>

export interface HealthServerConfig {
  /** `host:port`; empty disables the server. */
  readonly address: string
  /** A readiness callback that does not answer within this time counts as not ready. */
  readonly readinessTimeoutMs: number
}

export const HEALTH_DEFAULTS: HealthServerConfig = Object.freeze({
  address: '127.0.0.1:9469',
  readinessTimeoutMs: 2_000,
})

export interface HealthServerComponents {
  readonly metrics: AgentMetrics
  readonly readiness: ReadinessCheck
  readonly log: ApiLog
  readonly options?: Partial<HealthServerConfig>
}

export interface HealthServer {
  readonly config: HealthServerConfig
  /** False when the address is empty: start() and stop() then do nothing. */
  readonly enabled: boolean
  /** Where it listens once started (the real port when the configured one was 0). */
  readonly address: ListenAddress | undefined
  /** `http://host:port` once started. */
  readonly url: string | undefined
  start(): Promise<void>
  stop(): Promise<void>
}

export function createHealthServer(components: HealthServerComponents): HealthServer {
  return new LocalHealthServer(components)
}

class LocalHealthServer implements HealthServer {
  readonly config: HealthServerConfig
  private readonly listen: ListenAddress | undefined
  private server: Server | undefined
  private bound: ListenAddress | undefined

  constructor(private readonly components: HealthServerComponents) {
    this.config = Object.freeze({ ...HEALTH_DEFAULTS, ...components.options })
    // A bad address fails at construction, with the setting's name.
    this.listen = parseListenAddress(this.config.address, 'metrics address')
  }

  get enabled(): boolean {
    return this.listen !== undefined
  }

  get address(): ListenAddress | undefined {
    return this.bound
  }

  get url(): string | undefined {
    return this.bound ? `http://${formatListenAddress(this.bound)}` : undefined
  }

  async start(): Promise<void> {
    if (!this.listen || this.server) return
    const listen = this.listen
    const server = createServer((req, res) => void this.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => {
        const hint = err.code === 'EADDRINUSE' ? ' (the port is taken: another agent? set another metrics address, or an empty one to disable)' : ''
        reject(new AgentListenError(formatListenAddress(listen), `${err.message}${hint}`, err.code))
      })
      server.listen(listen.port, listen.host, () => resolve())
    })
    server.on('error', (err) => this.components.log.error({ err }, 'metrics/health server error'))
    const a = server.address() as AddressInfo
    this.bound = { host: a.address, port: a.port }
    this.server = server
    this.components.log.info({ address: formatListenAddress(this.bound) }, 'metrics and health endpoints listening')
  }

  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    this.bound = undefined
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    await closed
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://health').pathname
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'use GET\n', { allow: 'GET, HEAD' })
    try {
      switch (path) {
        case '/metrics':
          return send(res, 200, await this.components.metrics.text(), { 'content-type': this.components.metrics.contentType })
        case '/healthz':
          return send(res, 200, 'ok\n')
        case '/readyz': {
          const r = await this.readiness()
          return r.ready ? send(res, 200, 'ok\n') : send(res, 503, `not ready:\n${r.reasons.map((x) => `- ${x}\n`).join('')}`)
        }
        default:
          return send(res, 404, 'not found; try /metrics, /healthz or /readyz\n')
      }
    } catch (err) {
      this.components.log.error({ err, path }, 'metrics/health request failed')
      return send(res, 500, `internal error: ${(err as Error).message}\n`)
    }
  }

  private async readiness(): Promise<Readiness> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<Readiness>((resolve) => {
      timer = setTimeout(() => resolve({ ready: false, reasons: [`the readiness check did not answer within ${this.config.readinessTimeoutMs} ms`] }), this.config.readinessTimeoutMs)
    })
    try {
      const r = await Promise.race([Promise.resolve().then(() => this.components.readiness()), timeout])
      // A "not ready" without a reason would leave the operator guessing.
      return r.ready || r.reasons.length > 0 ? r : { ready: false, reasons: ['not ready (no reason given)'] }
    } catch (err) {
      return { ready: false, reasons: [`the readiness check failed: ${(err as Error).message}`] }
    } finally {
      clearTimeout(timer)
    }
  }
}

function send(res: ServerResponse, status: number, text: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', ...headers, 'content-length': Buffer.byteLength(text) }).end(res.req.method === 'HEAD' ? undefined : text)
}
