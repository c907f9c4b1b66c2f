/**
 * The client of the agent's local API, used by the CLI and the CNI plugin. It imports only
 * node:http and @flatnet/core (through api-errors.ts): the CNI plugin runs once per pod start
 * and loads it through `@flatnet/agent/client`, which must not pull in the agent itself.
 */
import { request } from 'node:http'
import { AgentProtocolError, AgentRequestError, AgentUnreachableError } from './api-errors.js'

/** Where the agent listens unless configured otherwise; the CNI plugin's default too. */
export const AGENT_SOCKET_PATH = '/run/flatnet/agent.sock'

export interface AgentClientConfig {
  readonly socketPath: string
  /** The whole request (connect, send, answer) must finish within this time. */
  readonly timeoutMs: number
  /** Larger answers are refused rather than buffered without bound. */
  readonly maxResponseBytes: number
}

export const AGENT_CLIENT_DEFAULTS: AgentClientConfig = Object.freeze({
  socketPath: AGENT_SOCKET_PATH,
  timeoutMs: 5_000,
  maxResponseBytes: 64 * 1024 * 1024,
})

export type AgentMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'

/** Why a connection failed, in words that say what to check. */
function unreachableReason(err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return 'no such socket; is the agent running? (systemctl status flatnet-agent, or the flatnet agent pod on this node)'
    case 'ECONNREFUSED':
      return 'nothing listens on it (a socket left by an agent that stopped); check that the agent is running'
    case 'EACCES':
    case 'EPERM':
      return 'permission denied; the socket is for root only (mode 0600): run as root'
    case 'ENOTSOCK':
      return 'the path is not a socket; check --agent-socket'
    case 'ECONNRESET':
    case 'EPIPE':
      return 'the connection closed before the agent answered (did it stop?)'
    default:
      return `${err.code ?? 'error'}: ${err.message}`
  }
}

export class AgentClient {
  readonly config: AgentClientConfig

  constructor(options: Partial<AgentClientConfig> = {}) {
    this.config = Object.freeze({ ...AGENT_CLIENT_DEFAULTS, ...options })
  }

  get socketPath(): string {
    return this.config.socketPath
  }

  get<T = unknown>(path: string): Promise<T> {
    return this.request<T>('GET', path)
  }

  post<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('POST', path, body)
  }

  delete<T = unknown>(path: string, body?: unknown): Promise<T> {
    return this.request<T>('DELETE', path, body)
  }

  /**
   * Sends one request and returns the parsed JSON answer (undefined for an empty one).
   * AgentUnreachableError: no socket, refused, no permission, timeout. AgentRequestError: the
   * agent answered with an error (its code, message and status). AgentProtocolError: the answer
   * was not the agent's JSON.
   */
  request<T = unknown>(method: AgentMethod, path: string, body?: unknown): Promise<T> {
    const { socketPath, timeoutMs, maxResponseBytes } = this.config
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body), 'utf8')
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const finish = (fn: () => void): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        fn()
      }
      const req = request({
        socketPath,
        path,
        method,
        // One connection per request: the CLI and the CNI plugin make a few and exit.
        agent: false,
        headers: { accept: 'application/json', ...(payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {}) },
      })
      const timer = setTimeout(() => {
        finish(() => reject(new AgentUnreachableError(socketPath, `no answer within ${timeoutMs} ms to ${method} ${path}; the agent may be overloaded or stuck (check its log and /healthz)`)))
        req.destroy()
      }, timeoutMs)
      req.once('error', (err: NodeJS.ErrnoException) => finish(() => reject(new AgentUnreachableError(socketPath, unreachableReason(err)))))
      req.once('response', (res) => {
        const chunks: Buffer[] = []
        let size = 0
        res.on('data', (chunk: Buffer) => {
          size += chunk.length
          if (size > maxResponseBytes) {
            finish(() => reject(new AgentProtocolError(socketPath, `answer larger than ${maxResponseBytes} bytes`)))
            req.destroy()
            return
          }
          chunks.push(chunk)
        })
        res.once('error', (err: NodeJS.ErrnoException) => finish(() => reject(new AgentUnreachableError(socketPath, unreachableReason(err)))))
        res.once('end', () => finish(() => {
          try {
            resolve(parseAnswer(socketPath, res.statusCode ?? 0, Buffer.concat(chunks).toString('utf8')) as T)
          } catch (err) {
            reject(err)
          }
        }))
      })
      req.end(payload)
    })
  }
}

function parseAnswer(socketPath: string, status: number, text: string): unknown {
  let json: unknown
  if (text.length > 0) {
    try {
      json = JSON.parse(text)
    } catch {
      throw new AgentProtocolError(socketPath, `HTTP ${status} with a body that is not JSON: ${JSON.stringify(text.slice(0, 200))}`)
    }
  }
  if (status >= 200 && status < 300) return json
  const e = json as { code?: unknown; message?: unknown; details?: unknown } | undefined
  if (typeof e?.code !== 'string' || typeof e.message !== 'string') {
    throw new AgentProtocolError(socketPath, `HTTP ${status} without an error code: ${JSON.stringify(text.slice(0, 200))}`)
  }
  throw new AgentRequestError(e.code, e.message, status, e.details)
}
