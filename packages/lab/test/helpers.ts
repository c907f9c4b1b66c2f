/**
 * Shared by the lab tests: lab ids and state directories unique to a run, shell-free commands,
 * and a sweep that removes whatever a failed test left behind (namespaces of its lab id only).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const exec = promisify(execFile)

export const skipReason = process.platform !== 'linux' ? 'needs Linux' : process.getuid?.() !== 0 ? 'needs root for network namespaces' : false

/** A lab id of this run: `t`, the PID and a random part, 8 characters at most. */
export function uniqueLabId(): string {
  return `t${process.pid.toString(36)}${randomBytes(4).toString('hex')}`.slice(0, 8)
}

export async function tempStateDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'fn-lab-'))
}

export async function sh(...argv: string[]): Promise<string> {
  return (await exec(argv[0]!, argv.slice(1), { timeout: 15_000 })).stdout
}

export async function labNamespaces(id: string): Promise<string[]> {
  return (await sh('ip', 'netns', 'list'))
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`fn-lab-${id}-`))
}

/** True when `pid` runs (and is not a zombie). */
export function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
    return state !== 'Z' && state !== 'X'
  } catch {
    return false
  }
}

/** PIDs whose command line mentions `text` (e.g. a test's state directory). */
export function pidsMentioning(text: string): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e) && Number(e) !== process.pid)
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(text)
      } catch {
        return false
      }
    })
    .map(Number)
    .filter(running)
}

/** After a test, also a failed one: stop its processes, delete its namespaces, remove its directory. */
export async function sweep(id: string, stateDir: string): Promise<void> {
  for (const pid of pidsMentioning(stateDir)) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
  for (const name of await labNamespaces(id)) await sh('ip', 'netns', 'del', name).catch(() => undefined)
  if (existsSync(stateDir)) await rm(stateDir, { recursive: true, force: true })
}

/** The repository root (where turbo.json lives), found from this compiled file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 10 && !existsSync(join(dir, 'turbo.json')); i++) dir = dirname(dir)
  return dir
}
