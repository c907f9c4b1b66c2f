/**
 * Runs host-side-worker.ts in a test network namespace, which is then the host side of what it
 * does, and reads its outcomes.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import type { FailureInfo, Outcome, Request } from './host-side-worker.js'

const exec = promisify(execFile)
const worker = fileURLToPath(new URL('./host-side-worker.js', import.meta.url))

/** The worker's outcomes, one per operation; `ip netns exec` gives it a mount namespace of its own. */
export async function inHost(netns: string, request: Request): Promise<Outcome[]> {
  const out = (await exec('ip', ['netns', 'exec', netns, process.execPath, worker, JSON.stringify(request)], { timeout: 60_000 })).stdout
  return JSON.parse(out) as Outcome[]
}

export function failure(o: Outcome | undefined): FailureInfo {
  assert.ok(o && !o.ok, `expected a failure, got ${JSON.stringify(o)}`)
  return o.error
}

export function succeeded(o: Outcome | undefined): Extract<Outcome, { ok: true }> {
  assert.ok(o?.ok, `expected success, got ${JSON.stringify(o)}`)
  return o
}
