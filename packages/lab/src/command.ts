/**
 * Runs the lab's kernel commands (`ip`, `sysctl`) with argument arrays, never a shell, each
 * bounded by a timeout.
 */
import { execFile } from 'node:child_process'
import { FlatnetError } from '@flatnet/core'

/** A command the lab runs to build or remove its network failed or timed out. */
export class LabCommandError extends FlatnetError {
  readonly code = 'ERR_LAB_COMMAND'
  constructor(
    readonly command: string,
    readonly stderr: string,
    reason: string,
  ) {
    super(`${command}: ${reason}`)
  }
}

export const COMMAND_TIMEOUT_MS = 15_000

export interface CommandResult {
  readonly ok: boolean
  readonly stdout: string
  readonly stderr: string
}

export function runCommand(argv: readonly string[], opts: { allowFail?: boolean; timeoutMs?: number } = {}): Promise<CommandResult> {
  const shown = argv.join(' ')
  const timeoutMs = opts.timeoutMs ?? COMMAND_TIMEOUT_MS
  return new Promise((resolve, reject) => {
    execFile(argv[0]!, argv.slice(1), { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, stdout, stderr })
      const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null }
      if (e.code === 'ENOENT') return reject(new LabCommandError(shown, '', `${argv[0]} is not installed (Debian package ${argv[0] === 'ip' ? 'iproute2' : argv[0] === 'sysctl' ? 'procps' : '?'})`))
      if (e.killed || e.signal) return reject(new LabCommandError(shown, stderr, `did not finish within ${timeoutMs} ms`))
      if (opts.allowFail) return resolve({ ok: false, stdout, stderr })
      reject(new LabCommandError(shown, stderr, stderr.trim().split('\n').slice(-3).join(' | ') || `exit status ${String(e.code)}`))
    })
  })
}

/** Runs `fn` over `items` with at most `limit` at a time; results in input order. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length)
  let next = 0
  let failed: { error: unknown } | undefined
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++
      try {
        results[i] = await fn(items[i] as T, i)
      } catch (error) {
        failed ??= { error }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker))
  if (failed) throw failed.error
  return results
}
