/**
 * The local snapshot: the store's objects at the revision the agent last enforced, kept in the
 * state dir so that a restarted agent enforces them again before it reaches Redis (fail-static).
 * Written to a temporary file and renamed: a crash leaves the old snapshot or the new one.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { FlatnetError } from '@flatnet/core'
import type { StoredObject } from '@flatnet/store'

export const LOCAL_SNAPSHOT_FILE = 'snapshot.json'
const FORMAT = 1

export interface LocalSnapshot {
  readonly format: typeof FORMAT
  readonly revision: number
  readonly savedAt: string
  /** What this node held when it saved: its block(s) and host address, for a start without Redis. */
  readonly node: { readonly blocks: readonly string[]; readonly hostAddress: string | undefined; readonly pools: readonly string[] }
  readonly objects: readonly StoredObject[]
}

/** The local snapshot could not be read; the agent starts without it and says why. */
export class LocalSnapshotInvalidError extends FlatnetError {
  readonly code = 'ERR_AGENT_SNAPSHOT_INVALID'
}

export function localSnapshotPath(stateDir: string): string {
  return join(stateDir, LOCAL_SNAPSHOT_FILE)
}

export function loadLocalSnapshot(stateDir: string): LocalSnapshot | undefined {
  const file = localSnapshotPath(stateDir)
  if (!existsSync(file)) return undefined
  let parsed: unknown
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new LocalSnapshotInvalidError(`${file}: not JSON (${err instanceof Error ? err.message : String(err)})`)
  }
  const s = parsed as Partial<LocalSnapshot>
  if (s.format !== FORMAT || typeof s.revision !== 'number' || !Array.isArray(s.objects) || typeof s.node !== 'object' || s.node === null) {
    throw new LocalSnapshotInvalidError(`${file}: not a flatnet local snapshot of format ${FORMAT}`)
  }
  return s as LocalSnapshot
}

export function saveLocalSnapshot(stateDir: string, snapshot: Omit<LocalSnapshot, 'format' | 'savedAt'>): void {
  const file = localSnapshotPath(stateDir)
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, JSON.stringify({ format: FORMAT, savedAt: new Date().toISOString(), ...snapshot }), { mode: 0o600 })
  renameSync(tmp, file)
}
