// Part 1: a lab of three hosts (examples/lab/netpol-3x3.yaml: real agents in network
// namespaces, userspace WireGuard between them, nftables enforcement), and a policy applied and
// deleted in turn. For each change: how long after the store write returned did the probes show
// the new verdict for a flow into each host, i.e. on every host.
//
//   flows (one per host, each across the overlay):  x/b -> x/a:80 (vm)   y/b -> y/a:80 (baremetal)
//                                                   z/b -> z/a:80 (k8s-node)
//   change:  ClusterNetworkPolicy bench-flip (Admin Deny into pod=a from every namespace), put / delete
//
// Probing: every `probeIntervalMs` each flow's source daemon opens a new TCP connection (timeout
// `probeTimeoutMs`); the flip of a flow is the send time of the first probe after which every
// probe of that flow shows the new verdict (answered <-> timed out). Its resolution is the
// probing interval. A change counts when the last of the three flows has flipped.
import { randomBytes } from 'node:crypto'
import { cpus } from 'node:os'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { AgentClient } from '../../packages/agent/dist/src/api/client.js'
import { DaemonClient, labDown, labUp, loadTopology, readLabState } from '../../packages/lab/dist/src/index.js'
import { loadObjects } from '../../packages/policy/dist/src/index.js'
import { applyObjects, connectRedis, deleteRefs, FlatnetStore } from '../../packages/store/dist/src/index.js'
import { BenchError, ownCleanup } from '../lib/cleanup.js'
import { sleep, wallNow } from '../lib/clock.js'
import { log } from '../lib/log.js'
import { cpuSample, cpuSecondsOf, cpuShare, memoryOf } from '../lib/proc.js'
import { stats } from '../lib/stats.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
export const LAB_TOPOLOGY = join(ROOT, 'examples', 'lab', 'netpol-3x3.yaml')
const FLATNET = join(ROOT, 'packages', 'cli', 'bin', 'flatnet.js')

export const LAB_DEFAULTS = Object.freeze({
  changes: 50,
  probeIntervalMs: 20,
  probeTimeoutMs: 300,
  /** A flip counts once this many probes in a row (per flow) after it agree. */
  stableProbes: 10,
  /** Give up on a change after this long. */
  changeTimeoutMs: 15_000,
  /** Quiet time between changes. */
  pauseMs: 300,
})

const FLIP = {
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'bench-flip' },
  spec: {
    tier: 'Admin',
    priority: 1,
    subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { pod: 'a' } } } },
    ingress: [{ name: 'nobody', action: 'Deny', from: [{ namespaces: {} }] }],
  },
}

/** One flow into each host: pod a of each namespace (one per host in the Latin square) from pod b of the same namespace. */
function chooseFlows(state) {
  const byKey = new Map(state.endpoints.map((e) => [e.key, e]))
  const flows = ['x', 'y', 'z'].map((ns) => {
    const to = byKey.get(`${ns}/a`)
    const from = byKey.get(`${ns}/b`)
    if (!to || !from) throw new BenchError(`the lab has no ${ns}/a or ${ns}/b: the benchmark needs ${LAB_TOPOLOGY}`)
    return { from, to, ip: to.addresses.find((a) => a.includes('.')), port: 80, expect: `${to.key} 80/TCP` }
  })
  const hosts = new Set(flows.map((f) => f.to.host))
  if (hosts.size !== state.hosts.length) throw new BenchError(`the flows reach ${[...hosts].join(', ')}, not every host`)
  if (flows.some((f) => f.from.host === f.to.host)) throw new BenchError('every flow must cross hosts')
  return flows
}

/**
 * Probes every flow every `intervalMs` until stopped; each probe recorded as
 * {sentAt, state: 'allowed' | 'denied' | 'other', ms}.
 */
function startProber(flows, clients, o) {
  const records = flows.map(() => [])
  const inFlight = new Set()
  let timer
  const fire = () => {
    flows.forEach((f, i) => {
      const rec = { sentAt: wallNow(), state: undefined, ms: NaN }
      records[i].push(rec)
      const p = clients[i]
        .probe({ ip: f.ip, port: f.port, protocol: 'TCP', timeoutMs: o.probeTimeoutMs })
        .then(
          (r) => {
            rec.state = r.ok && r.reply === f.expect ? 'allowed' : r.result === 'timeout' ? 'denied' : 'other'
            rec.ms = r.ms
          },
          () => (rec.state = 'other'),
        )
        .finally(() => inFlight.delete(p))
      inFlight.add(p)
    })
  }
  fire()
  timer = setInterval(fire, o.probeIntervalMs)
  return {
    records,
    async stop() {
      clearInterval(timer)
      await Promise.all([...inFlight])
    },
  }
}

/** The send time of the first probe of the final run showing `want`, if that run is `stable` long. */
function flipOf(records, want, stable) {
  const done = records.filter((r) => r.state !== undefined)
  // Results arrive out of order (a timeout resolves late): only a prefix with every probe resolved counts.
  const firstOpen = records.findIndex((r) => r.state === undefined)
  const settled = firstOpen === -1 ? done : records.slice(0, firstOpen)
  let start = settled.length
  while (start > 0 && settled[start - 1].state === want) start--
  if (settled.length - start < stable) return undefined
  return settled[start]
}

export async function runLabPart(options = {}) {
  const o = { ...LAB_DEFAULTS, ...options }
  const stateDir = mkdtempSync(join(tmpdir(), 'fn-lab-prop-'))
  const id = `p${process.pid.toString(36)}${randomBytes(3).toString('hex')}`.slice(0, 8)
  const down = ownCleanup('lab down', async () => {
    await labDown({ stateDir })
    rmSync(stateDir, { recursive: true, force: true })
  })
  let store
  const clients = []
  try {
    log(`(1) lab: building ${LAB_TOPOLOGY} as lab ${id} in ${stateDir}`)
    const t0 = wallNow()
    const lab = await labUp({ topology: await loadTopology(LAB_TOPOLOGY), stateDir, id, agentArgv: [process.execPath, FLATNET, 'agent', 'run'], logLevel: 'warn' })
    const upMs = wallNow() - t0
    const state = readLabState(stateDir)
    const flows = chooseFlows(state)
    log(`  lab up in ${(upMs / 1000).toFixed(1)} s; flows ${flows.map((f) => `${f.from.key}(${f.from.host}) -> ${f.to.key}(${f.to.host}):80`).join(', ')}`)
    store = new FlatnetStore({ redis: connectRedis(lab.redisUrl, { connectTimeoutMs: 2000, commandTimeoutMs: 5000 }), where: 'lab' }, { cluster: 'default', commandTimeoutMs: 5000 })
    for (const f of flows) clients.push(await DaemonClient.connect(f.from.key, f.from.socket))
    const hosts = Object.keys(lab.agentSockets)
    const agentStatus = (host) => new AgentClient({ socketPath: lab.agentSockets[host], timeoutMs: 3000 }).get('/v1/status')
    const agentPids = Object.fromEntries(state.processes.filter((p) => p.name.startsWith('agent ')).map((p) => [p.name.slice(6), p.pid]))

    // The apply is what `flatnet policy apply -f` does; the delete what `flatnet policy delete` does.
    const loaded = loadObjects([{ file: 'bench-flip.yaml', text: stringify(FLIP) }], { accept: 'any' })
    const refs = [{ kind: 'ClusterNetworkPolicy', key: 'bench-flip', display: 'ClusterNetworkPolicy bench-flip' }]

    // Every flow allowed before the first change (the WireGuard sessions are up).
    const warm = startProber(flows, clients, o)
    const warmDeadline = wallNow() + 20_000
    while (flows.some((_, i) => !flipOf(warm.records[i], 'allowed', o.stableProbes))) {
      if (wallNow() > warmDeadline) {
        await warm.stop()
        throw new BenchError(`not every flow answers before the first change: ${flows.map((f, i) => `${f.from.key} -> ${f.to.key}: ${warm.records[i].slice(-5).map((r) => r.state).join(',')}`).join('; ')}`)
      }
      await sleep(50)
    }
    await warm.stop()

    const cpu0 = Object.fromEntries(hosts.map((h) => [h, cpuSecondsOf(agentPids[h])]))
    // Everything of the lab counts as ours (agents, redis, endpoint daemons); the rest of the machine as others.
    const labPids = state.processes.map((p) => p.pid).filter((pid) => pid !== undefined)
    const machine0 = cpuSample(labPids)
    const changes = []
    for (let i = 0; i < o.changes; i++) {
      const deny = i % 2 === 0
      const want = deny ? 'denied' : 'allowed'
      const prober = startProber(flows, clients, o)
      await sleep(3 * o.probeIntervalMs)
      const writeStart = wallNow()
      const outcome = deny ? await applyObjects(store, loaded) : await deleteRefs(store, refs)
      const written = wallNow()
      const deadline = written + o.changeTimeoutMs
      while (flows.some((_, k) => !flipOf(prober.records[k], want, o.stableProbes)) && wallNow() < deadline) await sleep(o.probeIntervalMs)
      await prober.stop()
      const flips = flows.map((_, k) => flipOf(prober.records[k], want, o.stableProbes))
      if (flips.some((f) => !f)) {
        const tail = flows.map((f, k) => `${f.to.key}: ${prober.records[k].slice(-8).map((r) => r.state).join(',')}`).join('; ')
        throw new BenchError(`change ${i + 1} (${deny ? 'apply' : 'delete'}, revision ${outcome.revision}) did not show on every host within ${o.changeTimeoutMs} ms: ${tail}`)
      }
      const perFlow = flips.map((f) => f.sentAt - written)
      // What the agents say about the same revision: when they applied it, and how long the pass took.
      const applied = {}
      const statusDeadline = wallNow() + 10_000
      for (const h of hosts) {
        for (;;) {
          const s = await agentStatus(h)
          if ((s.applied?.revision ?? 0) >= outcome.revision) {
            applied[h] = { revision: s.applied.revision, afterWriteMs: Date.parse(s.applied.at) - written, durationMs: s.applied.durationMs }
            break
          }
          if (wallNow() > statusDeadline) throw new BenchError(`agent ${h} did not report revision ${outcome.revision}`)
          await sleep(20)
        }
      }
      changes.push({ change: i + 1, op: deny ? 'apply' : 'delete', revision: outcome.revision, writeMs: written - writeStart, flipMs: Math.max(...perFlow), perFlow, applied })
      log(`  change ${String(i + 1).padStart(2)} ${deny ? 'apply ' : 'delete'} rev ${outcome.revision}: every host flipped after ${Math.max(...perFlow).toFixed(0)} ms (${flows.map((f, k) => `${f.to.host} ${perFlow[k].toFixed(0)}`).join(', ')}); agents applied at ${hosts.map((h) => applied[h].afterWriteMs.toFixed(0)).join('/')} ms, pass ${hosts.map((h) => applied[h].durationMs).join('/')} ms`)
      await sleep(o.pauseMs)
    }
    const cpu = Object.fromEntries(hosts.map((h) => [h, (cpuSecondsOf(agentPids[h]) ?? NaN) - (cpu0[h] ?? NaN)]))
    const memory = Object.fromEntries(hosts.map((h) => [h, memoryOf(agentPids[h])]))
    const machine = cpuShare(machine0, cpuSample(labPids), cpus().length)
    const every = changes.flatMap((c) => hosts.map((h) => c.applied[h]))
    return {
      id,
      upMs,
      hosts,
      flows: flows.map((f) => ({ from: f.from.key, to: f.to.key, host: f.to.host, port: f.port })),
      options: { probeIntervalMs: o.probeIntervalMs, probeTimeoutMs: o.probeTimeoutMs, stableProbes: o.stableProbes },
      changes,
      flip: stats(changes.map((c) => c.flipMs)),
      flipApply: stats(changes.filter((c) => c.op === 'apply').map((c) => c.flipMs)),
      flipDelete: stats(changes.filter((c) => c.op === 'delete').map((c) => c.flipMs)),
      perFlow: stats(changes.flatMap((c) => c.perFlow)),
      write: stats(changes.map((c) => c.writeMs)),
      agentApplied: stats(every.map((a) => a.afterWriteMs)),
      agentPass: stats(every.map((a) => a.durationMs)),
      agentCpuSeconds: cpu,
      agentMemory: memory,
      machine,
    }
  } finally {
    for (const c of clients) c.close()
    await store?.close().catch(() => undefined)
    log('  lab down')
    await down()
  }
}
