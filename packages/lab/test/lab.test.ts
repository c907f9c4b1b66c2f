/**
 * The lab for real, in network namespaces: the default topology built with the per-host
 * allocator and plain routes over the underlay, probed end to end, an nft rule in one
 * workload seen as exactly the flows it drops, and `lab down` leaving nothing behind.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { InvalidArgumentError, UnknownEndpointError } from '@flatnet/core'
import { attachWorkload, checkWorkload } from '@flatnet/agent/workload-link'
import { PolicyCompiler } from '@flatnet/policy'
import {
  buildLab,
  formatShellEnv,
  fullMatrix,
  LabBuilder,
  labDown,
  labEnv,
  LabExistsError,
  labInventory,
  LabNotFoundError,
  LabState,
  loadTopology,
  perHostAllocator,
  probeLab,
  readLabState,
  readTopology,
  type LabInfo,
  type LabProbeResult,
  type Topology,
} from '../src/index.js'
import { labNamespaces, running, sh, skipReason, sweep, tempStateDir, uniqueLabId } from './helpers.js'

const flowText = (r: { from: string; to: string; port: number; protocol: string }): string => `${r.from} -> ${r.to}:${r.port}/${r.protocol}`

describe('lab in network namespaces', { skip: skipReason }, () => {
  const id = uniqueLabId()
  let stateDir: string
  let topology: Topology
  let info: LabInfo

  before(async () => {
    stateDir = await tempStateDir()
    topology = await loadTopology()
    const alloc = perHostAllocator(topology)
    info = await buildLab({ topology, stateDir, id, allocate: alloc.allocate, hostPrefixes: alloc.prefixesOf })
  })

  after(async () => {
    await labDown({ stateDir }).catch(() => undefined)
    await sweep(id, stateDir)
  })

  it('builds an underlay, a namespace per host and per workload, each workload attached with its address', async () => {
    const expected = [`fn-lab-${id}-ul`, ...topology.hosts.map((h) => `fn-lab-${id}-${h.name}`), ...topology.workloads.map((w) => `fn-lab-${id}-${w.namespace}.${w.name}`)]
    assert.deepEqual((await labNamespaces(id)).sort(), expected.sort())
    assert.equal(info.phase, 'up')
    assert.deepEqual(
      info.hosts.map((h) => `${h.name} ${h.underlayAddress} ${h.prefixes.join(',')}`),
      ['vm 192.168.77.1 10.99.1.0/24', 'baremetal 192.168.77.2 10.99.2.0/24', 'k8s-node 192.168.77.3 10.99.3.0/24'],
    )
    for (const ep of info.endpoints.filter((e) => e.role === 'workload')) {
      const host = info.hosts.find((h) => h.name === ep.host)!
      const check = await checkWorkload({ netns: ep.netns, hostNetns: host.netns, hostIfname: ep.hostIfname!, addresses: ep.addresses, mtu: 1420 })
      assert.deepEqual(check, { ok: true, problems: [] }, ep.key)
    }
    // Host endpoints carry their address on lo of the host namespace.
    assert.match(await sh('ip', '-n', `fn-lab-${id}-vm`, 'addr', 'show', 'dev', 'lo'), /inet 10\.99\.1\.1\/32/)
    // Workloads on k8s-node hosts are Pods; everything else is a HostEndpoint.
    const inventory = labInventory(info)
    assert.equal(inventory.endpoints.find((e) => e.name === 'frontend')?.kind, 'Pod')
    assert.equal(inventory.endpoints.find((e) => e.name === 'postgres')?.kind, 'HostEndpoint')
    // Every process runs and is recorded with the PID it got.
    const state = readLabState(stateDir)!
    assert.equal(state.processes.length, info.endpoints.length)
    for (const p of state.processes) assert.ok(p.pid !== undefined && running(p.pid), p.name)
  })

  it('probes the full matrix without any policy: every flow answered by its destination, in seconds', async () => {
    const started = Date.now()
    const results = await probeLab({ stateDir })
    const elapsed = Date.now() - started
    const expected = fullMatrix(info.endpoints)
    assert.deepEqual(results.map(flowText), expected.map(flowText))
    const denied = results.filter((r) => !r.allowed)
    assert.deepEqual(denied.map((r) => `${flowText(r)} ${r.probe.result}`), [])
    for (const r of results) assert.equal(r.probe.reply, `${r.to} ${r.port}/${r.protocol}`)
    // The matrix crosses hosts (vm, baremetal, k8s-node) over the underlay.
    const hostOf = new Map(info.endpoints.map((e) => [e.key, e.host]))
    assert.ok(results.filter((r) => hostOf.get(r.from) !== hostOf.get(r.to)).length >= results.length / 2)
    assert.ok(elapsed < 10_000, `${results.length} flows took ${elapsed} ms`)
  })

  it('measures exactly the flows an nft rule in one workload drops or rejects as denied', async () => {
    const api = info.endpoints.find((e) => e.key === 'shop/api')!
    const cache = info.endpoints.find((e) => e.key === 'data/cache')!
    const rules = (port: number, proto: 'tcp' | 'udp', verdict: string): string =>
      `table inet fn_lab_test {\n chain input {\n  type filter hook input priority 0; policy accept;\n  ${proto} dport ${port} ${verdict}\n }\n}\n`
    const load = (netns: string, text: string): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const child = spawn('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] })
        let err = ''
        child.stderr.on('data', (d: Buffer) => (err += d.toString()))
        child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft in ${netns}: ${err}`))))
        child.stdin.end(text)
      })
    await load(api.netns, rules(9090, 'tcp', 'drop'))
    await load(cache.netns, rules(8125, 'udp', 'reject'))
    try {
      const started = Date.now()
      const results = await probeLab({ stateDir })
      const elapsed = Date.now() - started
      const denied = results.filter((r) => !r.allowed)
      const shouldDeny = (r: LabProbeResult): boolean => (r.to === 'shop/api' && r.port === 9090 && r.protocol === 'TCP') || (r.to === 'data/cache' && r.port === 8125 && r.protocol === 'UDP')
      assert.deepEqual(denied.map(flowText), results.filter(shouldDeny).map(flowText))
      assert.equal(denied.length, 2 * info.endpoints.filter((e) => e.ports.length > 0).length)
      for (const r of denied) assert.equal(r.probe.result, r.protocol === 'TCP' ? 'timeout' : 'refused', flowText(r))
      // The dropped flows wait out their 1 s timeouts together, not one after another.
      assert.ok(elapsed < 6000, `probing with ${denied.length} denied flows took ${elapsed} ms`)
    } finally {
      await sh('ip', 'netns', 'exec', api.netns, 'nft', 'delete', 'table', 'inet', 'fn_lab_test')
      await sh('ip', 'netns', 'exec', cache.netns, 'nft', 'delete', 'table', 'inet', 'fn_lab_test')
    }
  })

  it('probes given flows: extra fields pass through, IPs resolve, a closed port is refused, verdicts come from evaluate', async () => {
    const snapshot = new PolicyCompiler().load(labInventory(info))
    const flows = [
      { from: 'hosts/vm', to: 'shop/api', port: 8080, protocol: 'TCP' as const, case: 'host to pod' },
      { from: '10.99.3.2', to: '10.99.2.2', port: 6379, protocol: 'TCP' as const },
      { from: 'shop/frontend', to: 'data/postgres', port: 5433, protocol: 'TCP' as const },
      { from: 'hosts/k8s-node', to: 'data/cache', port: 8125, protocol: 'UDP' as const },
    ]
    const results = await probeLab({ stateDir, flows, evaluate: (f) => snapshot.evaluateRefs(f.from, f.to, f.port, f.protocol) })
    assert.deepEqual(
      results.map((r) => [r.allowed, r.expected, r.probe.result, r.tier, r.direction]),
      [
        [true, true, 'answered', 'Default', 'ingress'],
        [true, true, 'answered', 'Default', 'ingress'],
        [false, true, 'refused', 'Default', 'ingress'],
        [true, true, 'answered', 'Default', 'ingress'],
      ],
    )
    assert.equal(results[0]!.case, 'host to pod')
    assert.equal(results[1]!.from, '10.99.3.2', 'the flow is printed as given')
    assert.deepEqual(Object.keys(results[0]!).slice(0, 13), ['from', 'to', 'port', 'protocol', 'case', 'allowed', 'direction', 'tier', 'policyKind', 'policy', 'rule', 'egress', 'ingress'])
    await assert.rejects(probeLab({ stateDir, flows: [{ from: 'shop/nope', to: 'shop/api', port: 1, protocol: 'TCP' }] }), UnknownEndpointError)
    await assert.rejects(probeLab({ stateDir, flows: [{ from: 'shop/api', to: 'shop/api', port: 1, protocol: 'SCTP' }] }), InvalidArgumentError)
    await assert.rejects(probeLab({ stateDir, flows: [{ from: '192.0.2.1', to: 'shop/api', port: 1, protocol: 'TCP' }] }), /the source must be a lab endpoint/)
  })

  it('refuses a second lab in the same state directory or with the same id', async () => {
    await assert.rejects(LabBuilder.create({ topology, stateDir, id: uniqueLabId() }), LabExistsError)
    const other = await tempStateDir()
    try {
      await assert.rejects(LabBuilder.create({ topology, stateDir: other, id }), (err: unknown) => err instanceof LabExistsError && err.message.includes(`fn-lab-${id}-`))
      assert.equal(existsSync(`${other}/lab.json`), false)
    } finally {
      await sweep('none', other)
    }
  })

  it('lab env gives the variables lab up stored, quoted for the shell', () => {
    LabState.open(stateDir).setEnv({ FLATNET_REDIS_URL: `unix://${stateDir}/redis.sock`, ODD: "it's" })
    const env = labEnv(stateDir)
    assert.deepEqual(env, { FLATNET_LAB_STATE_DIR: stateDir, FLATNET_REDIS_URL: `unix://${stateDir}/redis.sock`, ODD: "it's" })
    assert.equal(formatShellEnv({ A: 'x y', ODD: "it's" }), `export A='x y'\nexport ODD='it'\\''s'`)
  })

  it('lab down stops every process and deletes every namespace and file; a second down finds nothing', async () => {
    const pids = readLabState(stateDir)!.processes.map((p) => p.pid!)
    const result = await labDown({ stateDir })
    assert.equal(result.found, true)
    assert.equal(result.stopped.length, pids.length)
    assert.deepEqual(await labNamespaces(id), [])
    for (const pid of pids) assert.equal(running(pid), false, `pid ${pid} still runs`)
    assert.equal(existsSync(stateDir), false)
    assert.deepEqual(await labDown({ stateDir }), { found: false, stopped: [], netnsDeleted: [], linksDeleted: [], pathsRemoved: [] })
    assert.throws(() => labEnv(stateDir), LabNotFoundError)
    await assert.rejects(probeLab({ stateDir }), LabNotFoundError)
  })
})

describe('lab with workloads attached by someone else (as the agents do)', { skip: skipReason }, () => {
  const id = uniqueLabId()
  let stateDir: string

  after(async () => {
    await labDown({ stateDir }).catch(() => undefined)
    await sweep(id, stateDir)
  })

  it('hands each empty workload namespace to `attach`, records the addresses it reports, and probes them', async () => {
    stateDir = await tempStateDir()
    const topology = readTopology(
      'two.yaml',
      `apiVersion: flatnet.dev/v1alpha1
kind: LabTopology
namespaces: {x: {}, hosts: {}}
hosts:
- {name: h1, kind: k8s-node, namespace: hosts}
- {name: h2, kind: vm, namespace: hosts}
workloads:
- {namespace: x, name: a, host: h1, ports: [{name: web, port: 80}]}
- {namespace: x, name: b, host: h2, ports: [{name: dns, port: 53, protocol: UDP}]}
`,
    )
    const asked: string[] = []
    const addressOf: Record<string, string> = { 'x/a': '10.98.1.10', 'x/b': '10.98.2.10' }
    const info = await buildLab({
      topology,
      stateDir,
      id,
      // Host endpoints get no address here; routes cover the workloads' blocks.
      allocate: () => [],
      hostPrefixes: (host) => [host === 'h1' ? '10.98.1.0/24' : '10.98.2.0/24'],
      attach: async (req) => {
        asked.push(`${req.key} ${req.netns} ${req.hostNetns} ${req.mtu}`)
        const hostIfname = `agent${req.workload.name}`
        await attachWorkload({ netns: req.netns, hostNetns: req.hostNetns, hostIfname, addresses: [addressOf[req.key]!], mtu: req.mtu })
        return { addresses: [`${addressOf[req.key]!}/32`], hostIfname }
      },
    })
    assert.deepEqual(asked.sort(), [`x/a fn-lab-${id}-x.a fn-lab-${id}-h1 1420`, `x/b fn-lab-${id}-x.b fn-lab-${id}-h2 1420`])
    assert.deepEqual(
      info.endpoints.map((e) => `${e.key} ${e.addresses.join(',') || '-'} ${e.hostIfname ?? '-'}`),
      ['hosts/h1 - -', 'hosts/h2 - -', 'x/a 10.98.1.10 agenta', 'x/b 10.98.2.10 agentb'],
    )
    const results = await probeLab({ stateDir })
    assert.deepEqual(
      results.map((r) => `${flowText(r)} ${r.probe.result}`),
      ['x/a -> x/a:80/TCP answered', 'x/a -> x/b:53/UDP answered', 'x/b -> x/a:80/TCP answered', 'x/b -> x/b:53/UDP answered'],
    )
  })
})
