/**
 * The route table of the local API: `'METHOD /path/:param'` keys, matched segment by segment.
 * Pure: no I/O, so matching is tested on its own.
 */
import { InvalidArgumentError } from '@flatnet/core'
import { ApiMethodNotAllowedError, ApiNotFoundError } from './api-errors.js'

export const API_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const
export type ApiMethod = (typeof API_METHODS)[number]

export interface ApiRequest {
  readonly method: ApiMethod
  /** The path without the query string, e.g. `/v1/workloads/abc`. */
  readonly path: string
  /** Values of the route's `:name` segments, URL-decoded. */
  readonly params: Readonly<Record<string, string>>
  readonly query: URLSearchParams
  /** The parsed JSON body; undefined when the request has none. Untrusted: handlers validate it. */
  readonly body: unknown
}

/**
 * Returns what to answer as JSON (200), or undefined for an empty answer (204). Throws a
 * FlatnetError for an error answer `{code, message}` with the matching status (error-status.ts).
 */
export type ApiHandler = (req: ApiRequest) => unknown

/** `{ 'GET /v1/status': handler, 'DELETE /v1/workloads/:id': handler, ... }` */
export type ApiRoutes = Readonly<Record<string, ApiHandler>>

interface CompiledRoute {
  readonly method: ApiMethod
  readonly pattern: string
  /** Literal segment, or `{ param }` for a `:name` segment. */
  readonly segments: readonly (string | { readonly param: string })[]
  readonly handler: ApiHandler
}

export interface RouteMatch {
  readonly handler: ApiHandler
  readonly params: Readonly<Record<string, string>>
}

function isMethod(m: string): m is ApiMethod {
  return (API_METHODS as readonly string[]).includes(m)
}

function splitPath(path: string): string[] {
  return path.split('/').slice(1)
}

export class RouteTable {
  private readonly routes: CompiledRoute[] = []

  constructor(routes: ApiRoutes) {
    for (const [key, handler] of Object.entries(routes)) {
      const m = /^([A-Z]+) (\/\S*)$/.exec(key)
      if (!m || !isMethod(m[1] as string)) throw new InvalidArgumentError(`API route "${key}" must be "METHOD /path" with METHOD one of ${API_METHODS.join(', ')}`)
      const segments = splitPath(m[2] as string).map((s) => (s.startsWith(':') ? { param: s.slice(1) } : s))
      if (this.routes.some((r) => r.method === m[1] && r.pattern === m[2])) throw new InvalidArgumentError(`API route "${key}" is defined twice`)
      this.routes.push({ method: m[1] as ApiMethod, pattern: m[2] as string, segments, handler })
    }
  }

  /** The handler for a request, or ApiNotFoundError / ApiMethodNotAllowedError (which says what is allowed). */
  match(method: string, path: string): RouteMatch {
    const parts = splitPath(path)
    const allowed: ApiMethod[] = []
    for (const r of this.routes) {
      const params = matchSegments(r.segments, parts)
      if (!params) continue
      if (r.method === method) return { handler: r.handler, params }
      allowed.push(r.method)
    }
    if (allowed.length > 0) throw new ApiMethodNotAllowedError(method, path, allowed)
    throw new ApiNotFoundError(path)
  }
}

function matchSegments(segments: CompiledRoute['segments'], parts: readonly string[]): Record<string, string> | undefined {
  if (segments.length !== parts.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i] as CompiledRoute['segments'][number]
    const p = parts[i] as string
    if (typeof s === 'string') {
      if (s !== p) return undefined
      continue
    }
    if (p === '') return undefined
    try {
      params[s.param] = decodeURIComponent(p)
    } catch {
      throw new InvalidArgumentError(`path segment "${p}" is not valid percent-encoding`)
    }
  }
  return params
}
