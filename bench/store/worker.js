// A child process of the store benchmark: one writer client (role "apply"), a group of watchers
// ("watch") or one IPAM client ("ipam"). Separate processes, so that concurrent clients do not
// share one event loop and one connection, as they would not in a real deployment.
//
// It is driven by run.js over the IPC channel and ends when told to, when that channel closes
// (the parent died), or at the latest after its own time limit.
import { performance } from 'node:perf_hooks'
import { loadObjects } from '../../packages/policy/dist/src/index.js'
import { applyObjects, connectRedis, FlatnetStore, Ipam, refOf, storedManifest } from '../../packages/store/dist/src/index.js'
import { sleep, wallNow } from '../lib/clock.js'
import { yamlTexts } from '../lib/manifests.js'
import { rssOf } from '../lib/proc.js'
import { policyManifests } from './manifests.js'

const role = process.argv[2]
const LIFETIME_MS = 240_000
const TIMEOUT_MS = 10_000

if (typeof process.send !== 'function') {
  console.error('worker.js is started by bench/store/run.js')
  process.exit(2)
}
const send = (msg) => process.send(msg)
process.on('disconnect', () => process.exit(0))
setTimeout(() => {
  console.error(`bench worker ${role} (pid ${process.pid}): still running after ${LIFETIME_MS} ms, exiting`)
  process.exit(1)
}, LIFETIME_MS).unref()

function makeStore(url, cluster) {
  const redis = connectRedis(url, { connectTimeoutMs: TIMEOUT_MS, commandTimeoutMs: TIMEOUT_MS })
  return new FlatnetStore({ redis, where: url }, { cluster, commandTimeoutMs: TIMEOUT_MS })
}

const load = (text, i) => loadObjects([{ file: `policies-${i}.yaml`, text }], { accept: 'policy' })
// What applyObjects would write for these objects, computed ahead so that only the write is timed.
const opsOf = (loaded) =>
  loaded.policies.map((o) => {
    const ref = refOf(o)
    return { op: 'put', kind: ref.kind, key: ref.key, value: storedManifest(o) }
  })

// ---------------------------------------------------------------- apply

let applyPlan

async function prepareApply({ url, cluster, prefix, count, batch, mode, warmup }) {
  const store = makeStore(url, cluster)
  const texts = yamlTexts(policyManifests(prefix, count), batch)
  const ops = mode === 'write' ? texts.map((t, i) => opsOf(load(t, i))) : undefined
  let loadMs = 0
  const one =
    mode === 'write'
      ? (i, list) => store.write(list[i])
      : async (i, list) => {
          const t0 = performance.now()
          const loaded = load(list[i], i)
          loadMs += performance.now() - t0
          return (await applyObjects(store, loaded)).documents
        }
  // Warm-up on other keys: the timed run should see a JIT-compiled client, as a busy CLI or
  // controller would, not pay for compilation in its first hundred applies.
  const warmTexts = yamlTexts(policyManifests(`${prefix}-warm`, warmup), batch)
  const warmList = mode === 'write' ? warmTexts.map((t, i) => opsOf(load(t, i))) : warmTexts
  for (let i = 0; i < warmList.length; i++) await one(i, warmList)
  applyPlan = { store, list: ops ?? texts, one, count, loadMs: () => loadMs }
  send({ type: 'prepared', rss: process.memoryUsage().rss })
}

async function runApply({ at }) {
  const { store, list, one, count, loadMs } = applyPlan
  const latencies = new Float64Array(list.length)
  let created = 0
  while (wallNow() < at) await sleep(Math.min(5, at - wallNow()))
  const startWall = wallNow()
  const cpu0 = process.cpuUsage()
  const load0 = loadMs()
  for (let i = 0; i < list.length; i++) {
    const t0 = performance.now()
    const out = await one(i, list)
    latencies[i] = performance.now() - t0
    const results = Array.isArray(out) ? out.map((d) => d.result) : out.results
    for (const r of results) if (r === 'created') created++
  }
  const endWall = wallNow()
  const cpu = process.cpuUsage(cpu0)
  send({ type: 'done', startWall, endWall, applies: list.length, policies: count, created, cpuMicros: cpu.user + cpu.system, loadMs: loadMs() - load0, latencies: Array.from(latencies), rss: process.memoryUsage().rss })
  await store.close()
}

// ---------------------------------------------------------------- watch

let watchers
let watchCpu0

async function startWatchers({ url, cluster, count, chunk }) {
  const list = []
  let errors = 0
  let resyncs = 0
  let lastError = ''
  for (let from = 0; from < count; from += chunk) {
    const group = []
    for (let i = from; i < Math.min(count, from + chunk); i++) {
      // A store and a watch per watcher: an agent's two connections, its commands and its feed reader.
      const store = makeStore(url, cluster)
      const entry = { store, watch: undefined, syncRevision: 0, arrivals: new Map() }
      entry.watch = store.watch({
        kinds: ['NetworkPolicy'],
        onEvent: (e) => {
          if (e.type === 'put' || e.type === 'delete') {
            if (e.revision > entry.syncRevision && !entry.arrivals.has(e.revision)) entry.arrivals.set(e.revision, wallNow())
          } else if (e.type === 'error') {
            errors++
            lastError = e.error.message
          } else if (e.type === 'in-sync' && e.resynced) resyncs++
        },
      })
      group.push(entry)
    }
    await Promise.all(group.map(async (entry) => (entry.syncRevision = await entry.watch.whenInSync())))
    list.push(...group)
  }
  watchers = { list, stats: () => ({ errors, resyncs, lastError }) }
  send({ type: 'ready', revisions: [...new Set(list.map((e) => e.syncRevision))], rss: process.memoryUsage().rss })
}

/** Marks the start of the applies, for the CPU time the watchers spend on them. */
function markWatchers() {
  watchCpu0 = process.cpuUsage()
  send({ type: 'marked' })
}

async function collectArrivals({ revisions, timeoutMs }) {
  const last = Math.max(...revisions)
  const deadline = Date.now() + timeoutMs
  while (watchers.list.some((e) => e.watch.revision < last) && Date.now() < deadline) await sleep(20)
  const cpu = process.cpuUsage(watchCpu0)
  const behind = watchers.list.filter((e) => e.watch.revision < last).length
  // times[r][w]: when watcher w of this process first saw revision revisions[r]; null if never.
  const times = revisions.map((rev) => watchers.list.map((e) => e.arrivals.get(rev) ?? null))
  send({ type: 'arrivals', times, behind, cpuMicros: cpu.user + cpu.system, ...watchers.stats(), rss: process.memoryUsage().rss })
}

async function stopWatchers() {
  await Promise.all(watchers.list.map(async (e) => {
    await e.watch.stop()
    await e.store.close()
  }))
  send({ type: 'stopped' })
}

// ---------------------------------------------------------------- ipam

let ipamPlan

async function prepareIpam({ url, cluster, pool, nodes, count, handlePrefix, warmup }) {
  const store = makeStore(url, cluster)
  const ipam = new Ipam(store)
  const ips = []
  // The warm-up allocates for real (other handles, same nodes): its addresses are checked too.
  for (let i = 0; i < warmup; i++) ips.push((await ipam.allocate({ node: nodes[i % nodes.length], handle: `${handlePrefix}-warm-${i}`, pool })).ip)
  ipamPlan = { store, ipam, pool, nodes, count, handlePrefix, warmIps: ips }
  send({ type: 'prepared', rss: process.memoryUsage().rss })
}

async function runIpam({ at }) {
  const { store, ipam, pool, nodes, count, handlePrefix, warmIps } = ipamPlan
  const ips = new Array(count)
  const latencies = new Float64Array(count)
  while (wallNow() < at) await sleep(Math.min(5, at - wallNow()))
  const startWall = wallNow()
  const cpu0 = process.cpuUsage()
  for (let i = 0; i < count; i++) {
    const t0 = performance.now()
    ips[i] = (await ipam.allocate({ node: nodes[i % nodes.length], handle: `${handlePrefix}-${i}`, pool })).ip
    latencies[i] = performance.now() - t0
  }
  const endWall = wallNow()
  const cpu = process.cpuUsage(cpu0)
  send({ type: 'done', startWall, endWall, allocations: count, cpuMicros: cpu.user + cpu.system, ips: [...warmIps, ...ips], latencies: Array.from(latencies), rss: process.memoryUsage().rss })
  await store.close()
}

// ---------------------------------------------------------------- dispatch

const handlers = {
  ping: (msg) => send({ type: 'pong', id: msg.id, wall: wallNow() }),
  'apply-prepare': prepareApply,
  'apply-run': runApply,
  'watch-start': startWatchers,
  'watch-mark': markWatchers,
  'watch-collect': collectArrivals,
  'watch-stop': stopWatchers,
  'ipam-prepare': prepareIpam,
  'ipam-run': runIpam,
  exit: () => process.exit(0),
}

process.on('message', (msg) => {
  const handler = handlers[msg.type]
  Promise.resolve()
    .then(() => {
      if (!handler) throw new Error(`unknown message ${msg.type}`)
      return handler(msg)
    })
    .catch((err) => {
      // The parent names the worker (role and pid) when it reports this.
      send({ type: 'error', message: `${err?.stack ?? err}` })
      setTimeout(() => process.exit(1), 100)
    })
})
send({ type: 'hello', pid: process.pid, rss: rssOf(process.pid) })
