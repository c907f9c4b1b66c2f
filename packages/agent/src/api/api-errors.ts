/**
 * Errors of the agent's local API, on both sides of the socket. Only @flatnet/core is imported
 * here: the CNI plugin loads this file through `@flatnet/agent/client` and must start fast.
 */
import { FlatnetError } from '@flatnet/core'

/** The agent's socket could not be reached: no socket, nothing listening, no permission, or no answer in time. */
export class AgentUnreachableError extends FlatnetError {
  readonly code = 'ERR_AGENT_UNREACHABLE'
  override readonly exitCode = 3
  constructor(
    readonly socketPath: string,
    readonly reason: string,
  ) {
    super(`cannot reach the flatnet agent at ${socketPath}: ${reason}`)
  }
}

/**
 * The agent answered a request with an error. `code` is the agent's own code for the condition
 * (e.g. ERR_INVALID_ARGUMENT, ERR_IPAM_EXHAUSTED), so a client can act on it as if the error
 * had been raised locally; `status` is the HTTP status.
 */
export class AgentRequestError extends FlatnetError {
  override readonly exitCode: number
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly details?: unknown,
  ) {
    super(message)
    this.exitCode = status === 400 || status === 413 ? 2 : 1
  }
}

/** What answered on the socket did not speak the agent's protocol (not JSON, or not the expected shape). */
export class AgentProtocolError extends FlatnetError {
  readonly code = 'ERR_AGENT_PROTOCOL'
  constructor(
    readonly socketPath: string,
    reason: string,
  ) {
    super(`unexpected answer from ${socketPath}: ${reason}`)
  }
}

/** Another agent already answers on the socket; two agents on one host would fight over the kernel state. */
export class AgentAlreadyRunningError extends FlatnetError {
  readonly code = 'ERR_AGENT_ALREADY_RUNNING'
  constructor(readonly socketPath: string) {
    super(`another flatnet agent is already running: it answers on ${socketPath}; stop it first (systemctl stop flatnet-agent)`)
  }
}

/** The agent could not open one of its listeners (the API socket or the metrics/health address). */
export class AgentListenError extends FlatnetError {
  readonly code = 'ERR_AGENT_LISTEN'
  constructor(
    readonly address: string,
    reason: string,
    readonly sysCode?: string,
  ) {
    super(`cannot listen on ${address}: ${reason}`)
  }
}

/** An error the local API answers with; carries its HTTP status. */
export abstract class ApiError extends FlatnetError {
  abstract readonly httpStatus: number
}

/** No route has this path. */
export class ApiNotFoundError extends ApiError {
  readonly code = 'ERR_API_NOT_FOUND'
  readonly httpStatus = 404
  constructor(readonly path: string) {
    super(`no such API path: ${path}`)
  }
}

/** The path exists, but not for this method. */
export class ApiMethodNotAllowedError extends ApiError {
  readonly code = 'ERR_API_METHOD_NOT_ALLOWED'
  readonly httpStatus = 405
  constructor(
    readonly method: string,
    readonly path: string,
    readonly allowed: readonly string[],
  ) {
    super(`${method} is not allowed on ${path}; use ${allowed.join(' or ')}`)
  }
}

/** The request body is larger than the API accepts. */
export class ApiRequestTooLargeError extends ApiError {
  readonly code = 'ERR_API_REQUEST_TOO_LARGE'
  readonly httpStatus = 413
  constructor(readonly limitBytes: number) {
    super(`request body larger than ${limitBytes} bytes`)
  }
}

/** A handler failed with something that is not a FlatnetError: a bug. The details are in the agent's log. */
export class ApiInternalError extends ApiError {
  readonly code = 'ERR_API_INTERNAL'
  readonly httpStatus = 500
  override readonly exitCode = 70
  constructor(method: string, path: string) {
    super(`internal error in the agent while handling ${method} ${path}; see the agent's log`)
  }
}
