/**
 * Runs the tools the enforcement layer drives (`nft`, `conntrack`) as child processes with a
 * time limit, optionally inside a network namespace, and says plainly why one could not run.
 */
import { spawn } from 'node:child_process'

export interface CommandResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
}

export interface CommandOptions {
  /** Written to the child's stdin, which is then closed. */
  readonly input?: string | undefined
  readonly timeoutMs: number
}

/** Why a command did not run to completion (as opposed to exiting with a failure status). */
export class CommandNotRun extends Error {
  constructor(
    readonly reason: 'missing' | 'timeout' | 'spawn',
    message: string,
  ) {
    super(message)
  }
}

/** `argv` run in `netns` through `ip netns exec`, or as it is when no namespace is given. */
export function inNetns(netns: string | undefined, argv: readonly string[]): string[] {
  return netns === undefined ? [...argv] : ['ip', 'netns', 'exec', netns, ...argv]
}

/** Shell-like text of a command line, for messages. */
export function commandLine(argv: readonly string[]): string {
  return argv.map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`)).join(' ')
}

/**
 * Runs `argv` to completion. Resolves with the exit status and output whatever the status;
 * rejects with CommandNotRun when the program is missing, cannot start, or outlives the
 * timeout (it is then killed, by its PID).
 */
export function runCommand(argv: readonly string[], opts: CommandOptions): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const [cmd, ...args] = argv
    const child = spawn(cmd as string, args, { stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    const err: Buffer[] = []
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL')
    }, opts.timeoutMs)
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => err.push(d))
    // A child that dies before reading its input makes the write fail with EPIPE; the exit status tells the story.
    child.stdin.on('error', () => undefined)
    child.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      if (e.code === 'ENOENT') reject(new CommandNotRun('missing', `${cmd} is not installed (or not on PATH)`))
      else reject(new CommandNotRun('spawn', `${cmd} could not be started: ${e.message}`))
    })
    child.once('close', (status) => {
      clearTimeout(timer)
      if (timedOut) reject(new CommandNotRun('timeout', `did not finish within ${opts.timeoutMs} ms`))
      else resolve({ status, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() })
    })
    child.stdin.end(opts.input ?? '')
  })
}

/** The last lines of a tool's error output, for a one-paragraph message. */
export function tail(text: string, lines = 6): string {
  return text.trim().split('\n').slice(-lines).join('\n')
}
