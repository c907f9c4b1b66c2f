// CNI benchmark: how long the flatnet plugin makes a container wait, measured as a runtime
// sees it, with a real agent (a one-host lab: Redis and `flatnet agent run` in the host's
// network namespace) and the plugin as `flatnet cni install` puts it on a host.
//
//   (1) process start: `node -e ''` and the plugin's VERSION
//   (2) ADD and DEL, each a plugin process (start included): N sequential, then rounds of 20 in
//       parallel; containers stood in for by fresh network namespaces. Both forms a host may
//       run: the native front end (installed by default; it hands each call to the agent) and
//       the Node plugin (flatnet-js beside it, which the front end falls back to)
//   (3) the same through the agent's socket without a process, and ADD without waiting for
//       the policy (policyWaitMs 0): where the time goes
//   (4) `podman run --rm ... true` with the flatnet network vs podman's default bridge network
//
// Usage: node bench/cni/run.js [--quick] [--sequential N] [--parallel N] [--rounds N] [--podman N] [--no-podman]
//        (`npm run bench:cni` installs and builds first.) Needs root.
// Prints progress on stderr, a table, the targets with PASS/MISS and one JSON line on stdout.
// Exit status: 0 targets met, 1 a target missed, 2 the run failed.
import { spawn } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AgentClient } from '../../packages/agent/dist/src/api/client.js'
import { installCniPlugin } from '../../packages/cni/dist/src/index.js'
import { labDown, labUp, readTopology } from '../../packages/lab/dist/src/index.js'
// The podman sandbox of the lab's CNI test, so the bench and the test run podman alike.
import { exec, PodmanSandbox, podmanMissing } from '../../packages/lab/dist/test/podman-sandbox.js'
import { readArgs } from '../lib/args.js'
import { cleanUpEverything, installExitHandlers, ownCleanup, ownDir } from '../lib/cleanup.js'
import { sleep } from '../lib/clock.js'
import { stats } from '../lib/stats.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const FLATNET = join(ROOT, 'packages', 'cli', 'bin', 'flatnet.js')

const { flag, option } = readArgs()
const QUICK = flag('--quick')
const SEQUENTIAL = option('--sequential', QUICK ? 40 : 200)
const PARALLEL = option('--parallel', 20)
const ROUNDS = option('--rounds', QUICK ? 2 : 5)
const PODMAN_RUNS = flag('--no-podman') ? 0 : option('--podman', QUICK ? 4 : 12)
const TARGETS = { addP50Ms: 100 }

const log = (msg) => process.stderr.write(`[bench:cni] ${msg}\n`)

/** Nearest-rank p50 and p99 with the extremes, to 0.1 ms. */
function summary(samples) {
  const s = stats(samples)
  const r = (x) => Math.round(x * 10) / 10
  return { n: s.n, p50: r(s.p50), p99: r(s.p99), min: r(s.min), max: r(s.max) }
}

/** Runs a program with env and stdin; resolves with exit code, stdout and the wall time, start to exit. */
function timed(program, env, input) {
  return new Promise((resolve, reject) => {
    const started = performance.now()
    const child = spawn(program[0], program.slice(1), { env: { PATH: process.env.PATH, ...env }, stdio: ['pipe', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000)
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.once('error', reject)
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout: out, stderr: err, ms: performance.now() - started })
    })
    child.stdin.end(input)
  })
}

// Everything made here is removed on exit, also after a failure, ^C or SIGTERM; the run gives
// up after 20 minutes.
installExitHandlers(20 * 60_000, '[bench:cni] benchmark')

// The containers' namespaces: every one made is deleted, at the latest on the way out.
const namespacesMade = new Set()
ownCleanup('network namespaces', () => deleteNetns([...namespacesMade]))
let nsCounter = 0
async function makeNetns() {
  const name = `fn-cnib-${process.pid.toString(36)}-${nsCounter++}`
  const r = await exec('ip', ['netns', 'add', name])
  if (r.code !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`)
  namespacesMade.add(name)
  return name
}
function deleteNetns(names) {
  for (const n of names) namespacesMade.delete(n)
  return Promise.all(names.map((n) => exec('ip', ['netns', 'del', n])))
}

async function main() {
  if (process.getuid?.() !== 0) throw new Error('needs root (network namespaces)')
  const work = ownDir(mkdtempSync(join(tmpdir(), 'fn-bench-cni-')))
  const id = `b${process.pid.toString(36)}`.slice(0, 8)
  const stateDir = join(work, 'lab')
  log('starting a one-host lab (Redis + agent)')
  ownCleanup('lab down', () => labDown({ stateDir }))
  const lab = await labUp({
    topology: readTopology('bench.yaml', 'apiVersion: flatnet.dev/v1alpha1\nkind: LabTopology\nnamespaces: {hosts: {}}\nhosts:\n- {name: node1, kind: k8s-node, namespace: hosts}\n'),
    stateDir,
    id,
    agentArgv: [process.execPath, FLATNET, 'agent', 'run'],
    logLevel: 'warn',
  })
  const hostNetns = `fn-lab-${id}-node1`
  const socket = lab.agentSockets.node1
  const install = await installCniPlugin({ binDir: join(work, 'cni-bin'), confDir: join(work, 'net.d'), agentSocket: socket })
  if (!install.native) throw new Error('the native front end is not built (npm run setup)')
  const plugin = [install.plugin]
  const nodePlugin = [install.nodePlugin]
  log(`plugin installed at ${install.plugin} (native front end; Node plugin ${install.nodePlugin}, runs ${install.nodePath})`)

  const netconf = (extra = {}) => JSON.stringify({ cniVersion: '1.0.0', name: 'flatnet', type: 'flatnet', agentSocket: socket, labels: { app: 'bench' }, ...extra })
  const addEnv = (cid, netns) => ({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: cid, CNI_NETNS: `/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: install.plugin, CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAME=${cid}` })
  const delEnv = (cid, netns) => ({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: cid, CNI_NETNS: `/run/netns/${netns}`, CNI_IFNAME: 'eth0', CNI_PATH: install.plugin })
  const must = (r, what) => {
    if (r.code !== 0) throw new Error(`${what} failed (${r.code}): ${r.stdout} ${r.stderr}`)
    return r
  }
  const results = { machine: { cpus: cpus().length, loadavgStart: loadavg().map((x) => Math.round(x * 100) / 100), node: process.version } }

  // (1) process start
  log('process start: node -e "" and the plugin\'s VERSION, 20 each')
  const nodeStart = []
  const version = []
  const nodeVersion = []
  const versionConf = JSON.stringify({ cniVersion: '1.0.0', agentSocket: socket })
  for (let i = 0; i < 20; i++) {
    nodeStart.push((await timed([process.execPath, '-e', ''], {}, '')).ms)
    version.push(must(await timed(plugin, { CNI_COMMAND: 'VERSION' }, versionConf), 'VERSION').ms)
    nodeVersion.push(must(await timed(nodePlugin, { CNI_COMMAND: 'VERSION' }, versionConf), 'VERSION').ms)
  }
  results.nodeStart = summary(nodeStart)
  results.version = summary(version)
  results.nodeVersion = summary(nodeVersion)

  // (2) sequential ADD and DEL through the plugin process, each form in turn
  const sequential = async (program, tag) => {
    log(`${SEQUENTIAL} sequential ADDs, then as many DELs (${tag})`)
    const seqNs = []
    for (let i = 0; i < SEQUENTIAL; i++) seqNs.push(await makeNetns())
    const seqAdd = []
    const seqDel = []
    for (let i = 0; i < SEQUENTIAL; i++) seqAdd.push(must(await timed(program, addEnv(`${tag}${i}`, seqNs[i]), netconf()), `ADD ${tag}${i}`).ms)
    for (let i = 0; i < SEQUENTIAL; i++) seqDel.push(must(await timed(program, delEnv(`${tag}${i}`, seqNs[i]), netconf()), `DEL ${tag}${i}`).ms)
    await deleteNetns(seqNs.splice(0))
    return { add: summary(seqAdd), del: summary(seqDel) }
  }
  results.sequential = await sequential(plugin, 'seq')
  results.nodeSequential = await sequential(nodePlugin, 'node')

  log(`${ROUNDS} rounds of ${PARALLEL} parallel ADDs, then ${PARALLEL} parallel DELs`)
  const parAdd = []
  const parDel = []
  const parRound = []
  for (let round = 0; round < ROUNDS; round++) {
    const nss = []
    for (let i = 0; i < PARALLEL; i++) nss.push(await makeNetns())
    const t = performance.now()
    const adds = await Promise.all(nss.map((ns, i) => timed(plugin, addEnv(`par${round}-${i}`, ns), netconf())))
    parRound.push(performance.now() - t)
    const ips = new Set(adds.map((r) => JSON.parse(must(r, 'parallel ADD').stdout).ips[0].address))
    if (ips.size !== PARALLEL) throw new Error(`${PARALLEL} parallel ADDs gave ${ips.size} distinct addresses`)
    const dels = await Promise.all(nss.map((ns, i) => timed(plugin, delEnv(`par${round}-${i}`, ns), netconf())))
    dels.forEach((r) => must(r, 'parallel DEL'))
    parAdd.push(...adds.map((r) => r.ms))
    parDel.push(...dels.map((r) => r.ms))
    await deleteNetns(nss)
  }
  results.parallel = { add: summary(parAdd), del: summary(parDel), wholeRoundOfAdds: summary(parRound) }

  // (3) where the time goes: the agent alone (no process), and ADD without the policy wait
  log('the agent alone: 100 ADD/DEL over the socket from this process (half without policy wait); 50 plugin ADDs with policyWaitMs 0')
  const client = new AgentClient({ socketPath: socket, timeoutMs: 30_000 })
  const agentAdd = []
  const agentAddNoWait = []
  const agentDel = []
  const ns0 = await makeNetns()
  for (let i = 0; i < 100; i++) {
    const wait = i % 2 === 0
    let t = performance.now()
    await client.post('/v1/cni/attachments', { network: 'flatnet', containerId: `api${i}`, ifname: 'eth0', netns: `/run/netns/${ns0}`, namespace: 'default', name: `api${i}`, labels: {}, labelsFrom: 'config', policyWaitMs: wait ? 10_000 : 0 })
    ;(wait ? agentAdd : agentAddNoWait).push(performance.now() - t)
    t = performance.now()
    await client.delete(`/v1/cni/attachments/flatnet/api${i}/eth0`)
    agentDel.push(performance.now() - t)
  }
  const noWait = []
  for (let i = 0; i < 50; i++) {
    noWait.push(must(await timed(plugin, addEnv(`nowait${i}`, ns0), netconf({ policyWaitMs: 0 })), 'ADD').ms)
    must(await timed(plugin, delEnv(`nowait${i}`, ns0), netconf()), 'DEL')
  }
  results.agentOnly = { add: summary(agentAdd), addWithoutPolicyWait: summary(agentAddNoWait), del: summary(agentDel) }
  results.addWithoutPolicyWait = summary(noWait)

  // (4) podman run, flatnet vs the default bridge network
  if (PODMAN_RUNS > 0) {
    const missing = podmanMissing()
    if (missing) {
      log(`podman skipped: ${missing}`)
      results.podman = { skipped: missing }
    } else {
      log(`podman run --rm ... true: ${PODMAN_RUNS} with flatnet, ${PODMAN_RUNS} with the default bridge, alternating`)
      const sandbox = new PodmanSandbox(join(work, 'podman'), hostNetns)
      ownCleanup('podman sandbox', () => sandbox.cleanup())
      await installCniPlugin({ binDir: sandbox.cniBin, confDir: sandbox.netDir, agentSocket: socket })
      const runOnce = async (network) => {
        const t = performance.now()
        const r = await sandbox.podman(['run', '--rm', '--network', network, '--rootfs', sandbox.rootfs, '/bin/true'])
        if (r.code !== 0) throw new Error(`podman run --network ${network}: ${r.stderr}`)
        return performance.now() - t
      }
      await runOnce('flatnet')
      await runOnce('podman')
      const withFlatnet = []
      const withBridge = []
      for (let i = 0; i < PODMAN_RUNS; i++) {
        withFlatnet.push(await runOnce('flatnet'))
        withBridge.push(await runOnce('podman'))
        await sleep(50)
      }
      results.podman = { flatnet: summary(withFlatnet), defaultBridge: summary(withBridge) }
    }
  }
  results.machine.loadavgEnd = loadavg().map((x) => Math.round(x * 100) / 100)

  await cleanUpEverything()
  return results
}

function report(r) {
  const row = (what, s) => `${what.padEnd(46)} ${String(s.p50).padStart(8)} ${String(s.p99).padStart(8)} ${String(s.n).padStart(5)}`
  const lines = [
    `machine: ${r.machine.cpus} CPUs, Node ${r.machine.node}, load average ${r.machine.loadavgStart.join(' ')} -> ${r.machine.loadavgEnd.join(' ')}`,
    `${'ms'.padEnd(46)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'n'.padStart(5)}`,
    row("node -e ''", r.nodeStart),
    row('VERSION (process)', r.version),
    row('ADD, sequential (process)', r.sequential.add),
    row('DEL, sequential (process)', r.sequential.del),
    row('Node plugin: VERSION (process)', r.nodeVersion),
    row('Node plugin: ADD, sequential (process)', r.nodeSequential.add),
    row('Node plugin: DEL, sequential (process)', r.nodeSequential.del),
    row(`ADD, ${PARALLEL} in parallel (process)`, r.parallel.add),
    row(`DEL, ${PARALLEL} in parallel (process)`, r.parallel.del),
    row(`all ${PARALLEL} parallel ADDs done`, r.parallel.wholeRoundOfAdds),
    row('ADD, agent only (socket, no process)', r.agentOnly.add),
    row('ADD, agent only, without policy wait', r.agentOnly.addWithoutPolicyWait),
    row('DEL, agent only (socket, no process)', r.agentOnly.del),
    row('ADD without policy wait (process)', r.addWithoutPolicyWait),
  ]
  if (r.podman?.flatnet) {
    lines.push(row('podman run --rm true, flatnet', r.podman.flatnet), row('podman run --rm true, default bridge', r.podman.defaultBridge))
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  const checks = [
    [`ADD p50 < ${TARGETS.addP50Ms} ms, process start included (native front end, as installed)`, r.sequential.add.p50 < TARGETS.addP50Ms],
    [`ADD p50 < ${TARGETS.addP50Ms} ms, Node's start included (the Node plugin)`, r.nodeSequential.add.p50 < TARGETS.addP50Ms],
  ]
  if (r.podman?.flatnet) checks.push(['podman run with flatnet no slower than with the default bridge (p50)', r.podman.flatnet.p50 <= r.podman.defaultBridge.p50])
  for (const [what, ok] of checks) process.stdout.write(`${ok ? 'PASS' : 'MISS'}  ${what}\n`)
  process.stdout.write(`${JSON.stringify(r)}\n`)
  return checks.every(([, ok]) => ok)
}

main().then(
  (r) => process.exit(report(r) ? 0 : 1),
  async (err) => {
    log(`failed: ${err.stack ?? err}`)
    await cleanUpEverything()
    process.exit(2)
  },
)
