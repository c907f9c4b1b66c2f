import { FlatnetError, formatIssue, type ValidationIssue } from '@flatnet/core'

/**
 * sysexits' EX_CONFIG. The systemd unit lists it in RestartPreventExitStatus=: restarting an
 * agent whose configuration is wrong cannot help, and would only fill the journal.
 */
export const CONFIG_EXIT_STATUS = 78

/**
 * The agent's configuration is invalid: every problem is listed, each naming where the value
 * came from (`file:line:column`, `environment variable NAME` or `flag --name`) and the field.
 */
export class AgentConfigInvalidError extends FlatnetError {
  readonly code = 'ERR_AGENT_CONFIG_INVALID'
  override readonly exitCode = CONFIG_EXIT_STATUS
  constructor(readonly issues: readonly ValidationIssue[]) {
    super(
      `${issues.length} problem${issues.length === 1 ? '' : 's'} in the agent configuration:\n` +
        issues.map((i) => `  ${formatIssue(i)}`).join('\n'),
    )
  }
}

/** The configuration file that was named (by --config or FLATNET_CONFIG) cannot be read. */
export class AgentConfigReadError extends FlatnetError {
  readonly code = 'ERR_AGENT_CONFIG_READ'
  override readonly exitCode = CONFIG_EXIT_STATUS
  constructor(
    readonly file: string,
    reason: string,
  ) {
    super(`cannot read the agent configuration ${file}: ${reason}`)
  }
}
