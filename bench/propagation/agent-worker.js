// A child process of the propagation benchmark holding many control-plane-only agents: the real
// `Agent` of packages/agent with `dataPlane: false` (no WireGuard, routes, relay or mesh) and an
// enforcer that renders each node's nftables ruleset without applying it. Each agent has its
// own state dir, node key, store connections and watch, joins with the join token (IPAM block,
// signed node record), and reports its applied revision to the store's status hash.
//
// Driven over IPC by agents.js:
//   {type: 'start', redisUrl, token, dir, nodes: [{name, underlay}], concurrency}
//       -> {type: 'started', ms}            every agent has joined and applied once
//   {type: 'applied'}  -> {type: 'applied', agents: [{name, revision, at, durationMs, rules, renders}]}
//   {type: 'stop'}     -> {type: 'stopped', ms}
// Failures are reported as {type: 'error', message}.
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { pino } from 'pino'
import { Agent, loadAgentConfig } from '../../packages/agent/dist/src/index.js'
import { RenderOnlyEnforcer } from '../../packages/agent/dist/test/render-only-enforcer.js'

const JOIN_TIMEOUT_MS = 240_000
const sleep = (ms) => new Promise((r) => setTimeout(r, ms))
const send = (m) => process.send?.(m)
// Warnings and errors of all agents of this process on stderr, one JSON line each.
const log = pino({ level: 'warn', base: { pid: process.pid, worker: true } }, pino.destination(2))

/** @type {{ name: string, agent: Agent, enforcer: RenderOnlyEnforcer }[]} */
const agents = []

function configFile(dir, node, ctx) {
  const stateDir = join(dir, node.name)
  mkdirSync(stateDir, { recursive: true, mode: 0o700 })
  const file = join(stateDir, 'agent.json')
  writeFileSync(
    file,
    JSON.stringify({
      apiVersion: 'flatnet.dev/v1alpha1',
      kind: 'AgentConfiguration',
      nodeName: node.name,
      stateDir: join(stateDir, 'state'),
      runDir: join(stateDir, 'run'),
      store: { url: ctx.redisUrl, timeoutMs: 10_000 },
      join: { token: ctx.token },
      underlay: { addresses: [node.underlay] },
      hostEndpoint: { enabled: true, namespace: 'hosts', labels: { role: 'node' } },
      metrics: { listen: '' },
      log: { level: 'warn' },
      reconnect: { minMs: 200, maxMs: 2_000 },
    }),
    { mode: 0o600 },
  )
  return file
}

async function startOne(node, ctx) {
  const config = loadAgentConfig({ file: configFile(ctx.dir, node, ctx), env: {} })
  const enforcer = new RenderOnlyEnforcer()
  const agent = new Agent({ config, log: log.child({ node: node.name }), enforcer, dataPlane: false })
  agents.push({ name: node.name, agent, enforcer })
  await agent.start()
  const deadline = Date.now() + JOIN_TIMEOUT_MS
  // start() returns before the join (it runs in the background): ready = admitted and applied.
  while (!agent.readiness().ready) {
    if (Date.now() > deadline) throw new Error(`${node.name} not ready after ${JOIN_TIMEOUT_MS} ms: ${agent.readiness().reasons.join('; ')}`)
    await sleep(20)
  }
}

async function start(m) {
  const t0 = performance.now()
  const queue = [...m.nodes]
  // A few joins at a time, as hosts of a real cluster come up over time rather than at one instant.
  await Promise.all(
    Array.from({ length: Math.min(m.concurrency, queue.length) }, async () => {
      for (let node = queue.shift(); node; node = queue.shift()) await startOne(node, m)
    }),
  )
  send({ type: 'started', ms: performance.now() - t0 })
}

function applied() {
  send({
    type: 'applied',
    agents: agents.map(({ name, agent, enforcer }) => {
      const a = agent.appliedState
      return { name, revision: a?.revision ?? -1, at: a?.at ?? null, durationMs: a?.durationMs ?? null, rules: a?.rules ?? 0, renders: enforcer.renders }
    }),
  })
}

async function stop() {
  const t0 = performance.now()
  await Promise.all(agents.map(({ agent }) => agent.stop().catch(() => undefined)))
  send({ type: 'stopped', ms: performance.now() - t0 })
}

process.on('message', (m) => {
  const handle = m.type === 'start' ? start(m) : m.type === 'applied' ? Promise.resolve(applied()) : m.type === 'stop' ? stop() : m.type === 'exit' ? Promise.resolve(process.exit(0)) : undefined
  handle?.catch((err) => send({ type: 'error', message: err?.stack ?? String(err) }))
})
process.on('disconnect', () => process.exit(0))
send({ type: 'hello', pid: process.pid })
