/**
 * HTTP to the Kubernetes API: JSON requests and streamed watch responses, with the TLS agent and
 * the Authorization header that @kubernetes/client-node's KubeConfig prepares for every request
 * (so tokens it refreshes — service-account token files, exec plugins — are picked up).
 *
 * Why not the library's own `Watch`/`ListWatch`: its `Watch` (1.4) cannot be aborted before the
 * response headers arrive and drops its own request timeout, and `ListWatch` stops for good on
 * any error other than 410 and returns list items through the typed models (which drop fields
 * the client does not know) while watch events are raw. flatnet validates exactly what the API
 * server holds, so it reads raw JSON from both.
 */
import { request as httpRequest, type Agent, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { createInterface } from 'node:readline'
import type { KubeConfig } from '@kubernetes/client-node'
import { K8sApiError } from './errors.js'

export interface KubeResponse {
  readonly status: number
  /** The parsed JSON body (a Status object for most errors), or undefined when it was not JSON. */
  readonly body: unknown
}

export interface KubeStream {
  readonly status: number
  /** The body, line by line (a watch sends one JSON event per line). */
  readonly lines: AsyncIterable<string>
  /** The body of an error answer (status other than 200), parsed. */
  readonly errorBody: unknown
  /** Whether the server ended the body (false when the connection broke or was closed by us). */
  complete(): boolean
  close(): void
}

export interface RequestOptions {
  readonly body?: unknown
  readonly timeoutMs?: number
  readonly signal?: AbortSignal
}

/** What the syncer needs from the API server; one implementation over KubeConfig. */
export interface KubeTransport {
  readonly server: string
  /** Resolves with every HTTP status; rejects (K8sApiError, status 0) only when there is no answer. */
  request(method: string, path: string, options?: RequestOptions): Promise<KubeResponse>
  /** A GET whose body is read as it arrives; resolves once the status line is in. */
  stream(path: string, options: { readonly signal: AbortSignal; readonly timeoutMs: number }): Promise<KubeStream>
}

export const TRANSPORT_DEFAULTS = Object.freeze({
  requestTimeoutMs: 30_000,
  /** Largest JSON body read into memory (a list page of 500 pods is a few MB). */
  maxBodyBytes: 256 * 1024 * 1024,
})

/** The message of a Kubernetes Status body, else the HTTP status text. */
export function statusDetail(body: unknown, fallback: string): { reason: string; message: string } {
  const s = body as { kind?: unknown; reason?: unknown; message?: unknown } | undefined
  if (s && typeof s === 'object' && s.kind === 'Status') {
    return { reason: typeof s.reason === 'string' ? s.reason : '', message: typeof s.message === 'string' ? s.message : fallback }
  }
  return { reason: '', message: fallback }
}

/** Throws K8sApiError unless the answer has one of the expected statuses. */
export function expectStatus(method: string, path: string, response: KubeResponse, ok: readonly number[]): unknown {
  if (ok.includes(response.status)) return response.body
  const { reason, message } = statusDetail(response.body, `unexpected answer`)
  throw new K8sApiError(method, path, response.status, reason, message)
}

export function kubeConfigTransport(kc: KubeConfig, server: string): KubeTransport {
  return new KubeConfigTransport(kc, server)
}

class KubeConfigTransport implements KubeTransport {
  constructor(
    private readonly kc: KubeConfig,
    readonly server: string,
  ) {}

  private async open(method: string, path: string, body: string | undefined, signal: AbortSignal | undefined, timeoutMs: number): Promise<IncomingMessage> {
    const init = await this.kc.applyToFetchOptions({})
    const headers: Record<string, string> = { accept: 'application/json', ...headerRecord(init.headers) }
    if (body !== undefined) {
      headers['content-type'] = 'application/json'
      headers['content-length'] = String(Buffer.byteLength(body))
    }
    const url = new URL(this.server + path)
    const send = url.protocol === 'http:' ? httpRequest : httpsRequest
    return new Promise<IncomingMessage>((resolve, reject) => {
      const fail = (detail: string): void => reject(new K8sApiError(method, path, 0, '', detail))
      if (signal?.aborted) return fail('aborted')
      const req = send(url, { method, headers, agent: init.agent as Agent | undefined })
      const timer = setTimeout(() => {
        req.destroy()
        fail(`no answer within ${timeoutMs} ms`)
      }, timeoutMs)
      const onAbort = (): void => {
        req.destroy()
        fail('aborted')
      }
      signal?.addEventListener('abort', onAbort, { once: true })
      req.on('response', (res) => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        resolve(res)
      })
      req.on('error', (err) => {
        clearTimeout(timer)
        signal?.removeEventListener('abort', onAbort)
        fail(err.message)
      })
      req.end(body)
    })
  }

  async request(method: string, path: string, options: RequestOptions = {}): Promise<KubeResponse> {
    const timeoutMs = options.timeoutMs ?? TRANSPORT_DEFAULTS.requestTimeoutMs
    const started = Date.now()
    const res = await this.open(method, path, options.body === undefined ? undefined : JSON.stringify(options.body), options.signal, timeoutMs)
    const text = await readBody(res, Math.max(1, timeoutMs - (Date.now() - started)), options.signal).catch((err: Error) => {
      throw new K8sApiError(method, path, 0, '', `reading the answer: ${err.message}`)
    })
    let body: unknown
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      if (res.statusCode === 200 || res.statusCode === 201) throw new K8sApiError(method, path, res.statusCode, '', 'the answer is not JSON')
      body = undefined
    }
    return { status: res.statusCode ?? 0, body }
  }

  async stream(path: string, options: { signal: AbortSignal; timeoutMs: number }): Promise<KubeStream> {
    const res = await this.open('GET', path, undefined, options.signal, options.timeoutMs)
    const status = res.statusCode ?? 0
    if (status !== 200) {
      const text = await readBody(res, options.timeoutMs, options.signal).catch(() => '')
      let errorBody: unknown
      try {
        errorBody = JSON.parse(text)
      } catch {
        errorBody = undefined
      }
      return { status, errorBody, lines: (async function* () {})(), complete: () => res.complete, close: () => res.destroy() }
    }
    const lines = createInterface({ input: res, crlfDelay: Infinity })
    // readline ends its iterator on the input's 'end' only: a connection that is cut (or that we
    // destroy) must end it too, or a reader would wait forever.
    const end = (): void => lines.close()
    res.on('close', end)
    res.on('error', end)
    const close = (): void => {
      res.destroy()
      lines.close()
    }
    options.signal.addEventListener('abort', close, { once: true })
    return { status, errorBody: undefined, lines, complete: () => res.complete, close }
  }
}

/** KubeConfig hands out a fetch `Headers` object; node:http wants a plain record. */
function headerRecord(headers: unknown): Record<string, string> {
  const out: Record<string, string> = {}
  if (headers && typeof (headers as { forEach?: unknown }).forEach === 'function') {
    ;(headers as { forEach: (fn: (value: string, key: string) => void) => void }).forEach((value, key) => (out[key] = value))
  } else if (headers && typeof headers === 'object') {
    for (const [key, value] of Object.entries(headers)) if (typeof value === 'string') out[key] = value
  }
  return out
}

function readBody(res: IncomingMessage, timeoutMs: number, signal: AbortSignal | undefined): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const timer = setTimeout(() => {
      res.destroy()
      reject(new Error(`body not complete within ${timeoutMs} ms`))
    }, timeoutMs)
    const onAbort = (): void => {
      res.destroy()
      reject(new Error('aborted'))
    }
    signal?.addEventListener('abort', onAbort, { once: true })
    const done = (): void => {
      clearTimeout(timer)
      signal?.removeEventListener('abort', onAbort)
    }
    res.on('data', (c: Buffer) => {
      size += c.length
      if (size > TRANSPORT_DEFAULTS.maxBodyBytes) {
        done()
        res.destroy()
        reject(new Error(`answer larger than ${TRANSPORT_DEFAULTS.maxBodyBytes} bytes`))
        return
      }
      chunks.push(c)
    })
    res.on('end', () => {
      done()
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    res.on('error', (err) => {
      done()
      reject(err)
    })
    res.on('aborted', () => {
      done()
      reject(new Error('connection closed before the answer was complete'))
    })
  })
}
