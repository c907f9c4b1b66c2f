/**
 * `flatnet namespace label`, `flatnet endpoint label` and `flatnet policy status` against a real
 * redis-server: kubectl label semantics, nothing written on bad input, implicit namespaces,
 * writes that survive concurrent writers, and per-node policy revisions with their lag.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { loadOrCreateNodeKey } from '@flatnet/agent'
import { nodePolicyStatusRecord, type NodePolicyStatus } from '@flatnet/agent/client'
import * as storeLib from '@flatnet/store'
import { connectRedis, FlatnetStore, Ipam, NodeRegistry, signNodeRecord } from '@flatnet/store'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { labelNamespace, parseLabelChanges } from '../src/label-commands.js'
import type { PolicyStatusView } from '../src/policy-status-command.js'
import { example, runCli } from './helpers.js'

const tmp = mkdtempSync(join(tmpdir(), 'fn-cli-label-'))
let redis: RedisServer
let store: FlatnetStore

before(async () => {
  redis = await startRedis()
  store = newStore('labeltest')
})
after(async () => {
  await store?.close()
  await redis?.stop()
  rmSync(tmp, { recursive: true, force: true })
})

function newStore(cluster: string): FlatnetStore {
  return new FlatnetStore({ redis: connectRedis(redis.url, { connectTimeoutMs: 2_000, commandTimeoutMs: 4_000 }), where: redis.url }, { cluster, commandTimeoutMs: 4_000 })
}

function flatnet(...args: string[]): ReturnType<typeof runCli> {
  return runCli([...args, '--redis', redis.url, '--cluster', 'labeltest'])
}

async function labelsOf(kind: 'Namespace' | 'Endpoint', key: string): Promise<Record<string, string> | undefined> {
  const o = await store.get(kind, key)
  return (o?.value as { metadata: { labels?: Record<string, string> } } | undefined)?.metadata.labels
}

describe('flatnet namespace label', () => {
  before(async () => {
    const r = await flatnet('policy', 'apply', '-f', example('inventory'))
    assert.equal(r.code, 0, r.stderr)
  })

  it('adds labels, refuses to change a value without --overwrite, changes it with, and removes with key-', async () => {
    const add = await flatnet('namespace', 'label', 'shop', 'tier=frontend', 'pci=yes')
    assert.equal(add.code, 0, add.stderr)
    assert.match(add.stdout, /^Namespace shop labeled \(revision \d+\)$/m)
    assert.deepEqual(await labelsOf('Namespace', 'shop'), { env: 'prod', team: 'web', tier: 'frontend', pci: 'yes', 'kubernetes.io/metadata.name': 'shop' })

    const rev = await store.revision()
    const refused = await flatnet('namespace', 'label', 'shop', 'team=payments', 'tier=frontend')
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /^error: Namespace shop: 'team' already has a value \(web\), and --overwrite is false; nothing was written$/m)
    assert.equal(await store.revision(), rev, 'nothing was written')

    const same = await flatnet('namespace', 'label', 'shop', 'team=web')
    assert.equal(same.code, 0, 'setting the value a label already has needs no --overwrite')
    assert.match(same.stdout, /Namespace shop not labeled \(no change\)/)
    assert.equal(await store.revision(), rev, 'no change, no revision')

    const over = await flatnet('ns', 'label', 'shop', 'team=payments', '--overwrite')
    assert.equal(over.code, 0, over.stderr)
    assert.equal((await labelsOf('Namespace', 'shop'))?.team, 'payments')

    const rm = await flatnet('namespace', 'label', 'shop', 'pci-', 'nothere-')
    assert.equal(rm.code, 0, rm.stderr)
    assert.match(rm.stderr, /label "nothere" not found/)
    const labels = await labelsOf('Namespace', 'shop')
    assert.equal(labels?.pci, undefined)
    assert.equal(labels?.tier, 'frontend')
  })

  it('the new labels take part in policy decisions', async () => {
    // examples/policies: data/postgres admits shop/api only while shop is labelled team=web.
    assert.equal((await flatnet('policy', 'apply', '-f', example('policies'))).code, 0)
    const flow = ['policy', 'explain', '--from', 'shop/api', '--to', 'data/postgres', '--port', '5432/TCP', '-o', 'json']
    assert.equal((await flatnet('namespace', 'label', 'shop', 'team=payments', '--overwrite')).code, 0)
    assert.equal((JSON.parse((await flatnet(...flow)).stdout) as { allowed: boolean }).allowed, false)
    assert.equal((await flatnet('namespace', 'label', 'shop', 'team=web', '--overwrite')).code, 0)
    assert.equal((JSON.parse((await flatnet(...flow)).stdout) as { allowed: boolean }).allowed, true)
  })

  it('rejects malformed changes and invalid keys or values with a clear error, writing nothing', async () => {
    const rev = await store.revision()
    const cases: [string[], RegExp][] = [
      [['shop', 'bad key=x'], /invalid label key "bad key" in "bad key=x": name part must consist of alphanumeric/],
      [['shop', 'Ok/x=1'], /invalid label key "Ok\/x" in "Ok\/x=1": prefix "Ok"/],
      [['shop', 'app=-web-'], /invalid value "-web-" for label "app"/],
      [['shop', `app=${'v'.repeat(64)}`], /must be no more than 63 characters/],
      [['shop', 'app'], /"app" is not a label change: write key=value to set a label, key- to remove one/],
      [['shop', 'a=1', 'a-'], /label "a" is changed twice/],
      [['shop', 'kubernetes.io/metadata.name=other'], /always holds the namespace's name \(shop\)/],
      [['shop', 'kubernetes.io/metadata.name-'], /cannot be changed or removed/],
      [['Shop', 'a=1'], /invalid namespace "Shop"/],
    ]
    for (const [args, message] of cases) {
      const r = await flatnet('namespace', 'label', ...args)
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
      assert.match(r.stderr, message)
      assert.equal(r.stderr.trim().split('\n').length, 1, 'one line')
    }
    const missingChanges = await flatnet('namespace', 'label', 'shop')
    assert.equal(missingChanges.code, 2, 'commander: missing argument')
    assert.equal(await store.revision(), rev)
  })

  it('says an unknown namespace is not found (exit 1)', async () => {
    const r = await flatnet('namespace', 'label', 'nowhere', 'a=1')
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^error: Namespace nowhere \(no Namespace object, and no endpoint or NetworkPolicy in it\) not found$/m)
    assert.equal(await store.get('Namespace', 'nowhere'), undefined)
  })

  it('creates a namespace that exists only through its endpoints', async () => {
    const file = join(tmp, 'implicit.yaml')
    writeFileSync(file, 'apiVersion: flatnet.dev/v1alpha1\nkind: HostEndpoint\nmetadata: {name: cache, namespace: edge, labels: {app: cache}}\nspec: {ips: [10.64.9.9]}\n')
    assert.equal((await flatnet('policy', 'apply', '-f', file)).code, 0)
    assert.equal(await store.get('Namespace', 'edge'), undefined)
    const r = await flatnet('namespace', 'label', 'edge', 'zone=eu')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /Namespace edge created and labeled/)
    const o = await store.get('Namespace', 'edge')
    assert.deepEqual(o?.value, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'edge', labels: { zone: 'eu', 'kubernetes.io/metadata.name': 'edge' } } })
  })

  it('keeps every change when several label commands race (retrying on a revision conflict)', async () => {
    const keys = Array.from({ length: 6 }, (_, i) => `race-${i}`)
    const runs = await Promise.all(keys.map((k) => flatnet('namespace', 'label', 'data', `${k}=v`)))
    for (const r of runs) assert.equal(r.code, 0, r.stderr)
    const labels = await labelsOf('Namespace', 'data')
    for (const k of keys) assert.equal(labels?.[k], 'v', `${k} was lost`)
    assert.equal(labels?.team, 'data')
  })

  it('re-reads and re-applies when another writer changes the store between its read and its write', async () => {
    // A store whose first read lets another client label the same namespace: the write that
    // follows is based on a stale read and must not overwrite that label.
    const other = newStore('labeltest')
    const racing = newStore('labeltest')
    let raced = false
    const origGet = racing.get.bind(racing)
    racing.get = async (kind, key) => {
      const o = await origGet(kind, key)
      if (!raced) {
        raced = true
        const v = o?.value as { metadata: { labels: Record<string, string> } }
        await other.write([{ op: 'put', kind: 'Namespace', key: 'ops', value: { ...v, metadata: { ...v.metadata, labels: { ...v.metadata.labels, concurrent: 'kept' } } } }])
      }
      return o
    }
    try {
      const r = await labelNamespace(racing, storeLib, 'ops', parseLabelChanges(['mine=set']), false)
      assert.equal(r.result, 'labeled')
      assert.ok(raced)
      const labels = await labelsOf('Namespace', 'ops')
      assert.equal(labels?.concurrent, 'kept', 'the concurrent change survived')
      assert.equal(labels?.mine, 'set')
    } finally {
      await other.close()
      await racing.close()
    }
  })
})

describe('flatnet endpoint label', () => {
  it('labels a HostEndpoint and a Pod, keeping the rest of each document', async () => {
    const before = (await store.get('Endpoint', 'data/postgres'))?.value as { spec: unknown }
    const r = await flatnet('endpoint', 'label', 'data/postgres', 'backup=nightly', 'engine-')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /endpoint data\/postgres labeled/)
    const after = (await store.get('Endpoint', 'data/postgres'))?.value as { spec: unknown; metadata: { labels: Record<string, string> } }
    assert.deepEqual(after.metadata.labels, { role: 'db', backup: 'nightly' })
    assert.deepEqual(after.spec, before.spec)

    const pod = await flatnet('endpoint', 'label', 'shop/api', 'version=2')
    assert.equal(pod.code, 0, pod.stderr)
    const p = (await store.get('Endpoint', 'shop/api'))?.value as { kind: string; metadata: { labels: Record<string, string> }; status: unknown }
    assert.equal(p.kind, 'Pod')
    assert.deepEqual(p.metadata.labels, { app: 'api', version: '2' })
    assert.deepEqual(p.status, { podIPs: [{ ip: '10.64.1.11' }, { ip: 'fd00:64::11' }] })

    const refused = await flatnet('endpoint', 'label', 'shop/api', 'app=web')
    assert.equal(refused.code, 1)
    assert.match(refused.stderr, /endpoint shop\/api: 'app' already has a value \(api\), and --overwrite is false/)
  })

  it('says an unknown endpoint is not found, and a malformed reference is a usage error', async () => {
    const r = await flatnet('endpoint', 'label', 'shop/ghost', 'a=1')
    assert.equal(r.code, 1)
    assert.match(r.stderr, /^error: endpoint shop\/ghost not found$/m)
    const bad = await flatnet('endpoint', 'label', 'ghost', 'a=1')
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /"ghost" is not an endpoint: write NAMESPACE\/NAME/)
  })
})

describe('flatnet policy status', () => {
  const statusStore = (): FlatnetStore => newStore('statustest')
  const status = (...args: string[]): ReturnType<typeof runCli> => runCli(['policy', 'status', ...args, '--redis', redis.url, '--cluster', 'statustest'])
  const iso = (msAgo: number): string => new Date(Date.now() - msAgo).toISOString()

  it('says when no node has reported, with the store revision', async () => {
    const r = await status()
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout, 'store revision 0\n')
    assert.match(r.stderr, /no node has reported a policy revision/)
  })

  it("shows each node's revision, its lag in revisions and seconds, and the latency of the current revision", async () => {
    const s = statusStore()
    try {
      // A registered, admitted node (a real signed record) that never reports.
      const key = await loadOrCreateNodeKey(join(tmp, 'node-key'))
      const registry = new NodeRegistry(s, new Ipam(s))
      await registry.register(await signNodeRecord(key.privateKey, { wireguardPublicKey: Buffer.alloc(32, 7).toString('base64'), endpoints: [], blocks: [], hostname: 'silent-host', sequence: 1 }))
      await registry.approve(key.peerId)
      // And one that reports under its node name, naming its PeerId in the report.
      const edgeKey = await loadOrCreateNodeKey(join(tmp, 'edge-key'))
      await registry.register(await signNodeRecord(edgeKey.privateKey, { wireguardPublicKey: Buffer.alloc(32, 8).toString('base64'), endpoints: [], blocks: [], hostname: 'edge-1', sequence: 1 }))
      await registry.approve(edgeKey.peerId)
      for (const name of ['a', 'b']) {
        await s.write([{ op: 'put', kind: 'Namespace', key: name, value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name } } }])
      }
      const current = await s.revision()
      assert.ok(current >= 3)
      // Reports from three agents: one current, one that saw the current revision but failed to apply it, one behind.
      const reports: Record<string, NodePolicyStatus> = {
        'node-current': { revision: current, appliedAt: iso(30_000), observedRevision: current, observedAt: iso(31_500), reportedAt: iso(1_000), hostname: 'web-1', version: '0.1.0' },
        'node-failing': { revision: current - 1, appliedAt: iso(120_000), observedRevision: current, observedAt: iso(20_000), error: 'nft: Could not process rule', hostname: 'web-2' },
        'node-behind': { revision: current - 2, appliedAt: iso(300_000), hostname: 'db-1' },
        'edge-1': { revision: current, appliedAt: iso(10_000), peerId: edgeKey.peerId },
      }
      for (const [node, rep] of Object.entries(reports)) await s.setStatus(node, nodePolicyStatusRecord(rep))
      assert.equal(await s.revision(), current, 'reports never bump the revision')

      const j = await status('-o', 'json')
      assert.equal(j.code, 0, j.stderr)
      const view = JSON.parse(j.stdout) as PolicyStatusView
      assert.equal(view.revision, current)
      assert.ok(Math.abs(Date.parse(view.revisionSeenAt as string) - (Date.now() - 31_500)) < 5_000, `first sighting ${view.revisionSeenAt}`)
      const by = new Map(view.nodes.map((n) => [n.hostname, n]))
      const near = (v: number | null, want: number): boolean => v !== null && Math.abs(v - want) < 5

      const cur = by.get('web-1')!
      assert.deepEqual([cur.state, cur.revision, cur.behind, cur.lagSeconds], ['current', current, 0, 0])
      assert.ok(near(cur.latencySeconds, 1.5), `latency ${cur.latencySeconds}`)
      assert.equal(cur.version, '0.1.0')

      const failing = by.get('web-2')!
      assert.deepEqual([failing.state, failing.revision, failing.behind, failing.observedRevision], ['failing', current - 1, 1, current])
      assert.ok(near(failing.lagSeconds, 31.5), `lag ${failing.lagSeconds}`)
      assert.equal(failing.error, 'nft: Could not process rule')

      const behind = by.get('db-1')!
      assert.deepEqual([behind.state, behind.behind], ['behind', 2])
      assert.ok(near(behind.lagSeconds, 31.5), 'lag is measured from when the current revision appeared, not from the node')
      assert.equal(behind.registered, false)

      const silent = by.get('silent-host')!
      assert.deepEqual([silent.state, silent.node, silent.registered, silent.revision], ['no-report', key.peerId, true, null])

      const edge = view.nodes.filter((n) => n.peerId === edgeKey.peerId)
      assert.equal(edge.length, 1, 'a node reporting under its name is not also listed as never reporting')
      assert.deepEqual([edge[0]?.node, edge[0]?.hostname, edge[0]?.registered, edge[0]?.state], ['edge-1', 'edge-1', true, 'current'])

      const t = await status('--wide')
      assert.equal(t.code, 0, t.stderr)
      assert.match(t.stdout, new RegExp(`^store revision ${current} \\(first applied or seen by a node at \\S+\\)$`, 'm'))
      assert.match(t.stdout, /NODE\s+HOSTNAME\s+REVISION\s+BEHIND\s+LAG\s+LATENCY\s+APPLIED\s+STATE/)
      assert.match(t.stdout, new RegExp(`node-current\\s+web-1\\s+${current}\\s+0\\s+0\\.0s\\s+1\\.[456]s\\s+3\\ds ago\\s+current`))
      assert.match(t.stdout, new RegExp(`node-failing\\s+web-2\\s+${current - 1}\\s+1\\s+3\\ds\\s+-\\s+2m ago\\s+failing: nft: Could not process rule`))
      assert.match(t.stdout, new RegExp(`node-behind\\s+db-1\\s+${current - 2}\\s+2\\s+3\\ds\\s+-\\s+5m ago\\s+behind \\(not a registered node\\)`))
      assert.match(t.stdout, new RegExp(`${key.peerId}\\s+silent-host\\s+-\\s+-\\s+-\\s+-\\s+-\\s+no report`))
    } finally {
      await s.close()
    }
  })

  it('shows a malformed report as invalid without hiding the others, and an unknown lag as "?"', async () => {
    const s = statusStore()
    try {
      await s.client.hset(s.keys.status, 'node-garbage', 'not json at all')
      await s.setStatus('node-typo', { revision: 'three', appliedAt: iso(0) })
      // Nobody has the current revision any more: how long it has waited is unknown.
      const current = await s.revision()
      await s.setStatus('node-current', { revision: current - 1, appliedAt: iso(30_000), hostname: 'web-1' })
      await s.client.hdel(s.keys.status, 'node-failing', 'edge-1')
      const view = JSON.parse((await status('-o', 'json')).stdout) as PolicyStatusView
      const by = new Map(view.nodes.map((n) => [n.node, n]))
      assert.equal(view.revisionSeenAt, null)
      assert.equal(by.get('node-garbage')?.state, 'invalid-report')
      assert.match(by.get('node-typo')?.problem ?? '', /revision must be a non-negative integer, got "three"/)
      assert.deepEqual([by.get('node-current')?.state, by.get('node-current')?.lagSeconds], ['behind', null])
      const t = await status('--wide')
      assert.equal(t.code, 0, t.stderr)
      assert.match(t.stdout, new RegExp(`node-current\\s+web-1\\s+${current - 1}\\s+1\\s+\\?\\s+-\\s+30s ago\\s+behind`))
      assert.match(t.stdout, /node-garbage\s+-\s+-\s+-\s+-\s+-\s+-\s+invalid report: the report is not an object/)
    } finally {
      await s.close()
    }
  })

  it('exits 3 with one line when the store is unreachable', async () => {
    const r = await runCli(['policy', 'status', '--redis', 'redis://127.0.0.1:1', '--timeout', '1000'])
    assert.equal(r.code, 3)
    assert.match(r.stderr, /^error: store unavailable: cannot reach Redis at redis:\/\/127\.0\.0\.1:1/)
    assert.equal(r.stderr.trim().split('\n').length, 1)
  })
})
