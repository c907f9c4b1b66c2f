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
import { policyCommand } from './policy-commands.js'

export const VERSION = '0.1.0'

export function buildProgram(out: Out): Command {
  const program = new Command('flatnet')
    .description('one flat, encrypted network across VMs, bare-metal hosts and Kubernetes, governed by NetworkPolicy')
    .version(VERSION)
    .option('--no-color', 'never colour the output')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ writeOut: (s) => out.write(s.trimEnd()), writeErr: (s) => out.error(s.trimEnd()) })
    .exitOverride()
  program.addCommand(policyCommand(out))
  for (const cmd of program.commands) {
    cmd.exitOverride()
    for (const sub of cmd.commands) sub.exitOverride().configureOutput({ writeOut: (s) => out.write(s.trimEnd()), writeErr: (s) => out.error(s.trimEnd()) })
  }
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
  if (err instanceof ExpectationFailedError) return err.exitCode
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
    await buildProgram(o).parseAsync([...argv])
    return 0
  } catch (err) {
    return reportError(o, err)
  }
}
