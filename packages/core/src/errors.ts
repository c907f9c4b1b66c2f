/**
 * One error class per condition, each with a stable `code`. Codes are part of the public
 * interface: they are listed in docs/errors.md, and a test checks the two agree.
 */
export abstract class FlatnetError extends Error {
  abstract readonly code: string
  /** Process exit status the CLI uses for this condition. */
  readonly exitCode: number = 1
}

/** Where in an input file a problem was found. */
export interface SourcePosition {
  readonly file: string
  /** 1-based; 0 when the position is unknown (e.g. an empty file). */
  readonly line: number
  readonly column: number
}

/** One problem in one input document: file, line, column, field path, and what is wrong. */
export interface ValidationIssue extends SourcePosition {
  /** Field path in the document, e.g. `spec.ingress[0].ports[1].endPort`; empty for the document itself. */
  readonly path: string
  readonly message: string
}

export function formatIssue(issue: ValidationIssue): string {
  const where = issue.line > 0 ? `${issue.file}:${issue.line}:${issue.column}` : issue.file
  return issue.path ? `${where}: ${issue.path}: ${issue.message}` : `${where}: ${issue.message}`
}

/** Input documents failed validation. Nothing was loaded. */
export class ValidationError extends FlatnetError {
  readonly code = 'ERR_VALIDATION'
  readonly issues: readonly ValidationIssue[]
  constructor(issues: readonly ValidationIssue[]) {
    super(
      `${issues.length} problem${issues.length === 1 ? '' : 's'} in input:\n` +
        issues.map((i) => `  ${formatIssue(i)}`).join('\n'),
    )
    this.issues = issues
  }
}

/** A command-line argument or API argument is malformed (e.g. a flow port out of range). */
export class InvalidArgumentError extends FlatnetError {
  readonly code = 'ERR_INVALID_ARGUMENT'
  override readonly exitCode = 2
}

/** A flow names an endpoint (namespace/name) that the inventory does not hold. */
export class UnknownEndpointError extends FlatnetError {
  readonly code = 'ERR_UNKNOWN_ENDPOINT'
  override readonly exitCode = 2
  constructor(readonly endpoint: string) {
    super(`unknown endpoint "${endpoint}": not a Pod or HostEndpoint in the inventory, nor an IP address`)
  }
}

/** An input file or directory could not be read. */
export class InputReadError extends FlatnetError {
  readonly code = 'ERR_INPUT_READ'
  override readonly exitCode = 2
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`${file}: cannot read: ${reason}`)
  }
}

/** `flatnet policy test` found expectations that do not hold. */
export class ExpectationFailedError extends FlatnetError {
  readonly code = 'ERR_EXPECTATION_FAILED'
  constructor(
    readonly failed: number,
    readonly total: number,
  ) {
    super(`${failed} of ${total} expectations failed`)
  }
}

/**
 * A Redis URL (`--redis`, FLATNET_REDIS_URL) is malformed. The message shows the URL with its
 * password replaced by `***`: URLs end up in logs and bug reports, credentials must not.
 */
export class InvalidRedisUrlError extends FlatnetError {
  readonly code = 'ERR_REDIS_URL'
  override readonly exitCode = 2
  constructor(
    /** The URL with credentials redacted. */
    readonly url: string,
    readonly reason: string,
  ) {
    super(`invalid Redis URL "${url}": ${reason}`)
  }
}

/** The embedded redis-server could not be started (not installed, failed, or did not answer in time). */
export class EmbeddedRedisError extends FlatnetError {
  readonly code = 'ERR_EMBEDDED_REDIS'
}

/** Every error code flatnet defines, for docs and the test that checks them. */
export const ERROR_CODES = [
  'ERR_VALIDATION',
  'ERR_INVALID_ARGUMENT',
  'ERR_UNKNOWN_ENDPOINT',
  'ERR_INPUT_READ',
  'ERR_EXPECTATION_FAILED',
  'ERR_REDIS_URL',
  'ERR_EMBEDDED_REDIS',
] as const
export type ErrorCode = (typeof ERROR_CODES)[number]
