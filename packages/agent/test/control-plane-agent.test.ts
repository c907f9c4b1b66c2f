/**
 * Control-plane-only agents (`dataPlane: false`), two in this process against a real
 * redis-server: each joins with a join token (IPAM block, signed and admitted node record), makes
 * no WireGuard interface, calculates and renders the ruleset of its own endpoints, and reports
 * every new revision in the store's status hash, as a full agent does.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { pino } from 'pino'
import { connectRedis, FlatnetStore, Ipam, NodeRegistry } from '@flatnet/store'
import { startRedis, until, type RedisServer } from '@flatnet/store/testing'
import { Agent, loadAgentConfig } from '../src/index.js'
import { RenderOnlyEnforcer } from './render-only-enforcer.js'

const NODES = ['cp-a', 'cp-b'] as const
/** Unique per run: the test also checks that no interface of this name appears. */
const IFACE = (i: number): string => `fncp${process.pid % 100000}${i}`.slice(0, 15)

const DENY_WEB = {
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name: 'deny-web' },
  spec: {
    tier: 'Admin',
    priority: 5,
    subject: { pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'web' } } } },
    ingress: [{ name: 'nobody', action: 'Deny', from: [{ namespaces: {} }] }],
  },
}

describe('control-plane-only agents (dataPlane: false)', { timeout: 60_000 }, () => {
  let redis: RedisServer
  let store: FlatnetStore
  let dir: string
  const agents: Agent[] = []
  const enforcers: RenderOnlyEnforcer[] = []
  let token = ''
  let tokenId = ''

  before(async () => {
    redis = await startRedis()
    store = new FlatnetStore({ redis: connectRedis(redis.url, { commandTimeoutMs: 5000 }), where: redis.url }, { cluster: 'default', commandTimeoutMs: 5000 })
    const ipam = new Ipam(store)
    await ipam.ensurePool({ name: 'default', cidr: '10.250.0.0/16', blockPrefix: 26 })
    const created = await new NodeRegistry(store, ipam).createToken({ ttlSeconds: 600 })
    token = created.token
    tokenId = created.id
    await store.write([{ op: 'put', kind: 'Namespace', key: 'shop', value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'shop', labels: {} } } }])
    dir = mkdtempSync(join(tmpdir(), 'fn-cp-agent-'))
    const log = pino({ level: 'silent' })
    for (const [i, node] of NODES.entries()) {
      const file = join(dir, `${node}.json`)
      writeFileSync(
        file,
        JSON.stringify({
          nodeName: node,
          stateDir: join(dir, node, 'state'),
          runDir: join(dir, node, 'run'),
          store: { url: redis.url },
          join: { token },
          wireguard: { interfaceName: IFACE(i) },
          underlay: { addresses: [`192.0.2.${i + 1}`] },
          // One workload per node, selected by the policy below; the host endpoint is not.
          workloads: [{ namespace: 'shop', name: `web-${i}`, labels: { app: 'web' }, ips: [`10.251.0.${i + 1}`], ports: [{ name: 'http', port: 8080 }] }],
          metrics: { listen: '' },
          reconnect: { minMs: 50, maxMs: 500 },
        }),
      )
      const enforcer = new RenderOnlyEnforcer()
      const agent = new Agent({ config: loadAgentConfig({ file, env: {} }), log, enforcer, dataPlane: false })
      enforcers.push(enforcer)
      agents.push(agent)
    }
    await Promise.all(agents.map((a) => a.start()))
  })

  after(async () => {
    for (const a of agents) await a.stop().catch(() => undefined)
    await store?.close()
    await redis?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  /** Waits until every node's report in the status hash names `revision` or a later one. */
  async function reported(revision: number): Promise<Map<string, Record<string, unknown>>> {
    let last = new Map<string, Record<string, unknown>>()
    await until(`both agents to report revision ${revision}`, 15_000, async () => {
      last = await store.listStatus()
      return NODES.every((n) => Number(last.get(n)?.revision ?? -1) >= revision)
    })
    return last
  }

  const denyRulesOf = (e: RenderOnlyEnforcer): string[] =>
    Object.values(e.last?.rules ?? {})
      .filter((r) => r.policy === 'deny-web' && r.action === 'deny')
      .map((r) => r.endpoint ?? '')

  it('joins with the token: admitted, a block each, ready, and no WireGuard interface or peers', async () => {
    // start() returns before the join, which runs in the background: wait for what it publishes.
    await until('both agents to publish their endpoints', 15_000, async () => (await store.list('Endpoint')).length === 4)
    await reported(await store.revision())
    const nodes = await new NodeRegistry(store, new Ipam(store)).list()
    assert.deepEqual(nodes.map((n) => [n.record.hostname, n.admitted, n.admittedBy]).sort(), [
      ['cp-a', true, `token:${tokenId}`],
      ['cp-b', true, `token:${tokenId}`],
    ])
    const blocks = nodes.flatMap((n) => n.record.blocks)
    assert.equal(new Set(blocks).size, 2, `one block each, distinct: ${blocks.join(', ')}`)
    for (const [i, a] of agents.entries()) {
      assert.deepEqual(a.readiness(), { ready: true, reasons: [] })
      const s = await a.status()
      assert.equal(s.node.backend, undefined, 'no WireGuard backend was chosen')
      assert.deepEqual(s.peers, [])
      assert.equal(existsSync(`/sys/class/net/${IFACE(i)}`), false, 'no interface was made')
      assert.deepEqual(s.endpoints.map((e) => e.key).sort(), [`hosts/${NODES[i]}`, `shop/web-${i}`], 'its own endpoints only')
    }
  })

  it('reports a policy write from both agents, each with the rendered deny for its own workload only', async () => {
    const renders = enforcers.map((e) => e.renders)
    const { revision } = await store.write([{ op: 'put', kind: 'ClusterNetworkPolicy', key: 'deny-web', value: DENY_WEB }])
    const status = await reported(revision)
    for (const n of NODES) assert.ok(Number(status.get(n)?.revision) >= revision, `${n}: ${JSON.stringify(status.get(n))}`)
    for (const [i, e] of enforcers.entries()) {
      assert.ok(e.renders > (renders[i] as number), 'the change was rendered again')
      assert.deepEqual([...new Set(denyRulesOf(e))], [`shop/web-${i}`])
      assert.match(e.last?.text ?? '', /drop/)
    }

    const removed = (await store.write([{ op: 'delete', kind: 'ClusterNetworkPolicy', key: 'deny-web' }])).revision
    await reported(removed)
    for (const e of enforcers) assert.deepEqual(denyRulesOf(e), [], 'the deny is gone from the ruleset')
  })
})
