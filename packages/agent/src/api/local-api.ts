/**
 * The agent's local API: HTTP/1.1 with JSON bodies over a unix socket only root can open (mode
 * 0600). The CLI and the CNI plugin are its clients (agent-client.ts).
 *
 * A handler returns what to answer as JSON, or throws a FlatnetError, answered as
 * `{ "code": "ERR_...", "message": "..." }` with a 4xx/5xx status (error-status.ts). Anything
 * else a handler throws is a bug: it is logged with its stack and answered as ERR_API_INTERNAL
 * without details.
 */
import { chmodSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { FlatnetError, InvalidArgumentError, ValidationError } from '@flatnet/core'
import { AgentListenError, ApiInternalError, ApiMethodNotAllowedError, ApiRequestTooLargeError } from './api-errors.js'
import type { ApiLog } from './api-log.js'
import { httpStatusOf } from './error-status.js'
import { RouteTable, type ApiMethod, type ApiRoutes } from './routes.js'
import { claimSocketPath, withPrivateUmask } from './socket-file.js'

export interface LocalApiConfig {
  /** Larger request bodies are answered 413 (ERR_API_REQUEST_TOO_LARGE). */
  readonly maxBodyBytes: number
  /** How long to wait for an existing socket to accept a connection before calling its agent live. */
  readonly probeTimeoutMs: number
  /** A request (headers and body) must arrive within this time, or the connection is closed. */
  readonly requestTimeoutMs: number
}

export const LOCAL_API_DEFAULTS: LocalApiConfig = Object.freeze({
  maxBodyBytes: 1024 * 1024,
  probeTimeoutMs: 1_000,
  requestTimeoutMs: 30_000,
})

export interface LocalApiComponents {
  readonly socketPath: string
  readonly routes: ApiRoutes
  readonly log: ApiLog
  readonly options?: Partial<LocalApiConfig>
}

export interface LocalApi {
  readonly socketPath: string
  readonly config: LocalApiConfig
  /** Claims the socket (refusing if a live agent answers there) and listens. */
  start(): Promise<void>
  /** Stops listening, closes open connections, removes the socket. Safe to call twice. */
  stop(): Promise<void>
}

export interface ErrorBody {
  readonly code: string
  readonly message: string
  /** For ERR_VALIDATION: every issue (file, line, column, path, message). */
  readonly details?: unknown
}

export function createLocalApi(components: LocalApiComponents): LocalApi {
  return new UnixSocketApi(components)
}

class UnixSocketApi implements LocalApi {
  readonly socketPath: string
  readonly config: LocalApiConfig
  private readonly table: RouteTable
  private readonly log: ApiLog
  private server: Server | undefined

  constructor(components: LocalApiComponents) {
    this.socketPath = components.socketPath
    this.config = Object.freeze({ ...LOCAL_API_DEFAULTS, ...components.options })
    // Bad route keys fail here, at construction, not on the first request.
    this.table = new RouteTable(components.routes)
    this.log = components.log
  }

  async start(): Promise<void> {
    if (this.server) throw new AgentListenError(this.socketPath, 'the local API is already started')
    const { removedStale } = await claimSocketPath(this.socketPath, this.config.probeTimeoutMs)
    if (removedStale) this.log.info({ socket: this.socketPath }, 'removed a stale API socket left by an agent that is not running')
    const server = createServer({ requestTimeout: this.config.requestTimeoutMs }, (req, res) => void this.handle(req, res))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new AgentListenError(this.socketPath, err.message, err.code)))
      withPrivateUmask(() => server.listen(this.socketPath, () => resolve()))
    })
    server.on('error', (err) => this.log.error({ err, socket: this.socketPath }, 'local API server error'))
    // The umask already made it 0600; this keeps it so whatever the file system did.
    chmodSync(this.socketPath, 0o600)
    this.server = server
    this.log.info({ socket: this.socketPath }, 'local API listening')
  }

  async stop(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    const closed = new Promise<void>((resolve) => server.close(() => resolve()))
    server.closeAllConnections()
    // Closing the listener also removes the socket file (libuv unlinks what it bound).
    await closed
    this.log.info({ socket: this.socketPath }, 'local API stopped')
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now()
    const url = new URL(req.url ?? '/', 'http://agent')
    const method = req.method ?? 'GET'
    let status: number
    let body: unknown
    const headers: Record<string, string> = {}
    try {
      const { handler, params } = this.table.match(method, url.pathname)
      const parsed = await this.readBody(req)
      const result = await handler({ method: method as ApiMethod, path: url.pathname, params, query: url.searchParams, body: parsed })
      status = result === undefined ? 204 : 200
      body = result
    } catch (err) {
      const e = this.asFlatnetError(err, method, url.pathname)
      status = httpStatusOf(e)
      body = errorBody(e)
      if (e instanceof ApiMethodNotAllowedError) headers.allow = e.allowed.join(', ')
      if (status >= 500) this.log.warn({ code: e.code, method, path: url.pathname, status }, e.message)
    }
    this.send(res, status, body, headers)
    this.log.debug({ method, path: url.pathname, status, ms: Math.round(performance.now() - started) }, 'api request')
  }

  private asFlatnetError(err: unknown, method: string, path: string): FlatnetError {
    if (err instanceof FlatnetError) return err
    this.log.error({ err, method, path }, 'API handler failed')
    return new ApiInternalError(method, path)
  }

  /**
   * Reads and parses the JSON body. Past the size limit the rest is read and dropped (not kept),
   * then 413 is answered: a client still writing its body would otherwise see a reset instead of
   * the answer.
   */
  private readBody(req: IncomingMessage): Promise<unknown> {
    const limit = this.config.maxBodyBytes
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = []
      let size = 0
      req.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= limit) chunks.push(chunk)
      })
      req.once('error', reject)
      req.once('end', () => {
        if (size > limit) return reject(new ApiRequestTooLargeError(limit))
        if (size === 0) return resolve(undefined)
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')))
        } catch (err) {
          reject(new InvalidArgumentError(`request body is not valid JSON: ${(err as Error).message}`))
        }
      })
    })
  }

  private send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string>): void {
    let text: string | undefined
    if (status !== 204) {
      try {
        text = JSON.stringify(body)
      } catch (err) {
        this.log.error({ err }, 'API answer is not serialisable as JSON')
        status = 500
        text = JSON.stringify(errorBody(new ApiInternalError('answer', 'serialisation')))
      }
    }
    if (text === undefined) {
      res.writeHead(status, headers).end()
      return
    }
    res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) }).end(text)
  }
}

export function errorBody(err: FlatnetError): ErrorBody {
  if (err instanceof ValidationError) return { code: err.code, message: err.message, details: err.issues }
  return { code: err.code, message: err.message }
}
