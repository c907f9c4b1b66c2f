/**
 * The errors of the CNI plugin. Each carries the numeric CNI error code the runtime sees in the
 * error JSON (spec codes below 100, flatnet's own from 100 up; see docs/cni.md) besides the
 * stable `ERR_CNI_...` code every flatnet error has.
 */
import { FlatnetError } from '@flatnet/core'

/** The CNI spec's well-known error codes (0-99), and flatnet's own (100 and up). */
export const CNI_CODES = Object.freeze({
  incompatibleVersion: 1,
  unsupportedField: 2,
  unknownContainer: 3,
  invalidEnvironment: 4,
  ioFailure: 5,
  decodeFailure: 6,
  invalidConfig: 7,
  tryAgainLater: 11,
  notAvailable: 50,
  limitedConnectivity: 51,
  /** The agent refused the request: a name taken by another container, bad labels, a second flatnet network. */
  agentRefused: 100,
  /** The veth, address or routes could not be made (the agent's `ip` command failed). */
  linkFailed: 101,
  /** No address left: the node's blocks are full and the pool has no free block. */
  noAddress: 102,
  /** CHECK: the attachment is missing or broken. */
  checkFailed: 103,
  /** GC: some stale attachments could not be removed. */
  gcFailed: 104,
  /** The agent failed, or answered with something the plugin does not understand. */
  agentFailed: 105,
  /** ADD: the agent did not enforce the new endpoint's policy in time. */
  policyNotEnforced: 106,
})

export abstract class CniError extends FlatnetError {
  /** The numeric code of the CNI error JSON. */
  abstract readonly cniCode: number
  constructor(
    message: string,
    /** Longer explanation for the error JSON's `details`. */
    readonly details = '',
  ) {
    super(message)
  }
}

/** An error of a condition made by cniErrorClass: its `code` is the literal the class was made with. */
interface CniConditionError<Code extends string> extends CniError {
  readonly code: Code
  readonly cniCode: number
}

/** The class cniErrorClass returns; abstract, so that only a named class per condition is thrown. */
type CniConditionErrorClass<Code extends string> = abstract new (message: string, details?: string) => CniConditionError<Code>

/**
 * The shared base of a condition whose CNI code does not depend on the call. It is abstract:
 * each condition extends it with a class of its own, so that `instanceof` tells the conditions
 * apart and `util.inspect` names the class. The `code` passed here is the condition's stable
 * code (docs/errors.md lists it; test/error-codes.test.mjs finds it by `ErrorClass('ERR_`).
 */
function cniErrorClass<const Code extends `ERR_CNI_${string}`>(code: Code, cniCode: number): CniConditionErrorClass<Code> {
  abstract class CniCondition extends CniError {
    readonly code = code
    readonly cniCode = cniCode
  }
  return CniCondition
}

/** The config's cniVersion is not one the plugin speaks, or too old for the command. */
export class CniVersionError extends cniErrorClass('ERR_CNI_VERSION', CNI_CODES.incompatibleVersion) {}

/** The network config has a field the plugin does not support (the message names key and value). */
export class CniUnsupportedFieldError extends cniErrorClass('ERR_CNI_UNSUPPORTED_FIELD', CNI_CODES.unsupportedField) {}

/** A CNI_* environment variable is missing, invalid, or CNI_COMMAND is unknown (the message names it). */
export class CniEnvironmentError extends cniErrorClass('ERR_CNI_ENVIRONMENT', CNI_CODES.invalidEnvironment) {}

/** Standard input could not be read: an error, no end within the time limit, or more than the size limit. */
export class CniInputError extends cniErrorClass('ERR_CNI_INPUT', CNI_CODES.ioFailure) {}

/** Standard input is not a JSON object (garbage, truncated, empty). */
export class CniDecodeError extends cniErrorClass('ERR_CNI_DECODE', CNI_CODES.decodeFailure) {}

/** The network config is JSON but wrong: a missing or malformed field (the message names it). */
export class CniConfigError extends cniErrorClass('ERR_CNI_CONFIG', CNI_CODES.invalidConfig) {}

/** STATUS: the agent runs but cannot serve ADD yet (not joined, not admitted, nothing applied). */
export class CniNotReadyError extends cniErrorClass('ERR_CNI_NOT_READY', CNI_CODES.notAvailable) {}

/** CHECK found the attachment missing or broken: interface, address, route, rule, endpoint. */
export class CniCheckFailedError extends cniErrorClass('ERR_CNI_CHECK_FAILED', CNI_CODES.checkFailed) {}

/** GC could not remove every stale attachment; the details list each failure. */
export class CniGcFailedError extends cniErrorClass('ERR_CNI_GC_FAILED', CNI_CODES.gcFailed) {}

/** The agent's socket cannot be reached (not running, no permission, no answer in time). */
export class CniAgentUnreachableError extends CniError {
  readonly code = 'ERR_CNI_AGENT_UNREACHABLE'
  /** Try again later; STATUS answers "not available" (50) instead. */
  readonly cniCode: number
  constructor(message: string, details: string, command: string) {
    super(message, details)
    this.cniCode = command === 'STATUS' ? CNI_CODES.notAvailable : CNI_CODES.tryAgainLater
  }
}

/** The agent answered a request with an error; `agentCode` is its own code (ERR_...). */
export class CniAgentAnswerError extends CniError {
  readonly code = 'ERR_CNI_AGENT_ANSWER'
  readonly cniCode: number
  constructor(
    readonly agentCode: string,
    message: string,
    details: string,
  ) {
    super(message, details)
    this.cniCode = cniCodeOfAgentError(agentCode)
  }
}

/** What the agent's error codes mean to a runtime. */
export function cniCodeOfAgentError(agentCode: string): number {
  switch (agentCode) {
    case 'ERR_AGENT_NOT_JOINED':
    case 'ERR_STORE_UNAVAILABLE':
      return CNI_CODES.tryAgainLater
    case 'ERR_IPAM_EXHAUSTED':
      return CNI_CODES.noAddress
    case 'ERR_WORKLOAD_LINK':
    case 'ERR_HOST_FORWARDING':
      return CNI_CODES.linkFailed
    case 'ERR_CNI_POLICY_NOT_ENFORCED':
      return CNI_CODES.policyNotEnforced
    case 'ERR_AGENT_WORKLOAD':
    case 'ERR_INVALID_ARGUMENT':
    case 'ERR_VALIDATION':
    case 'ERR_IPAM_INVALID':
      return CNI_CODES.agentRefused
    default:
      return CNI_CODES.agentFailed
  }
}

/**
 * A request to the agent's `/v1/cni/exec` route that is not a CNI call handed over by the
 * native front end (not an error a runtime sees: the front end then runs the Node plugin).
 */
export class CniExecRequestError extends FlatnetError {
  readonly code = 'ERR_CNI_EXEC_REQUEST'
  override readonly exitCode = 2
}
