/**
 * The agents of a three-host lab under the conditions an operator worries about, with real
 * packets: one policy over a VM's host endpoint and pods alike; an Admin-tier Deny against a
 * NetworkPolicy allow across hosts; Redis gone and back; an agent killed with SIGKILL and
 * restarted; a forged node record; a revoked node.
 *
 *   vm (hosts/vm serves 8080, data/postgres)   baremetal (data/cache)   k8s-node (shop/frontend, shop/api)
 */
import assert from 'node:assert/strict'
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AgentClient } from '@flatnet/agent/client'
import { loadObjects } from '@flatnet/policy'
import { applyObjects, connectRedis, FlatnetStore, Ipam, NodeRegistry, signNodeRecord, type WriteOp } from '@flatnet/store'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { labDown, labUp, loadTopology, probeLab, readLabState, type LabUpResult } from '../src/index.js'
import { repoRoot, skipReason, tempStateDir, uniqueLabId } from './helpers.js'

const FLATNET = join(repoRoot(), 'packages', 'cli', 'bin', 'flatnet.js')

const TOPOLOGY = `apiVersion: flatnet.dev/v1alpha1
kind: LabTopology
underlay: {cidr: 192.168.78.0/24, mtu: 1500}
namespaces:
  hosts: {labels: {tier: infra}}
  shop: {labels: {team: web}}
  data: {labels: {team: data}}
hosts:
- {name: vm, kind: vm, namespace: hosts, labels: {role: db-host}, ports: [{name: http, port: 8080}]}
- {name: baremetal, kind: baremetal, namespace: hosts, labels: {role: bastion}}
- {name: k8s-node, kind: k8s-node, namespace: hosts, labels: {role: k8s-node}}
workloads:
- {namespace: shop, name: frontend, host: k8s-node, labels: {app: frontend}, ports: [{name: http, port: 8080}]}
- {namespace: shop, name: api, host: k8s-node, labels: {app: api}, ports: [{name: http, port: 8080}]}
- {namespace: data, name: postgres, host: vm, labels: {app: postgres}, ports: [{name: pg, port: 5432}]}
- {namespace: data, name: cache, host: baremetal, labels: {app: cache}, ports: [{name: redis, port: 6379}]}
`

const GUARD = {
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'guard' },
  spec: {
    tier: 'Admin',
    priority: 10,
    subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { guarded: 'yes' } } } },
    ingress: [{ name: 'no-data', action: 'Deny', from: [{ namespaces: { matchLabels: { team: 'data' } } }] }],
  },
}

const API_FROM_DATA = {
  apiVersion: 'networking.k8s.io/v1',
  kind: 'NetworkPolicy',
  metadata: { name: 'api-from-data', namespace: 'shop' },
  spec: { podSelector: { matchLabels: { app: 'api' } }, ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'data' } } }] }] },
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('agents in the lab: mixed estate, tiers across hosts, fail-static, restart, forged and revoked nodes', { skip: skipReason, timeout: 300_000 }, () => {
  let lab: LabUpResult
  let stateDir: string
  let store: FlatnetStore
  const extra: ChildProcess[] = []

  before(async () => {
    stateDir = await tempStateDir()
    const file = join(stateDir, 'topology.yaml')
    writeFileSync(file, TOPOLOGY)
    lab = await labUp({ topology: await loadTopology(file), stateDir, id: uniqueLabId(), agentArgv: [process.execPath, FLATNET, 'agent', 'run'], logLevel: 'warn' })
    store = newStore()
  })

  after(async () => {
    await store?.close()
    for (const c of extra) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    if (stateDir) {
      await labDown({ stateDir })
      await rm(stateDir, { recursive: true, force: true })
    }
  })

  function newStore(): FlatnetStore {
    return new FlatnetStore({ redis: connectRedis(lab.redisUrl, { connectTimeoutMs: 1000, commandTimeoutMs: 3000 }), where: 'lab' }, { cluster: 'default', commandTimeoutMs: 3000 })
  }

  const status = (host: string) =>
    new AgentClient({ socketPath: lab.agentSockets[host] as string, timeoutMs: 3000 }).get<{
      applied?: { revision: number }
      store: { connected: boolean; revision: number }
      peers: { publicKey: string; peerId?: string }[]
      refusedNodes: { peerId: string; reason: string }[]
      node: { peerId: string }
    }>('/v1/status')

  async function reach(from: string, to: string, port: number, protocol: 'TCP' | 'UDP' = 'TCP'): Promise<boolean> {
    const [r] = await probeLab({ stateDir, flows: [{ from, to, port, protocol }], timeoutMs: 500 })
    return r!.allowed
  }

  async function reachAll(flows: [string, string, number][]): Promise<boolean[]> {
    const results = await probeLab({ stateDir, flows: flows.map(([from, to, port]) => ({ from, to, port, protocol: 'TCP' as const })), timeoutMs: 500 })
    return results.map((r) => r.allowed)
  }

  async function enforced(revision: number, hosts = Object.keys(lab.agentSockets)): Promise<void> {
    const deadline = Date.now() + 10_000
    for (const h of hosts) {
      while (((await status(h)).applied?.revision ?? 0) < revision) {
        if (Date.now() > deadline) throw new Error(`${h}: revision ${revision} not applied within 10 s`)
        await sleep(20)
      }
    }
  }

  async function apply(doc: object): Promise<number> {
    return (await applyObjects(store, loadObjects([{ file: 'test.yaml', text: JSON.stringify(doc) }]))).revision
  }

  async function label(key: string, labels: Record<string, string>): Promise<number> {
    const cur = (await store.get('Endpoint', key))!.value as { metadata: Record<string, unknown> }
    const op: WriteOp = { op: 'put', kind: 'Endpoint', key, value: { ...cur, metadata: { ...cur.metadata, labels: { ...(cur.metadata.labels as object), ...labels } } } }
    return (await store.write([op])).revision
  }

  const flows: [string, string, number][] = [
    ['data/cache', 'hosts/vm', 8080],
    ['data/cache', 'shop/api', 8080],
    ['data/cache', 'shop/frontend', 8080],
    ['shop/frontend', 'hosts/vm', 8080],
    ['shop/frontend', 'shop/api', 8080],
  ]

  it('starts with every flow allowed, across the encrypted overlay', async () => {
    assert.deepEqual(await reachAll(flows), [true, true, true, true, true])
  })

  it('enforces one ClusterNetworkPolicy on a VM host endpoint and a pod alike', async () => {
    await apply(GUARD)
    await label('hosts/vm', { guarded: 'yes' })
    await enforced(await label('shop/api', { guarded: 'yes' }))
    // data/cache (baremetal) is denied into hosts/vm (input hook on vm) and shop/api (forward
    // hook on k8s-node); everything else still flows.
    assert.deepEqual(await reachAll(flows), [false, false, true, true, true])
  })

  it('lets the Admin-tier Deny beat a NetworkPolicy allow across hosts, and the allow take over once it is gone', async () => {
    await enforced(await apply(API_FROM_DATA))
    assert.equal(await reach('data/cache', 'shop/api', 8080), false, 'Admin Deny beats the NetworkPolicy allow')
    assert.equal(await reach('shop/frontend', 'shop/api', 8080), false, 'the NetworkPolicy isolates shop/api')
    await enforced((await store.write([{ op: 'delete', kind: 'ClusterNetworkPolicy', key: 'guard' }])).revision)
    assert.equal(await reach('data/cache', 'shop/api', 8080), true, 'the NetworkPolicy allow decides now')
    assert.equal(await reach('shop/frontend', 'shop/api', 8080), false)
    assert.equal(await reach('data/cache', 'hosts/vm', 8080), true)
  })

  it('keeps enforcing and forwarding with Redis gone, and enforces a change within 5 s of its return', async () => {
    const state = readLabState(stateDir)!
    const redis = state.processes.find((p) => p.name === 'redis')!
    await store.close()
    process.kill(redis.pid!, 'SIGTERM')
    const deadline = Date.now() + 15_000
    for (const h of Object.keys(lab.agentSockets)) {
      while ((await status(h)).store.connected) {
        if (Date.now() > deadline) throw new Error(`${h} still reports the store connected`)
        await sleep(100)
      }
    }
    await sleep(1000)
    assert.equal(await reach('data/cache', 'shop/api', 8080), true, 'allowed flow across hosts, Redis down')
    assert.equal(await reach('shop/frontend', 'shop/api', 8080), false, 'denied flow stays denied, Redis down')

    const restarted = spawn(redis.cmdline[0]!, redis.cmdline.slice(1), { stdio: 'ignore' })
    extra.push(restarted)
    store = newStore()
    const back = Date.now()
    for (;;) {
      try {
        await store.revision()
        break
      } catch {
        if (Date.now() - back > 10_000) throw new Error('redis did not come back')
        await sleep(50)
      }
    }
    const returned = Date.now()
    await store.write([{ op: 'delete', kind: 'NetworkPolicy', key: 'shop/api-from-data' }])
    let flippedAfter = -1
    while (Date.now() - returned < 8_000) {
      if (await reach('shop/frontend', 'shop/api', 8080)) {
        flippedAfter = Date.now() - returned
        break
      }
      await sleep(50)
    }
    assert.ok(flippedAfter >= 0 && flippedAfter < 5_000, `the change was enforced ${flippedAfter} ms after Redis returned`)
  })

  it('keeps the rules of an agent killed with SIGKILL, and its restart converges without a gap', async () => {
    await enforced(await apply(API_FROM_DATA))
    const state = readLabState(stateDir)!
    const agent = state.processes.find((p) => p.name === 'agent k8s-node')!
    const host = state.hosts.find((h) => h.name === 'k8s-node')!
    process.kill(agent.pid!, 'SIGKILL')
    await sleep(300)
    // Same-host traffic is filtered by the kernel alone: the rules outlive the agent.
    for (let i = 0; i < 3; i++) assert.equal(await reach('shop/frontend', 'shop/api', 8080), false, 'denied while the agent is dead')
    const restarted = spawn('ip', ['netns', 'exec', host.netns, ...agent.cmdline], { stdio: 'ignore' })
    extra.push(restarted)
    // While it starts (local snapshot first, then the store), the denied flow never gets through.
    const started = Date.now()
    let ready = false
    while (Date.now() - started < 30_000) {
      assert.equal(await reach('shop/frontend', 'shop/api', 8080), false, 'denied during the restart')
      try {
        const s = await status('k8s-node')
        if (s.store.connected && (s.applied?.revision ?? 0) >= (await store.revision())) {
          ready = true
          break
        }
      } catch {
        // The socket is not back yet.
      }
      await sleep(100)
    }
    assert.ok(ready, 'the restarted agent caught up with the store')
    const deadline = Date.now() + 15_000
    while (!(await reach('data/cache', 'shop/api', 8080))) {
      if (Date.now() > deadline) throw new Error('the overlay to the restarted node did not come back')
      await sleep(200)
    }
  })

  it('after a reboot (no rules in the kernel) with Redis unreachable, a restarted agent enforces its local snapshot', async () => {
    const state = readLabState(stateDir)!
    const host = state.hosts.find((h) => h.name === 'k8s-node')!
    const previous = extra[extra.length - 1]!
    // The snapshot is written within a second of the last apply.
    await sleep(1_500)
    previous.kill('SIGKILL')
    await new Promise((r) => previous.once('exit', r))
    await store.close()
    const redis = extra.find((c) => c.spawnargs[0] === 'redis-server')!
    redis.kill('SIGTERM')
    await new Promise((r) => redis.once('exit', r))
    await new Promise<void>((resolve, reject) =>
      execFile('ip', ['netns', 'exec', host.netns, 'nft', 'delete', 'table', 'inet', 'flatnet'], (err) => (err ? reject(err) : resolve())),
    )
    assert.equal(await reach('shop/frontend', 'shop/api', 8080), true, 'no rules: the kernel lets everything through')
    const agent = state.processes.find((p) => p.name === 'agent k8s-node')!
    extra.push(spawn('ip', ['netns', 'exec', host.netns, ...agent.cmdline], { stdio: 'ignore' }))
    const deadline = Date.now() + 15_000
    while (await reach('shop/frontend', 'shop/api', 8080)) {
      if (Date.now() > deadline) throw new Error('the local snapshot was not enforced within 15 s')
      await sleep(100)
    }
    const s = await status('k8s-node')
    assert.equal(s.store.connected, false, 'enforced without the store')
    // Redis back for the tests after this one.
    extra.push(spawn(redis.spawnargs[0]!, redis.spawnargs.slice(1), { stdio: 'ignore' }))
    store = newStore()
    const back = Date.now() + 15_000
    while (!(await status('k8s-node')).store.connected) {
      if (Date.now() > back) throw new Error('the agent did not reach the store again')
      await sleep(100)
    }
  })

  it('refuses a forged node record: no peer, and every agent says why', async () => {
    const before = (await status('vm')).peers.length
    const attacker = await generateKeyPair('Ed25519')
    const signed = await signNodeRecord(attacker, { wireguardPublicKey: Buffer.alloc(32, 9).toString('base64'), endpoints: ['192.168.78.66:51820'], blocks: ['10.244.0.0/26'], labels: {}, sequence: 1 })
    // Written around the registry, as someone with Redis access would: claim another node's
    // block, under a signature by a key that is not the PeerId's.
    const victim = (await status('baremetal')).node.peerId
    const forged = { record: { ...signed.record, peerId: victim }, signature: signed.signature, admitted: true, admittedBy: 'approval' }
    await enforced((await store.write([{ op: 'put', kind: 'Node', key: `${victim}x`, value: forged }])).revision)
    const s = await status('vm')
    assert.equal(s.peers.length, before)
    assert.ok(s.refusedNodes.some((r) => r.peerId === `${victim}x`), JSON.stringify(s.refusedNodes))
    await store.write([{ op: 'delete', kind: 'Node', key: `${victim}x` }])
  })

  it('cuts a revoked node off: its traffic no longer gets through', async () => {
    assert.equal(await reach('data/cache', 'shop/frontend', 8080), true)
    const victim = (await status('baremetal')).node.peerId
    const outcome = await new NodeRegistry(store, new Ipam(store)).revoke(victim)
    await enforced(outcome.revision, ['vm', 'k8s-node'])
    for (const h of ['vm', 'k8s-node']) assert.ok(!(await status(h)).peers.some((p) => p.peerId === victim), `${h} dropped the revoked node`)
    assert.equal(await reach('data/cache', 'shop/frontend', 8080), false)
    assert.equal(await reach('data/cache', 'hosts/vm', 8080), false)
    assert.equal(await reach('shop/frontend', 'hosts/vm', 8080), true, 'the others still talk')
  })
})
