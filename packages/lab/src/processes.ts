/**
 * Long-running processes of a lab (endpoint daemons, and the Redis and agents `lab up` starts):
 * recorded in the state file before they start, detached so they outlive `lab up`, with their
 * output in a log file. Stopped by PID only after checking the PID is still the process that
 * was started: its start time or its command line must match the record.
 */
import { spawn } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { FlatnetError } from '@flatnet/core'
import type { LabState, ProcessRecord } from './state.js'

/** A lab process could not be started, or did not become ready in time. */
export class LabProcessError extends FlatnetError {
  readonly code = 'ERR_LAB_PROCESS'
}

export interface StartLabProcessOptions {
  /** Unique in the lab; also names the log file. */
  readonly name: string
  /** Run inside this network namespace (through `ip netns exec`); undefined: where `lab up` runs. */
  readonly netns?: string | undefined
  /** The command; argv[0] is looked up in PATH unless it is a path. */
  readonly argv: readonly string[]
  readonly env?: NodeJS.ProcessEnv | undefined
}

export const STOP_TIMEOUT_MS = 3000

interface ProcInfo {
  readonly state: string
  readonly startTicks: number
}

/** State and start time of a live process, from /proc/PID/stat; undefined when there is none. */
function procInfo(pid: number): ProcInfo | undefined {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ')
  return { state: fields[0] ?? '?', startTicks: Number(fields[19]) }
}

function procCmdline(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return raw.split('\0').slice(0, -1)
  } catch {
    return undefined
  }
}

const sameArgv = (a: readonly string[] | undefined, b: readonly string[]): boolean => a !== undefined && a.length === b.length && a.every((x, i) => x === b[i])

/** True when `pid` is alive and not a zombie. */
function alive(pid: number): boolean {
  const info = procInfo(pid)
  return info !== undefined && info.state !== 'Z' && info.state !== 'X'
}

/**
 * Whether the recorded process still runs as that process: same PID and the same start time,
 * or (when the start time was never recorded) the same command line.
 */
export function isRecordedProcessAlive(record: ProcessRecord): boolean {
  if (record.pid === undefined || !alive(record.pid)) return false
  if (record.startTicks !== undefined) return procInfo(record.pid)?.startTicks === record.startTicks
  return sameArgv(procCmdline(record.pid), record.cmdline)
}

function logName(name: string): string {
  return `${name.replace(/[^A-Za-z0-9_.-]+/g, '_')}.log`
}

/** Starts a process of the lab, recorded before it starts and again with its PID. */
export async function startLabProcess(state: LabState, opts: StartLabProcessOptions): Promise<ProcessRecord> {
  if (opts.argv.length === 0) throw new LabProcessError(`${opts.name}: empty command`)
  const logDir = join(state.data.stateDir, 'logs')
  state.recordPath(logDir)
  mkdirSync(logDir, { recursive: true, mode: 0o700 })
  const logFile = join(logDir, logName(opts.name))
  // `ip netns exec` replaces itself with the command, so /proc/PID/cmdline becomes argv.
  const intent: ProcessRecord = { name: opts.name, netns: opts.netns, cmdline: [...opts.argv], logFile }
  state.recordProcess(intent)
  const [cmd, ...args] = opts.netns === undefined ? opts.argv : ['ip', 'netns', 'exec', opts.netns, ...opts.argv]
  const fd = openSync(logFile, 'a', 0o600)
  try {
    const child = spawn(cmd!, args, { detached: true, stdio: ['ignore', fd, fd], env: opts.env ?? process.env })
    await new Promise<void>((resolve, reject) => {
      child.once('spawn', resolve)
      child.once('error', (err) => reject(new LabProcessError(`${opts.name}: cannot start ${cmd}: ${err.message}`)))
    })
    child.unref()
    const pid = child.pid!
    const record: ProcessRecord = { ...intent, pid, startTicks: procInfo(pid)?.startTicks }
    state.recordProcess(record)
    return record
  } finally {
    closeSync(fd)
  }
}

/** PIDs of processes whose command line is exactly `cmdline` (for records that never got a PID). */
function findByCmdline(cmdline: readonly string[]): number[] {
  const pids: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid !== process.pid && sameArgv(procCmdline(pid), cmdline) && alive(pid)) pids.push(pid)
  }
  return pids
}

export interface StoppedProcess {
  readonly name: string
  readonly pid: number
  /** `term`: ended after SIGTERM; `kill`: needed SIGKILL. */
  readonly how: 'term' | 'kill'
}

/**
 * Stops every recorded process that is still the process that was started: SIGTERM, then
 * SIGKILL after `timeoutMs`. A record without a PID (a crash between recording and starting)
 * is matched by its exact command line.
 */
export async function stopLabProcesses(records: readonly ProcessRecord[], timeoutMs = STOP_TIMEOUT_MS): Promise<StoppedProcess[]> {
  const targets: { name: string; pid: number }[] = []
  for (const r of records) {
    if (r.pid !== undefined) {
      if (isRecordedProcessAlive(r)) targets.push({ name: r.name, pid: r.pid })
    } else {
      for (const pid of findByCmdline(r.cmdline)) targets.push({ name: r.name, pid })
    }
  }
  for (const t of targets) signal(t.pid, 'SIGTERM')
  const deadline = Date.now() + timeoutMs
  const result: StoppedProcess[] = []
  let pending = targets
  while (pending.length > 0 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20))
    pending = pending.filter((t) => {
      if (alive(t.pid)) return true
      result.push({ ...t, how: 'term' })
      return false
    })
  }
  for (const t of pending) {
    signal(t.pid, 'SIGKILL')
    result.push({ ...t, how: 'kill' })
  }
  // SIGKILL is not refused, but the process is gone only once the kernel has torn it down.
  const killDeadline = Date.now() + timeoutMs
  while (pending.some((t) => alive(t.pid)) && Date.now() < killDeadline) await new Promise((r) => setTimeout(r, 20))
  return result
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}
