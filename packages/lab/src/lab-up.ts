/**
 * `flatnet lab up`: the whole system on one machine. On top of the network builder (build.ts):
 *
 *   hosts' namespaces + underlay
 *   ─> a redis-server for the lab (unix socket in the lab state dir: every namespace reaches it)
 *   ─> address pool, a join token, the topology's Namespaces written to the store
 *   ─> one agent per host, inside the host's namespace (`flatnet agent run`, userspace WireGuard)
 *   ─> each agent ready: admitted, WireGuard up, state applied
 *   ─> host endpoints get their agent's host address; workloads are attached by their host's
 *      agent (IPAM from its block, veth, endpoint in the store) through its API socket
 *   ─> endpoint daemons serve the declared ports ─> every agent enforces the latest revision
 *
 * Everything started is recorded in the lab's state file before it starts, so `lab down` removes
 * it all, also after a crash.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { AgentClient } from '@flatnet/agent/client'
import { connectRedis, FlatnetStore, Ipam, NodeRegistry } from '@flatnet/store'
import { stringify } from 'yaml'
import { LabBuilder, type LabProgress } from './build.js'
import { labDown } from './down.js'
import { runCommand } from './command.js'
import type { LabInfo } from './info.js'
import { FlatnetError } from '@flatnet/core'
import { LabStateError } from './state.js'
import type { LabHost, Topology } from './topology.js'

export const LAB_UP_DEFAULTS = Object.freeze({
  pool: '10.244.0.0/16',
  blockPrefix: 26,
  wireguardPort: 51820,
  meshPort: 7946,
  /** For every agent to become ready, and for the last revision to be enforced everywhere. */
  readyTimeoutMs: 90_000,
})

export interface LabUpOptions {
  readonly topology: Topology
  readonly stateDir?: string | undefined
  readonly id?: string | undefined
  /** The agent command up to its options: e.g. `[node, .../flatnet.js, 'agent', 'run']`. */
  readonly agentArgv: readonly string[]
  readonly pool?: string | undefined
  readonly onProgress?: ((p: LabProgress) => void) | undefined
  readonly keepOnFailure?: boolean | undefined
  readonly logLevel?: string | undefined
}

export interface LabUpResult {
  readonly info: LabInfo
  readonly redisUrl: string
  /** Per host: its agent's API socket. */
  readonly agentSockets: Readonly<Record<string, string>>
}

interface AgentStatusView {
  node: { hostAddress?: string; admitted: boolean }
  peers: { latestHandshake?: string }[]
  applied?: { revision: number }
  store: { revision: number }
  lastApplyError?: string
}

/** A part of the lab (Redis, an agent) did not become ready in time; the message says which and where its log is. */
export class LabNotReadyError extends FlatnetError {
  readonly code = 'ERR_LAB_NOT_READY'
}

async function ping(netns: string, address: string): Promise<boolean> {
  return (await runCommand(['ip', 'netns', 'exec', netns, 'ping', '-n', '-q', '-c', '1', '-W', '1', address], { allowFail: true, timeoutMs: 5_000 })).ok
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  for (;;) {
    try {
      const v = await probe()
      if (v !== undefined) return v
    } catch (err) {
      last = err instanceof Error ? err.message : String(err)
    }
    if (Date.now() > deadline) throw new LabNotReadyError(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last: ${last})` : ''}`)
    await sleep(100)
  }
}

/** An interface name unique on the machine (WireGuard UAPI sockets are shared by all namespaces). */
function interfaceName(labId: string, index: number): string {
  return `fl${labId}w${index}`.slice(0, 15)
}

function agentConfig(host: LabHost, index: number, ctx: { labId: string; dir: string; redisUrl: string; token: string; underlay: string; relay: boolean; logLevel: string }): string {
  const doc = {
    apiVersion: 'flatnet.dev/v1alpha1',
    kind: 'AgentConfiguration',
    nodeName: host.name,
    stateDir: join(ctx.dir, 'state'),
    runDir: join(ctx.dir, 'run'),
    store: { url: ctx.redisUrl },
    join: { token: ctx.token },
    wireguard: { backend: 'userspace', interfaceName: interfaceName(ctx.labId, index), listenPort: LAB_UP_DEFAULTS.wireguardPort },
    mesh: { listen: [`/ip4/${ctx.underlay}/tcp/${LAB_UP_DEFAULTS.meshPort}`], relayServer: ctx.relay },
    underlay: { addresses: [ctx.underlay] },
    hostEndpoint: { enabled: true, namespace: host.namespace, name: host.name, labels: { ...host.labels }, ports: host.ports.map((p) => ({ ...p })) },
    // Each host namespace has its own loopback, so every agent can use the default port.
    metrics: { listen: '127.0.0.1:9469' },
    log: { level: ctx.logLevel },
    reconnect: { minMs: 200, maxMs: 2000 },
  }
  return `# written by flatnet lab up for host ${host.name}\n${stringify(doc)}`
}

/** Builds the lab with a store and an agent per host; on failure removes what it made (unless keepOnFailure). */
export async function labUp(options: LabUpOptions): Promise<LabUpResult> {
  const builder = await LabBuilder.create({ topology: options.topology, stateDir: options.stateDir, id: options.id, onProgress: options.onProgress })
  const progress = (message: string): void => options.onProgress?.({ step: 'process', message })
  const stateDir = builder.state.data.stateDir
  const labId = builder.state.data.id
  let store: FlatnetStore | undefined
  try {
    await builder.buildHosts()

    // Recorded before they exist: `lab down` removes them, so no later lab starts with this one's
    // node keys, snapshots or workload lists.
    const redisDir = join(stateDir, 'redis')
    builder.state.recordPath(redisDir)
    builder.state.recordPath(join(stateDir, 'agents'))
    mkdirSync(redisDir, { recursive: true, mode: 0o700 })
    const socket = join(redisDir, 'redis.sock')
    await builder.startProcess({
      name: 'redis',
      argv: ['redis-server', '--port', '0', '--unixsocket', socket, '--unixsocketperm', '700', '--dir', redisDir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'everysec'],
    })
    const redisUrl = `unix://${socket}`
    builder.setEnv({ FLATNET_REDIS_URL: redisUrl })
    store = new FlatnetStore({ redis: connectRedis(redisUrl, { connectTimeoutMs: 2000, commandTimeoutMs: 5000 }), where: redisUrl }, { cluster: 'default', commandTimeoutMs: 5000 })
    const s = store
    await until('the lab\'s redis-server to answer', 10_000, async () => ((await s.revision()) >= 0 ? true : undefined))
    const ipam = new Ipam(store)
    await ipam.ensurePool({ name: 'default', cidr: options.pool ?? LAB_UP_DEFAULTS.pool, blockPrefix: LAB_UP_DEFAULTS.blockPrefix })
    const token = (await new NodeRegistry(store, ipam).createToken({ ttlSeconds: 24 * 3600, description: 'flatnet lab' })).token
    const namespaces = options.topology.namespaces.map((ns) => ({
      op: 'put' as const,
      kind: 'Namespace' as const,
      key: ns.name,
      value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns.name, labels: { ...ns.labels } } },
    }))
    if (namespaces.length > 0) await store.write(namespaces)
    progress(`store ready at ${redisUrl}: pool ${options.pool ?? LAB_UP_DEFAULTS.pool}, ${namespaces.length} namespaces`)

    const sockets: Record<string, string> = {}
    const hosts = builder.state.data.hosts
    await Promise.all(
      options.topology.hosts.map(async (host, i) => {
        const record = hosts.find((h) => h.name === host.name)
        if (!record) throw new LabStateError(`host ${host.name} has no namespace in the lab state`)
        const dir = join(stateDir, 'agents', host.name)
        mkdirSync(dir, { recursive: true, mode: 0o700 })
        const file = join(dir, 'agent.yaml')
        writeFileSync(file, agentConfig(host, i, { labId, dir, redisUrl, token, underlay: record.underlayAddress, relay: i === 0, logLevel: options.logLevel ?? 'info' }), { mode: 0o600 })
        sockets[host.name] = join(dir, 'run', 'agent.sock')
        await builder.startProcess({ name: `agent ${host.name}`, netns: record.netns, argv: [...options.agentArgv, '--config', file] })
      }),
    )
    const statusOf = (host: string): Promise<AgentStatusView> => new AgentClient({ socketPath: sockets[host] as string, timeoutMs: 2000 }).get<AgentStatusView>('/v1/status')
    const hostAddress = new Map<string, string>()
    await Promise.all(
      options.topology.hosts.map(async (host) => {
        const st = await until(`the agent on ${host.name} to be ready (see ${join(stateDir, 'logs')})`, LAB_UP_DEFAULTS.readyTimeoutMs, async () => {
          const v = await statusOf(host.name)
          return v.node.admitted && v.node.hostAddress && v.applied ? v : undefined
        })
        hostAddress.set(host.name, st.node.hostAddress as string)
        progress(`agent ${host.name} ready: host address ${st.node.hostAddress}`)
      }),
    )

    // Each agent knows every other node as a WireGuard peer; then one ping per pair of hosts
    // makes the sessions, so the first probe does not wait for a handshake retry (5 s) after an
    // initiation that reached a peer before it knew the sender.
    const others = options.topology.hosts.length - 1
    await Promise.all(
      options.topology.hosts.map((host) =>
        until(`the agent on ${host.name} to have all ${others} peers`, LAB_UP_DEFAULTS.readyTimeoutMs, async () => ((await statusOf(host.name)).peers.length >= others ? true : undefined)),
      ),
    )
    await Promise.all(
      options.topology.hosts.flatMap((from) =>
        options.topology.hosts
          .filter((to) => to !== from)
          .map((to) => {
            const netns = hosts.find((h) => h.name === from.name)?.netns as string
            return until(`a WireGuard session from ${from.name} to ${to.name}`, 20_000, async () => ((await ping(netns, hostAddress.get(to.name) as string)) ? true : undefined))
          }),
      ),
    )
    progress('WireGuard sessions up between all hosts')

    await builder.addEndpoints(({ host }) => [hostAddress.get(host.name) as string], {
      attach: async (req) => {
        const client = new AgentClient({ socketPath: sockets[req.host.name] as string, timeoutMs: 30_000 })
        const res = await client.post<{ workload: { ips: string[]; hostIfname: string } }>('/v1/workloads', {
          namespace: req.workload.namespace,
          name: req.workload.name,
          netns: req.netns,
          labels: req.workload.labels,
          ports: req.workload.ports,
          kind: req.host.kind === 'k8s-node' ? 'Pod' : 'HostEndpoint',
        })
        return { addresses: res.workload.ips, hostIfname: res.workload.hostIfname }
      },
    })
    await builder.startDaemons()

    // Every agent enforces everything written so far: the lab is ready to probe.
    const revision = await store.revision()
    await Promise.all(
      options.topology.hosts.map((host) =>
        until(`the agent on ${host.name} to enforce revision ${revision}`, LAB_UP_DEFAULTS.readyTimeoutMs, async () => {
          const v = await statusOf(host.name)
          return (v.applied?.revision ?? 0) >= revision ? true : undefined
        }),
      ),
    )
    const info = builder.finish()
    return { info, redisUrl, agentSockets: sockets }
  } catch (err) {
    if (!options.keepOnFailure) await labDown({ stateDir, onProgress: options.onProgress }).catch(() => undefined)
    throw err
  } finally {
    await store?.close()
  }
}
