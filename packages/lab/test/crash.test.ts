/**
 * `lab down` after `lab up` died: the builder killed (SIGKILL) in the middle of its work, and
 * a state file that records things never made and a process that never got its PID recorded.
 * Only what the lab made is removed; a process that merely reuses a recorded PID is left alone.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { labDown, LabState, readLabState, type LabProgress } from '../src/index.js'
import { labNamespaces, pidsMentioning, running, sh, skipReason, sweep, tempStateDir, uniqueLabId } from './helpers.js'

const CRASH_BUILDER = fileURLToPath(new URL('./crash-builder.js', import.meta.url))

/** Starts the builder and SIGKILLs it at the first progress event `killAt` accepts. */
async function buildAndKill(stateDir: string, id: string, killAt: (p: LabProgress) => boolean): Promise<LabProgress[]> {
  const child: ChildProcess = spawn(process.execPath, [CRASH_BUILDER, stateDir, id], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const seen: LabProgress[] = []
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  let killed = false
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const p = JSON.parse(line) as LabProgress
    seen.push(p)
    if (!killed && killAt(p)) {
      killed = true
      child.kill('SIGKILL')
    }
  })
  await closed
  clearTimeout(timer)
  assert.ok(killed, `the builder ended before the kill point (saw: ${seen.map((p) => p.step).join(' ')})\n${stderr}`)
  return seen
}

describe('lab down after a crash of lab up', { skip: skipReason }, () => {
  const leftovers: { id: string; stateDir: string }[] = []
  after(async () => {
    for (const { id, stateDir } of leftovers) await sweep(id, stateDir)
  })

  for (const point of [
    { what: 'half way through the workloads', killAt: (p: LabProgress) => p.step === 'workload' && p.done === 2 },
    { what: 'while starting the endpoint daemons', killAt: (p: LabProgress) => p.step === 'daemon' && p.done === 3 },
  ]) {
    it(`removes everything when the builder is killed ${point.what}`, async () => {
      const id = uniqueLabId()
      const stateDir = await tempStateDir()
      leftovers.push({ id, stateDir })
      await buildAndKill(stateDir, id, point.killAt)
      const state = readLabState(stateDir)!
      assert.equal(state.phase, 'building')
      const before = await labNamespaces(id)
      assert.ok(before.length >= 4, `namespaces left by the crash: ${before.join(' ')}`)
      const daemons = pidsMentioning(stateDir)
      if (point.what.includes('daemons')) assert.ok(daemons.length >= 3, 'daemons outlive the killed builder')

      const result = await labDown({ stateDir })
      assert.equal(result.found, true)
      assert.deepEqual(await labNamespaces(id), [])
      assert.deepEqual(pidsMentioning(stateDir), [])
      for (const pid of daemons) assert.equal(running(pid), false)
      assert.equal(existsSync(stateDir), false, existsSync(stateDir) ? `left in ${stateDir}: ${readdirSync(stateDir).join(' ')}` : '')
    })
  }

  it('works from a state file that records a namespace never made and a process whose PID was never recorded', async () => {
    const id = uniqueLabId()
    const stateDir = await tempStateDir()
    leftovers.push({ id, stateDir })
    const state = LabState.create({ id, stateDir, topologyFile: 'test', underlay: { cidr: '192.168.77.0/24', mtu: 1500, netns: `fn-lab-${id}-ul` }, namespaces: [] })
    // Made and recorded.
    state.recordNetns({ name: `fn-lab-${id}-ul`, role: 'underlay' })
    await sh('ip', 'netns', 'add', `fn-lab-${id}-ul`)
    // Recorded, then the crash came before it was made.
    state.recordNetns({ name: `fn-lab-${id}-vm`, role: 'host' })
    // Recorded, started, and the crash came before its PID was written down.
    const cmdline = [process.execPath, '-e', 'setInterval(() => {}, 1000)', stateDir]
    state.recordProcess({ name: 'daemon x/a', netns: `fn-lab-${id}-ul`, cmdline, logFile: `${stateDir}/x.log` })
    const orphan = spawn('ip', ['netns', 'exec', `fn-lab-${id}-ul`, ...cmdline], { detached: true, stdio: 'ignore' })
    orphan.unref()
    // A record whose PID now belongs to another process (the PID was reused): not ours to stop.
    const stranger = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
    state.recordProcess({ name: 'daemon x/b', netns: undefined, cmdline: [process.execPath, 'endpoint-daemon.js', 'x/b.json'], logFile: `${stateDir}/y.log`, pid: stranger.pid!, startTicks: 1 })
    try {
      await new Promise((r) => setTimeout(r, 300))
      assert.ok(running(orphan.pid!))

      const result = await labDown({ stateDir })
      assert.deepEqual(result.netnsDeleted, [`fn-lab-${id}-ul`])
      assert.deepEqual(result.stopped.map((s) => [s.name, s.pid]), [['daemon x/a', orphan.pid]])
      assert.equal(running(orphan.pid!), false)
      assert.equal(running(stranger.pid!), true, 'a process that only reuses a recorded PID is left alone')
      assert.deepEqual(await labNamespaces(id), [])
      assert.equal(existsSync(stateDir), false)
    } finally {
      stranger.kill('SIGKILL')
    }
  })
})
