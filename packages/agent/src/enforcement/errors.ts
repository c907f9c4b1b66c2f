/**
 * Errors of the enforcement layer, one class per condition, each with a stable code listed in
 * docs/errors.md.
 */
import { FlatnetError } from '@flatnet/core'

/**
 * An `nft` command could not run or failed outside of a ruleset being refused: not installed,
 * not permitted (needs CAP_NET_ADMIN), timed out, or its output could not be read.
 */
export class NftCommandError extends FlatnetError {
  readonly code = 'ERR_NFT_COMMAND'
  constructor(
    readonly command: string,
    readonly status: number | undefined,
    reason: string,
  ) {
    super(`${command}: ${reason}`)
  }
}

/** One problem nft reported in a ruleset: the line of the ruleset text and nft's message. */
export interface NftRulesetProblem {
  /** 1-based line in the ruleset text, 0 when nft named none. */
  readonly line: number
  readonly message: string
  /** The offending line as it was in the ruleset. */
  readonly text: string
}

/**
 * `nft -f` refused a ruleset. The transaction is atomic, so the table the kernel holds is
 * unchanged: the previous ruleset stays in force.
 */
export class NftRulesetRejectedError extends FlatnetError {
  readonly code = 'ERR_NFT_RULESET_REJECTED'
  constructor(
    readonly table: string,
    readonly problems: readonly NftRulesetProblem[],
    stderr: string,
  ) {
    super(
      `nft refused the ruleset for table inet ${table}; the previous ruleset stays in force:\n` +
        (problems.length > 0 ? problems.map((p) => `  line ${p.line}: ${p.message}\n    ${p.text.trim()}`).join('\n') : `  ${stderr.trim().split('\n').slice(-6).join('\n  ')}`),
    )
  }
}

/** The `conntrack` tool could not list or delete connection-tracking entries. */
export class ConntrackCommandError extends FlatnetError {
  readonly code = 'ERR_CONNTRACK_COMMAND'
  constructor(
    readonly command: string,
    readonly status: number | undefined,
    reason: string,
  ) {
    super(`${command}: ${reason}`)
  }
}

/** The flow log's reader (tcpdump on the NFLOG group) could not start, or stopped. */
export class FlowLogReaderError extends FlatnetError {
  readonly code = 'ERR_FLOW_LOG_READER'
}
