/**
 * The `flatnet` command line. `run()` returns the exit status instead of exiting so that tests
 * can drive it in-process.
 *
 * Exit status: 0 success; 1 invalid input or failed expectations; 2 usage or unreadable input;
 * 70 internal error.
 */
import { Command, CommanderError } from 'commander'
import { FlatnetError, ExpectationFailedError, ValidationError, formatIssue } from '@flatnet/core'
import { terminalOut, type Out } from './output.js'
import { endpointCommand, ipamCommand, nodeCommand } from './inventory-commands.js'
import { policyCommand } from './policy-commands.js'
import { wgCommand } from './wg-commands.js'
import { DiffFoundError } from './policy-store-commands.js'
import { addEndpointLabelCommand, namespaceCommand } from './label-commands.js'
import { addPolicyStatusCommand } from './policy-status-command.js'
import { agentCommand } from './agent-commands.js'
import { flowsCommand, statusCommand } from './status-commands.js'
import { labCommand } from './lab-commands.js'
import { k8sCommand } from './k8s-commands.js'
import { cniCommand } from './cni-commands.js'

export const VERSION = '0.1.0'

/** The first word after the program that is not an option: which top-level command runs. */
function commandWord(argv: readonly string[]): string | undefined {
  return argv.slice(2).find((a) => !a.startsWith('-'))
}

/**
 * `flatnet agent` loads the agent library (its options come from the agent's configuration
 * table); other commands do not pay for that, so they get a placeholder that only lists it.
 */
function agentPlaceholder(): Command {
  return new Command('agent').description('the per-host agent: joins the overlay and enforces policy on this host (run, cleanup)').allowUnknownOption().helpOption(false)
}

export function buildProgram(out: Out, agent: Command = agentPlaceholder()): Command {
  const program = new Command('flatnet')
    .description('one flat, encrypted network across VMs, bare-metal hosts and Kubernetes, governed by NetworkPolicy')
    .version(VERSION)
    .option('--no-color', 'never colour the output')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => out.write(s.trimEnd()), writeErr: (s) => out.error(s.trimEnd()) })
    .exitOverride()
  program.addCommand(addPolicyStatusCommand(policyCommand(out), out))
  program.addCommand(nodeCommand(out))
  program.addCommand(addEndpointLabelCommand(endpointCommand(out), out))
  program.addCommand(namespaceCommand(out))
  program.addCommand(ipamCommand(out))
  program.addCommand(wgCommand(out))
  program.addCommand(agent)
  program.addCommand(statusCommand(out))
  program.addCommand(flowsCommand(out))
  program.addCommand(labCommand(out))
  program.addCommand(k8sCommand(out))
  program.addCommand(cniCommand(out))
  // Every command, however deep, reports through `out` and returns instead of exiting.
  const configure = (cmd: Command): void => {
    cmd.exitOverride().configureOutput({ writeOut: (s) => out.write(s.trimEnd()), writeErr: (s) => out.error(s.trimEnd()) })
    cmd.commands.forEach(configure)
  }
  program.commands.forEach(configure)
  return program
}

function reportError(out: Out, err: unknown): number {
  if (err instanceof CommanderError) {
    // Help and version end this way too, with status 0.
    return err.exitCode === 0 ? 0 : 2
  }
  if (err instanceof ValidationError) {
    for (const issue of err.issues) out.error(`error: ${formatIssue(issue)}`)
    out.error(`${err.issues.length} problem${err.issues.length === 1 ? '' : 's'} found; nothing was loaded`)
    return err.exitCode
  }
  // These were already shown in full on standard output.
  if (err instanceof ExpectationFailedError || err instanceof DiffFoundError) return err.exitCode
  if (err instanceof FlatnetError) {
    out.error(`error: ${err.message}`)
    return err.exitCode
  }
  out.error(`internal error: ${(err as Error)?.message ?? String(err)}`)
  if (process.env.FLATNET_DEBUG) out.error(String((err as Error)?.stack))
  else out.error('(set FLATNET_DEBUG=1 for details)')
  return 70
}

export async function run(argv: readonly string[], out?: Out): Promise<number> {
  const color = argv.includes('--no-color') ? false : undefined
  const o = out ?? terminalOut(color === undefined ? {} : { color })
  try {
    const agent = commandWord(argv) === 'agent' ? await agentCommand(o) : undefined
    await buildProgram(o, agent).parseAsync([...argv])
    return 0
  } catch (err) {
    return reportError(o, err)
  }
}
