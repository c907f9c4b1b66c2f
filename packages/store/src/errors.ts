/** Errors of the shared store, each with a stable code (listed in docs/errors.md). */
import { FlatnetError } from '@flatnet/core'

/** Redis could not be reached (or stopped answering) within the configured timeout. */
export class StoreUnavailableError extends FlatnetError {
  readonly code = 'ERR_STORE_UNAVAILABLE'
  override readonly exitCode = 3
  constructor(where: string, reason: string) {
    super(`store unavailable: cannot reach Redis at ${where}: ${reason}`)
  }
}

/** An optimistic-concurrency write found the store at another revision. */
export class RevisionMismatchError extends FlatnetError {
  readonly code = 'ERR_REVISION_MISMATCH'
  override readonly exitCode = 4
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`the store is at revision ${actual}, not ${expected}: it changed since you read it; nothing was written`)
  }
}

/** A write conditioned on one object's revision found that object changed (or created, or gone). */
export class ObjectRevisionMismatchError extends FlatnetError {
  readonly code = 'ERR_OBJECT_REVISION_MISMATCH'
  override readonly exitCode = 4
  constructor(
    readonly kind: string,
    readonly key: string,
    readonly expected: number,
    readonly actual: number,
  ) {
    super(`${kind} ${key} is at revision ${actual === 0 ? '0 (absent)' : actual}, not ${expected === 0 ? '0 (absent)' : expected}: it changed since it was read; nothing was written`)
  }
}

/** A named object does not exist in the store. */
export class NotFoundError extends FlatnetError {
  readonly code = 'ERR_NOT_FOUND'
  constructor(readonly what: string) {
    super(`${what} not found`)
  }
}

export const STORE_ERROR_CODES = ['ERR_STORE_UNAVAILABLE', 'ERR_REVISION_MISMATCH', 'ERR_NOT_FOUND'] as const
