// Part 2: 200 control-plane-only agents (packages/agent's Agent with `dataPlane: false`, in 4
// worker processes of 50) against one redis-server on a unix socket. The store first holds a
// cluster (cluster.js: namespaces, Pods dealt over the nodes, NetworkPolicies, cluster tiers);
// then a ClusterNetworkPolicy is applied and deleted in turn. For each change: how long after
// the write returned did the store's status hash show every agent at the new revision (polled
// every `pollMs`), and, from the agents' own reports, when each saw it and applied it.
import { mkdtempSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { loadObjects } from '../../packages/policy/dist/src/index.js'
import { applyObjects, connectRedis, deleteRefs, FlatnetStore, Ipam, NodeRegistry, storeKeys } from '../../packages/store/dist/src/index.js'
import { clusterDocuments, FLIP_POLICY } from './cluster.js'
import { BenchError, ownDir, removeDir } from '../lib/cleanup.js'
import { sleep, wallNow } from '../lib/clock.js'
import { log } from '../lib/log.js'
import { cpuSample, cpuSecondsOf, cpuShare, memoryOf } from '../lib/proc.js'
import { spawnWorker, stopProcess } from '../lib/processes.js'
import { startRedis } from '../lib/redis.js'
import { stats } from '../lib/stats.js'

const HERE = dirname(fileURLToPath(import.meta.url))

export const AGENTS_DEFAULTS = Object.freeze({
  agents: 200,
  processes: 4,
  changes: 24,
  namespaces: 20,
  podsPerNamespace: 20,
  /** How often the status hash is read while waiting for the agents. */
  pollMs: 5,
  /** Joins in flight per worker process. */
  joinConcurrency: 5,
  changeTimeoutMs: 60_000,
  pauseMs: 300,
})

const nodeName = (i) => `cp-${String(i).padStart(3, '0')}`
/** Addresses from the benchmarking range 198.18.0.0/15; only published, never used. */
const underlay = (i) => `198.18.${Math.floor((i + 1) / 250)}.${((i + 1) % 250) + 1}`

export async function runAgentsPart(options = {}) {
  const o = { ...AGENTS_DEFAULTS, ...options }
  const dir = ownDir(mkdtempSync(join(tmpdir(), 'flatnet-bench-propagation-')))
  const workers = []
  let redis
  let pollRedisClient
  const stores = []
  try {
    redis = await startRedis(dir, { maxClients: Math.max(4096, o.agents * 4 + 256) })
    const newStore = () => {
      const s = new FlatnetStore({ redis: connectRedis(redis.url, { commandTimeoutMs: 30_000 }), where: 'bench' }, { cluster: 'default', commandTimeoutMs: 30_000 })
      stores.push(s)
      return s
    }
    const store = newStore()
    // The status poll reads only the reports still missing (HMGET), so that it costs less as agents report.
    const pollRedis = (pollRedisClient = connectRedis(redis.url, { commandTimeoutMs: 30_000 }))
    const poller = { store, redis: pollRedis, key: storeKeys('default').status }
    const ipam = new Ipam(store)
    await ipam.ensurePool({ name: 'default', cidr: '10.128.0.0/12', blockPrefix: 26 })
    const token = (await new NodeRegistry(store, ipam).createToken({ ttlSeconds: 3600, description: 'bench/propagation' })).token
    const nodes = Array.from({ length: o.agents }, (_, i) => ({ name: nodeName(i), underlay: underlay(i) }))
    const cluster = clusterDocuments({ nodes: nodes.map((n) => n.name), namespaces: o.namespaces, podsPerNamespace: o.podsPerNamespace })
    for (const [i, text] of cluster.texts.entries()) await applyObjects(store, loadObjects([{ file: `cluster-${i}.yaml`, text }], { accept: 'any' }))
    const c = cluster.counts
    log(`(2) ${o.agents} control-plane agents in ${o.processes} processes; redis-server ${redis.version} pid ${redis.pid} on ${redis.socket}; store: ${c.namespaces} namespaces, ${c.pods} Pods, ${c.networkPolicies} NetworkPolicies, ${c.clusterNetworkPolicies} ClusterNetworkPolicies`)

    // ---- start
    const machine0 = cpuSample([redis.pid])
    const redisCpu0 = await redis.cpuSeconds()
    const t0 = wallNow()
    for (let p = 0; p < o.processes; p++) workers.push(spawnWorker(join(HERE, 'agent-worker.js')))
    await Promise.all(workers.map((w) => w.next('hello', 15_000)))
    const per = Math.ceil(o.agents / o.processes)
    workers.forEach((w, p) => w.send({ type: 'start', redisUrl: redis.url, token, dir: join(dir, `worker-${p}`), nodes: nodes.slice(p * per, (p + 1) * per), concurrency: o.joinConcurrency }))
    await Promise.all(workers.map((w) => w.next('started', 600_000)))
    const joinedMs = wallNow() - t0
    // Settled: every agent reports the store's current revision.
    const settleRevision = await store.revision()
    await waitReported(poller, nodes, settleRevision, 0, 120_000, o.pollMs)
    const settledMs = wallNow() - t0
    const startCpu = {
      machine: cpuShare(machine0, cpuSample([redis.pid, ...workers.map((w) => w.pid)]), cpus().length),
      redisSeconds: (await redis.cpuSeconds()) - redisCpu0,
      workerSeconds: workers.map((w) => cpuSecondsOf(w.pid)),
    }
    log(`  all ${o.agents} joined and applied in ${(joinedMs / 1000).toFixed(1)} s, all reporting revision ${settleRevision} after ${(settledMs / 1000).toFixed(1)} s`)

    // ---- changes
    const loaded = loadObjects([{ file: 'bench-quarantine.yaml', text: stringify(FLIP_POLICY) }], { accept: 'any' })
    const refs = [{ kind: 'ClusterNetworkPolicy', key: FLIP_POLICY.metadata.name, display: `ClusterNetworkPolicy ${FLIP_POLICY.metadata.name}` }]
    const workerCpu0 = workers.map((w) => cpuSecondsOf(w.pid))
    const redisCpuChanges0 = await redis.cpuSeconds()
    const machineChanges0 = cpuSample([redis.pid, ...workers.map((w) => w.pid)])
    const parentCpu0 = process.cpuUsage()
    const changes = []
    for (let i = 0; i < o.changes; i++) {
      const put = i % 2 === 0
      const writeStart = wallNow()
      const outcome = put ? await applyObjects(store, loaded) : await deleteRefs(store, refs)
      const written = wallNow()
      const seen = await waitReported(poller, nodes, outcome.revision, written, o.changeTimeoutMs, o.pollMs)
      const reported = [...seen.firstSeen.values()].map((t) => t - written)
      // The agents' own reports of this revision (their clock is this machine's): seen and applied.
      const observed = []
      const applied = []
      for (const n of nodes) {
        const r = seen.last.get(n.name)
        if (r?.observedRevision === outcome.revision && r.observedAt) observed.push(Date.parse(r.observedAt) - written)
        if (r?.revision === outcome.revision) applied.push(Date.parse(r.appliedAt) - written)
      }
      const passes = (await Promise.all(workers.map(async (w) => (w.send({ type: 'applied' }), (await w.next('applied', 10_000)).agents)))).flat()
      const passMs = passes.filter((a) => a.revision === outcome.revision).map((a) => a.durationMs)
      const ch = {
        change: i + 1,
        op: put ? 'apply' : 'delete',
        revision: outcome.revision,
        writeMs: written - writeStart,
        allMs: Math.max(...reported),
        reported: stats(reported),
        observed: stats(observed),
        applied: stats(applied),
        pass: stats(passMs),
        polls: seen.polls,
      }
      changes.push(ch)
      log(`  change ${String(i + 1).padStart(2)} ${put ? 'apply ' : 'delete'} rev ${outcome.revision}: all ${o.agents} reported after ${ch.allMs.toFixed(0)} ms (median agent ${ch.reported.p50.toFixed(0)} ms; saw it p50 ${ch.observed.p50.toFixed(0)} ms, applied p50 ${ch.applied.p50.toFixed(0)} / max ${ch.applied.max.toFixed(0)} ms; pass p50 ${ch.pass.p50.toFixed(1)} ms; ${seen.polls} polls)`)
      await sleep(o.pauseMs)
    }
    const changesCpu = {
      machine: cpuShare(machineChanges0, cpuSample([redis.pid, ...workers.map((w) => w.pid)]), cpus().length),
      redisSeconds: (await redis.cpuSeconds()) - redisCpuChanges0,
      workerSeconds: workers.map((w, p) => (cpuSecondsOf(w.pid) ?? NaN) - (workerCpu0[p] ?? NaN)),
      // The writer and the status poll.
      parentSeconds: (() => {
        const u = process.cpuUsage(parentCpu0)
        return (u.user + u.system) / 1e6
      })(),
    }
    const memory = workers.map((w) => memoryOf(w.pid))
    const redisMemory = memoryOf(redis.pid)

    // ---- stop
    const s0 = wallNow()
    workers.forEach((w) => w.send({ type: 'stop' }))
    await Promise.all(workers.map((w) => w.next('stopped', 120_000)))
    const stopMs = wallNow() - s0
    const all = changes.map((ch) => ch.allMs)
    return {
      agents: o.agents,
      processes: o.processes,
      pollMs: o.pollMs,
      redis: { version: redis.version, peakRss: redisMemory.peak },
      store: c,
      joinedMs,
      settledMs,
      stopMs,
      startCpu,
      changesCpu,
      memory,
      changes,
      all: stats(all),
      allApply: stats(changes.filter((ch) => ch.op === 'apply').map((ch) => ch.allMs)),
      allDelete: stats(changes.filter((ch) => ch.op === 'delete').map((ch) => ch.allMs)),
      medianReported: stats(changes.map((ch) => ch.reported.p50)),
      lastApplied: stats(changes.map((ch) => ch.applied.max)),
      medianApplied: stats(changes.map((ch) => ch.applied.p50)),
      lastObserved: stats(changes.map((ch) => ch.observed.max)),
      pass: stats(changes.map((ch) => ch.pass.p50)),
      passMax: stats(changes.map((ch) => ch.pass.max)),
      write: stats(changes.map((ch) => ch.writeMs)),
    }
  } finally {
    pollRedisClient?.disconnect()
    for (const s of stores) await s.close().catch(() => undefined)
    for (const w of workers) await w.stop().catch(() => undefined)
    if (redis) await stopProcess(redis.child, 'SIGTERM', 10_000)
    removeDir(dir)
  }
}

/**
 * Reads the status hash every `pollMs` (only the nodes that have not reported yet) until every
 * node reports `revision` or later; when each was first seen there, and then every report.
 */
async function waitReported(poller, nodes, revision, since, timeoutMs, pollMs) {
  const firstSeen = new Map()
  const deadline = wallNow() + timeoutMs
  let pending = nodes.map((n) => n.name)
  let polls = 0
  for (;;) {
    const values = await poller.redis.hmget(poller.key, ...pending)
    const now = wallNow()
    polls++
    const still = []
    pending.forEach((name, i) => {
      const raw = values[i]
      const rev = raw ? Number(/"revision":(\d+)/.exec(raw)?.[1] ?? -1) : -1
      if (rev >= revision) firstSeen.set(name, now)
      else still.push(name)
    })
    pending = still
    if (pending.length === 0) return { firstSeen, last: await poller.store.listStatus(), polls }
    if (now > deadline) {
      const status = await poller.store.listStatus()
      const missing = pending.map((name) => `${name}@${status.get(name)?.revision ?? 'none'}`)
      throw new BenchError(`${missing.length} of ${nodes.length} agents did not report revision ${revision} within ${timeoutMs} ms (${since ? `${(now - since).toFixed(0)} ms after the write` : 'settling'}): ${missing.slice(0, 10).join(', ')}${missing.length > 10 ? ', ...' : ''}`)
    }
    await sleep(pollMs)
  }
}
