// Everything a benchmark starts is owned here (pids, temp dirs, and async clean-ups such as
// `lab down` or deleting network namespaces) and removed on the way out, also after a failure,
// an exception or SIGINT/SIGTERM/SIGHUP; the whole run is bounded in time.
import { rmSync } from 'node:fs'
import { sleep } from './clock.js'
import { log } from './log.js'

/** A failure the message explains: reported without a stack. */
export class BenchError extends Error {}

const pids = new Set()
const dirs = new Set()
/** Async clean-ups, newest first; each removes itself when done. */
const hooks = []

export function ownPid(pid) {
  if (pid !== undefined) pids.add(pid)
}
export function disownPid(pid) {
  pids.delete(pid)
}
/** The processes owned right now (for CPU accounting). */
export const ownedPids = () => [...pids]
export function ownDir(dir) {
  dirs.add(dir)
  return dir
}
export function removeDir(dir) {
  rmSync(dir, { recursive: true, force: true })
  dirs.delete(dir)
}
/** Registers an async clean-up; returns the function that runs it once and unregisters it. */
export function ownCleanup(name, fn) {
  let done
  const hook = { name, run: () => (done ??= Promise.resolve().then(fn).finally(() => hooks.splice(hooks.indexOf(hook) >>> 0, 1))) }
  hooks.unshift(hook)
  return hook.run
}

function killOwnedNow() {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  pids.clear()
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
  dirs.clear()
}

/** Runs the async clean-ups (newest first, each bounded), then kills and removes whatever is still owned. */
export async function cleanUpEverything() {
  for (const hook of [...hooks]) {
    await Promise.race([hook.run().catch((err) => log(`clean-up "${hook.name}" failed: ${err?.message ?? err}`)), sleep(30_000)])
  }
  killOwnedNow()
}

let installed = false
/** Clean-up on every way out; the whole run is bounded by `limitMs`. `what` names the run in messages. */
export function installExitHandlers(limitMs, what) {
  if (installed) return
  installed = true
  process.on('exit', killOwnedNow)
  let dying = false
  const die = async (why, status) => {
    // Errors of connections that the clean-up itself cuts come after the first cause: not news.
    if (dying) return
    dying = true
    log(why)
    await cleanUpEverything()
    process.exit(status)
  }
  const numbers = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 }
  for (const [signal, n] of Object.entries(numbers)) process.on(signal, () => void die(`${what}: ${signal}, cleaning up`, 128 + n))
  const failed = (err) => void die(`${what} failed: ${err instanceof BenchError ? err.message : (err?.stack ?? err)}`, 2)
  process.on('uncaughtException', failed)
  process.on('unhandledRejection', failed)
  setTimeout(() => void die(`${what} still running after ${limitMs / 1000} s: giving up`, 2), limitMs).unref()
}
