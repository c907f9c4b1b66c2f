/**
 * The `flatnet-cni` process: runs one command and exits with its status. Kept to what a CNI
 * call needs (the agent's light client and the plugin), because a runtime starts one process
 * per call and the start is most of the cost.
 */
import { runPlugin } from './plugin.js'
import { readInput } from './stdin.js'

export async function main(): Promise<number> {
  const outcome = await runPlugin({ env: process.env, readStdin: () => readInput(process.stdin) })
  if (outcome.stderr) process.stderr.write(outcome.stderr)
  // Exit only once standard output is flushed: a pipe may take the answer in several writes.
  await new Promise<void>((resolve) => (outcome.stdout ? process.stdout.write(outcome.stdout, () => resolve()) : resolve()))
  return outcome.exitCode
}
