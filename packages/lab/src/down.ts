/**
 * Takes a lab down from its state file: stops its processes (only those still the recorded
 * processes), deletes its network namespaces (which takes their links with them), deletes any
 * recorded link outside them, removes its files, and the state file last. Safe to run again,
 * and after `lab up` crashed anywhere: everything is recorded before it is made, and whatever
 * was recorded but never made is simply not found.
 */
import { readdirSync, rmdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { FlatnetError } from '@flatnet/core'
import type { LabProgress } from './build.js'
import { runCommand } from './command.js'
import { labNetnsPrefix } from './names.js'
import { stopLabProcesses, STOP_TIMEOUT_MS, type StoppedProcess } from './processes.js'
import { DEFAULT_LAB_STATE_DIR, readLabState, removeStateFile } from './state.js'

export interface LabDownOptions {
  readonly stateDir?: string | undefined
  readonly onProgress?: ((p: LabProgress) => void) | undefined
  /** How long a process may take to exit after SIGTERM before it gets SIGKILL. */
  readonly stopTimeoutMs?: number | undefined
}

export interface LabDownResult {
  /** False when there was no lab in the state directory (nothing was done). */
  readonly found: boolean
  readonly id?: string | undefined
  readonly stopped: readonly StoppedProcess[]
  readonly netnsDeleted: readonly string[]
  readonly linksDeleted: readonly string[]
  readonly pathsRemoved: readonly string[]
}

/** Some of the lab could not be removed; the state file is kept so that `lab down` can run again. */
export class LabDownError extends FlatnetError {
  readonly code = 'ERR_LAB_DOWN'
}

const GONE = /No such file|does not exist|Cannot find device|Cannot open network namespace/i

export async function labDown(options: LabDownOptions = {}): Promise<LabDownResult> {
  const stateDir = options.stateDir ?? DEFAULT_LAB_STATE_DIR
  const progress = options.onProgress ?? (() => undefined)
  const state = readLabState(stateDir)
  if (!state) return { found: false, stopped: [], netnsDeleted: [], linksDeleted: [], pathsRemoved: [] }
  const failures: string[] = []

  const stopped = await stopLabProcesses(state.processes, options.stopTimeoutMs ?? STOP_TIMEOUT_MS)
  if (stopped.length > 0) progress({ step: 'down', message: `stopped ${stopped.length} process${stopped.length === 1 ? '' : 'es'}` })

  // Only this lab's names: a state file edited by hand must not delete anyone else's namespace.
  const prefix = labNetnsPrefix(state.id)
  const recorded = state.netns.map((n) => n.name).filter((n) => n.startsWith(prefix))
  const listed = (await runCommand(['ip', 'netns', 'list'])).stdout.split('\n').map((l) => l.split(' ')[0] ?? '')
  const present = new Set(listed)
  // Workloads first, the underlay last: the reverse of the order they were made in.
  const toDelete = [...recorded.reverse(), ...listed.filter((n) => n.startsWith(prefix) && !recorded.includes(n))].filter((n) => present.has(n))
  // Whatever still runs inside the lab's namespaces was started by the lab or its agents (e.g. a
  // flow-log reader whose agent was killed): it goes with them, or it would outlive its namespace.
  let leftovers = 0
  for (const name of toDelete) {
    const pids = (await runCommand(['ip', 'netns', 'pids', name], { allowFail: true })).stdout.split('\n').filter((l) => /^\d+$/.test(l.trim()))
    for (const pid of pids) {
      try {
        process.kill(Number(pid), 'SIGKILL')
        leftovers++
      } catch {
        // Already gone.
      }
    }
  }
  if (leftovers > 0) progress({ step: 'down', message: `stopped ${leftovers} leftover process${leftovers === 1 ? '' : 'es'} inside the lab's namespaces` })
  const netnsDeleted: string[] = []
  for (const name of toDelete) {
    const r = await runCommand(['ip', 'netns', 'del', name], { allowFail: true })
    if (r.ok) netnsDeleted.push(name)
    else if (!GONE.test(r.stderr)) failures.push(`ip netns del ${name}: ${r.stderr.trim()}`)
  }
  if (netnsDeleted.length > 0) progress({ step: 'down', message: `deleted ${netnsDeleted.length} network namespaces` })

  // Links in a lab namespace went with it; a link made where `lab up` ran must go by name.
  const linksDeleted: string[] = []
  for (const link of state.links) {
    if (link.netns !== undefined) continue
    const r = await runCommand(['ip', 'link', 'del', 'dev', link.name], { allowFail: true })
    if (r.ok) linksDeleted.push(link.name)
    else if (!GONE.test(r.stderr)) failures.push(`ip link del ${link.name}: ${r.stderr.trim()}`)
  }

  const pathsRemoved: string[] = []
  for (const path of state.paths) {
    try {
      rmSync(path, { recursive: true, force: true })
      pathsRemoved.push(path)
    } catch (err) {
      failures.push(`remove ${path}: ${(err as Error).message}`)
    }
  }

  if (failures.length > 0) {
    throw new LabDownError(`lab ${state.id} is not fully removed; ${stateDir}/lab.json is kept, run "flatnet lab down" again:\n  ${failures.join('\n  ')}`)
  }
  removeStateFile(stateDir)
  // A crash while the state file was being rewritten leaves the next version beside it.
  for (const name of readdirSync(stateDir)) {
    if (/^lab\.json\.\d+\.(tmp|new)$/.test(name)) rmSync(join(stateDir, name), { force: true })
  }
  // The directory too, when nothing else lives there.
  try {
    if (readdirSync(stateDir).length === 0) rmdirSync(stateDir)
  } catch {
    // Someone else's files, or already gone: either way not ours to remove.
  }
  progress({ step: 'down', message: `lab ${state.id} removed` })
  return { found: true, id: state.id, stopped, netnsDeleted, linksDeleted, pathsRemoved }
}
