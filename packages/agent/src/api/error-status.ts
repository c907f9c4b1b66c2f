/** Which HTTP status the local API answers a FlatnetError with. */
import type { FlatnetError } from '@flatnet/core'
import { ApiError } from './api-errors.js'

/** Conditions raised elsewhere in flatnet that a handler may let through, by code. */
const STATUS_BY_CODE: Readonly<Record<string, number>> = Object.freeze({
  ERR_VALIDATION: 400,
  ERR_INVALID_ARGUMENT: 400,
  ERR_IPAM_INVALID: 400,
  ERR_UNKNOWN_ENDPOINT: 404,
  ERR_NOT_FOUND: 404,
  ERR_REVISION_MISMATCH: 409,
  ERR_OBJECT_REVISION_MISMATCH: 409,
  ERR_IPAM_EXHAUSTED: 503,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_AGENT_WORKLOAD: 400,
  ERR_AGENT_NOT_JOINED: 503,
})

/**
 * An error that carries an `httpStatus` (every ApiError does; any FlatnetError may) answers with
 * it; a known code maps through the table; any other error that the CLI would call a usage error
 * (exit status 2) is the client's fault (400); the rest is the agent's (500).
 */
export function httpStatusOf(err: FlatnetError): number {
  if (err instanceof ApiError) return err.httpStatus
  const own = (err as { httpStatus?: unknown }).httpStatus
  if (typeof own === 'number' && Number.isInteger(own) && own >= 400 && own <= 599) return own
  return STATUS_BY_CODE[err.code] ?? (err.exitCode === 2 ? 400 : 500)
}
