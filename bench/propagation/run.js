// Propagation benchmark: how long a policy change takes to be enforced everywhere.
//
//   (1) lab: three hosts with real agents (network namespaces, WireGuard, nftables); a policy
//       applied and deleted 50 times; time from the store write returning until real probes show
//       the new verdict on every host. Needs root.
//   (2) 200 control-plane-only agents in 4 processes against one Redis; 24 changes; time from
//       the write returning until all 200 report the new revision in the store.
//
// Usage: node bench/propagation/run.js [--quick] [--lab-only | --agents-only]
//          [--lab-changes N] [--probe-ms N] [--agents N] [--processes N] [--agent-changes N] [--poll-ms N]
//        (`npm run bench:propagation` builds first.) Exits 1 when a target is missed, 2 when it fails.
import { cpus, loadavg } from 'node:os'
import { readArgs } from '../lib/args.js'
import { cleanUpEverything, installExitHandlers } from '../lib/cleanup.js'
import { wallNow } from '../lib/clock.js'
import { log } from '../lib/log.js'
import { allTargetsMet, printReport, targetsOf } from '../lib/report.js'
import { runAgentsPart, AGENTS_DEFAULTS } from './agents.js'
import { LAB_DEFAULTS, runLabPart } from './lab.js'

const KNOWN = ['--quick', '--lab-only', '--agents-only', '--lab-changes', '--probe-ms', '--agents', '--processes', '--agent-changes', '--poll-ms']
const usage = (message) => {
  log(`${message}\nusage: node bench/propagation/run.js [--quick] [--lab-only | --agents-only] [--lab-changes N] [--probe-ms N] [--agents N] [--processes N] [--agent-changes N] [--poll-ms N]`)
  process.exit(2)
}
const { flag, option } = readArgs(process.argv.slice(2), { known: KNOWN, usage })
if (flag('--lab-only') && flag('--agents-only')) usage('--lab-only and --agents-only exclude each other')
const QUICK = flag('--quick')
const RUN_LAB = !flag('--agents-only')
const RUN_AGENTS = !flag('--lab-only')
const LAB_CHANGES = option('--lab-changes', QUICK ? 10 : LAB_DEFAULTS.changes)
const PROBE_MS = option('--probe-ms', LAB_DEFAULTS.probeIntervalMs)
const AGENTS = option('--agents', QUICK ? 40 : AGENTS_DEFAULTS.agents)
const PROCESSES = option('--processes', AGENTS_DEFAULTS.processes)
const AGENT_CHANGES = option('--agent-changes', QUICK ? 6 : AGENTS_DEFAULTS.changes)
const POLL_MS = option('--poll-ms', AGENTS_DEFAULTS.pollMs)
const TARGETS = Object.freeze({ labP99Ms: 1000, agentsP99Ms: 2000 })

installExitHandlers(30 * 60_000, 'propagation benchmark')

if (RUN_LAB && process.getuid?.() !== 0) {
  log('the lab part needs root (network namespaces); run as root, or pass --agents-only')
  process.exit(2)
}

const started = wallNow()
const loadBefore = loadavg()
log(`propagation benchmark: ${cpus().length} CPUs, node ${process.version}, load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')}`)
let lab
let agents
try {
  if (RUN_LAB) lab = await runLabPart({ changes: LAB_CHANGES, probeIntervalMs: PROBE_MS })
  if (RUN_AGENTS) agents = await runAgentsPart({ agents: AGENTS, processes: PROCESSES, changes: AGENT_CHANGES, pollMs: POLL_MS })
} finally {
  await cleanUpEverything()
}
const loadAfter = loadavg()

// ---------------------------------------------------------------- report

const mib = (b) => (Number.isFinite(b) ? `${(b / 1024 ** 2).toFixed(0)} MiB` : 'n/a')
const msf = (x) => (Number.isFinite(x) ? `${x.toFixed(x < 10 ? 1 : 0)} ms` : 'n/a')
const lat = (s) => `p50 ${msf(s.p50)}, p99 ${msf(s.p99)}, max ${msf(s.max)}`

const rows = [['machine', `${cpus().length} CPUs, node ${process.version}; load average ${loadBefore[0].toFixed(2)} before, ${loadAfter[0].toFixed(2)} after`]]
const checks = []
if (lab) {
  const flows = lab.flows.map((f) => `${f.from} -> ${f.to} (${f.host})`).join(', ')
  const cpuPerChange = Object.entries(lab.agentCpuSeconds).map(([h, s]) => `${h} ${((s * 1000) / lab.changes.length).toFixed(0)} ms`).join(', ')
  rows.push(
    ['(1) lab', `netpol-3x3, 3 hosts, built in ${(lab.upMs / 1000).toFixed(1)} s; flows ${flows}`],
    [`(1) flipped on every host (${lab.changes.length} changes)`, lat(lab.flip)],
    ['(1)   of which applies (deny)', lat(lab.flipApply)],
    ['(1)   of which deletes (allow)', lat(lab.flipDelete)],
    ['(1) each flow (each host)', lat(lab.perFlow)],
    ['(1) agents: applied, after the write returned', lat(lab.agentApplied)],
    ['(1) agents: apply pass (applied.durationMs)', lat(lab.agentPass)],
    ['(1) the write itself (applyObjects / deleteRefs)', lat(lab.write)],
    ['(1) probing', `every ${lab.options.probeIntervalMs} ms per flow, TCP timeout ${lab.options.probeTimeoutMs} ms, flip = ${lab.options.stableProbes}+ probes in a row agree`],
    ['(1) agent CPU per change (probe traffic included) / peak RSS', `${cpuPerChange}; ${Object.entries(lab.agentMemory).map(([h, m]) => `${h} ${mib(m.peak)}`).join(', ')}`],
  )
  rows.push(['(1) CPUs busy during the changes: the lab / others', `${lab.machine.ours.toFixed(2)} / ${lab.machine.others.toFixed(2)} of ${cpus().length}`])
  checks.push([`lab: p99 flip on every host, ${lab.changes.length} changes`, `< ${TARGETS.labP99Ms} ms`, msf(lab.flip.p99), lab.flip.p99 < TARGETS.labP99Ms])
}
if (agents) {
  const a = agents
  const n = a.changes.length
  const workerCpu = a.changesCpu.workerSeconds.map((s) => `${((s * 1000) / n).toFixed(0)}`).join(' / ')
  rows.push(
    [`(2) ${a.agents} control-plane agents`, `${a.processes} processes; store ${a.store.namespaces} namespaces, ${a.store.pods} Pods, ${a.store.networkPolicies} NetworkPolicies, ${a.store.clusterNetworkPolicies + 1} ClusterNetworkPolicies`],
    ['(2) start: all joined / all reporting', `${(a.joinedMs / 1000).toFixed(1)} s / ${(a.settledMs / 1000).toFixed(1)} s (CPU: redis ${a.startCpu.redisSeconds.toFixed(1)} s, workers ${a.startCpu.workerSeconds.map((s) => s?.toFixed(0)).join('/')} s)`],
    [`(2) all ${a.agents} reported (${n} changes, status polled every ${a.pollMs} ms)`, lat(a.all)],
    ['(2)   of which applies / deletes', `${lat(a.allApply)} / ${lat(a.allDelete)}`],
    ['(2) last agent applied (its own clock)', lat(a.lastApplied)],
    ['(2) median agent applied (its own clock)', lat(a.medianApplied)],
    ['(2) last agent saw the revision', lat(a.lastObserved)],
    ['(2) apply pass per agent: median / slowest per change', `${lat(a.pass)} / ${lat(a.passMax)}`],
    ['(2) the write itself', lat(a.write)],
    ['(2) CPU per change: workers / redis / writer+poll', `${workerCpu} ms / ${((a.changesCpu.redisSeconds * 1000) / n).toFixed(0)} ms / ${((a.changesCpu.parentSeconds * 1000) / n).toFixed(0)} ms`],
    ['(2) CPUs busy during the changes: ours / others', `${a.changesCpu.machine.ours.toFixed(2)} / ${a.changesCpu.machine.others.toFixed(2)} of ${cpus().length}`],
    ['(2) peak RSS per worker process / redis', `${a.memory.map((m) => mib(m.peak)).join(', ')} / ${mib(a.redis.peakRss)}`],
    ['(2) stopping all agents', `${(a.stopMs / 1000).toFixed(1)} s`],
  )
  checks.push([`${a.agents} agents: p99 all reported, ${n} changes`, `< ${TARGETS.agentsP99Ms} ms`, msf(a.all.p99), a.all.p99 < TARGETS.agentsP99Ms])
}
rows.push(['total', `${((wallNow() - started) / 1000).toFixed(0)} s`])

printReport({ title: `flatnet propagation benchmark${QUICK ? ' (QUICK)' : ''}`, rows, checks, layout: { rule: 80, goal: 12, measured: 12, checksRule: 36 } })
const round = (x) => (typeof x === 'number' ? (Number.isFinite(x) ? Math.round(x * 10) / 10 : null) : x)
console.log(
  JSON.stringify(
    {
      bench: 'propagation',
      node: process.version,
      cpus: cpus().length,
      quick: QUICK,
      loadAverage: { before: loadBefore, after: loadAfter },
      lab,
      agents,
      targets: targetsOf(checks),
    },
    (_, v) => round(v),
  ),
)
process.exitCode = allTargetsMet(checks) ? 0 : 1
