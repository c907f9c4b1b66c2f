/** Errors of the Kubernetes syncer, each with a stable code (listed in docs/errors.md). */
import { FlatnetError } from '@flatnet/core'

/**
 * No usable Kubernetes client configuration: the kubeconfig file is missing or malformed, names
 * no current context, or in-cluster configuration was asked for outside a pod.
 */
export class K8sConfigError extends FlatnetError {
  readonly code = 'ERR_K8S_CONFIG'
  override readonly exitCode = 2
  constructor(
    readonly source: string,
    reason: string,
  ) {
    super(`Kubernetes client configuration (${source}): ${reason}`)
  }
}

/**
 * A request to the Kubernetes API failed: it could not be sent or answered in time, or the API
 * server answered with an error status. `status` is the HTTP status (0 when there was no answer),
 * `reason` the Status object's reason (`Expired`, `Conflict`, `Forbidden`, ...) when it gave one.
 */
export class K8sApiError extends FlatnetError {
  readonly code = 'ERR_K8S_API'
  constructor(
    readonly method: string,
    readonly path: string,
    readonly status: number,
    readonly reason: string,
    detail: string,
  ) {
    super(`Kubernetes API ${method} ${path}: ${status === 0 ? '' : `${status}${reason ? ` ${reason}` : ''}: `}${detail}`)
  }
}
