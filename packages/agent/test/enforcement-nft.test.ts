/**
 * Enforcement with real nftables, conntrack and NFLOG, in network namespaces made for this run
 * (see enforcement-world.ts): one host namespace holding the flatnet table and a host
 * endpoint, three workload namespaces attached by veth.
 *
 *   web/a  app=a      10.77.1.1  fd77::1:1   named port http = 80/TCP
 *   web/b  app=b      10.77.1.2  fd77::1:2
 *   db/c   app=c      10.77.1.3  fd77::1:3
 *   ops/node role=host 10.77.0.1  fd77::1     HostEndpoint (the host namespace itself)
 *
 * Policies: NetworkPolicies on a (ingress from b on http and 81/UDP, from ops on anything),
 * on db (egress only UDP to web) and on the host (ingress 80/TCP from web); Admin tier: a Deny
 * of b -> a on 81/UDP (beating the NetworkPolicy allow), a Pass of ops -> web, an Accept of
 * ops -> db on 81/TCP; Baseline: Deny from ops everywhere.
 *
 * Real TCP connects and UDP request/answer between every pair, on 80 and 81, over IPv4 and
 * IPv6, must give exactly what PolicySnapshot.evaluate gives.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { formatIp, type Protocol } from '@flatnet/core'
import { loadObjects, PolicyCompiler, renderNftRuleset, type NftFailsafe, type NftRuleInfo, type NftRulesetInput, type PolicySnapshot } from '@flatnet/policy'
import { loadAgentConfig } from '../src/config/index.js'
import { failsafeRulesetInput } from '../src/host-enforcement.js'
import type { LocalEndpoint } from '../src/enforcer.js'
import {
  createConntrackCutter,
  createNftEnforcer,
  createFlowLogReader,
  createNftTable,
  FlowLog,
  NftRulesetRejectedError,
  type ConntrackCutter,
  type FlowLogReader,
  type NftTable,
} from '../src/enforcement/index.js'
import { enforcementSkipReason, run, World, type Probe } from './enforcement-world.js'

type Manifest = Record<string, unknown>

const skip = enforcementSkipReason()

const HOST_KEY = 'ops/node'
const HOST_IPS = ['10.77.0.1', 'fd77::1']
const WORKLOADS = [
  { key: 'web/a', addresses: ['10.77.1.1', 'fd77::1:1'] },
  { key: 'web/b', addresses: ['10.77.1.2', 'fd77::1:2'] },
  { key: 'db/c', addresses: ['10.77.1.3', 'fd77::1:3'] },
]
const OVERLAY_PORT = 51820
const MESH_PORT = 7946

const ns = (name: string, team: string): Manifest => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels: { team } } })
const pod = (key: string, labels: Record<string, string>, ips: string[], ports: Manifest[] = []): Manifest => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { namespace: key.split('/')[0], name: key.split('/')[1], labels },
  spec: { containers: [{ name: 'main', ports }] },
  status: { podIPs: ips.map((ip) => ({ ip })) },
})
const np = (namespace: string, name: string, spec: Manifest): Manifest => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { namespace, name }, spec })
const cnp = (name: string, tier: 'Admin' | 'Baseline', priority: number, subject: Manifest, ingress: Manifest[]): Manifest => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name },
  spec: { tier, priority, subject, ingress },
})
const team = (t: string): Manifest => ({ namespaces: { matchLabels: { team: t } } })

const INVENTORY: Manifest[] = [
  ns('web', 'web'),
  ns('db', 'db'),
  ns('ops', 'ops'),
  pod('web/a', { app: 'a' }, WORKLOADS[0]!.addresses, [{ name: 'http', containerPort: 80 }]),
  pod('web/b', { app: 'b' }, WORKLOADS[1]!.addresses),
  pod('db/c', { app: 'c' }, WORKLOADS[2]!.addresses),
  { apiVersion: 'flatnet.dev/v1alpha1', kind: 'HostEndpoint', metadata: { namespace: 'ops', name: 'node', labels: { role: 'host' } }, spec: { ips: HOST_IPS } },
]

const HOST_ALLOWS_WEB_ON = (port: number): Manifest =>
  np('ops', 'node-in', { podSelector: { matchLabels: { role: 'host' } }, policyTypes: ['Ingress'], ingress: [{ from: [{ namespaceSelector: { matchLabels: { team: 'web' } } }], ports: [{ port }] }] })

const POLICIES: Manifest[] = [
  np('web', 'a-in', {
    podSelector: { matchLabels: { app: 'a' } },
    policyTypes: ['Ingress'],
    ingress: [
      { from: [{ podSelector: { matchLabels: { app: 'b' } } }], ports: [{ port: 'http' }, { protocol: 'UDP', port: 81 }] },
      { from: [{ namespaceSelector: { matchLabels: { team: 'ops' } } }] },
    ],
  }),
  np('db', 'c-out', { podSelector: {}, policyTypes: ['Egress'], egress: [{ to: [{ namespaceSelector: { matchLabels: { team: 'web' } } }], ports: [{ protocol: 'UDP' }] }] }),
  HOST_ALLOWS_WEB_ON(80),
  cnp('deny-b-to-a-udp81', 'Admin', 10, { pods: { namespaceSelector: { matchLabels: { team: 'web' } }, podSelector: { matchLabels: { app: 'a' } } } }, [
    { name: 'no-udp-81', action: 'Deny', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { app: 'b' } } } }], protocols: [{ udp: { destinationPort: { number: 81 } } }] },
  ]),
  cnp('pass-ops', 'Admin', 20, team('web'), [{ action: 'Pass', from: [team('ops')] }]),
  cnp('ops-to-db-81', 'Admin', 30, team('db'), [{ action: 'Accept', from: [team('ops')], protocols: [{ tcp: { destinationPort: { number: 81 } } }] }]),
  cnp('no-ops', 'Baseline', 10, { namespaces: {} }, [{ action: 'Deny', from: [team('ops')] }]),
]

/** Every endpoint denies all ingress (Admin tier), and the host is isolated both ways. */
const DENY_ALL: Manifest[] = [
  ...INVENTORY,
  cnp('deny-all', 'Admin', 0, { namespaces: {} }, [{ action: 'Deny', from: [{ namespaces: {} }] }]),
  np('ops', 'node-in', { podSelector: {}, policyTypes: ['Ingress', 'Egress'] }),
]

function compile(manifests: readonly Manifest[]): PolicySnapshot {
  const loaded = loadObjects([{ file: 'enforcement-world.yaml', text: manifests.map((m) => JSON.stringify(m)).join('\n---\n') }])
  return new PolicyCompiler().load(loaded)
}

interface Cell {
  readonly from: string
  readonly to: string
  readonly srcIp: string
  readonly dstIp: string
  readonly port: number
  readonly protocol: Protocol
}

/** Every ordered pair of endpoints, both families, ports 80 and 81, TCP and UDP. */
function matrix(snapshot: PolicySnapshot): Cell[] {
  const keys = [HOST_KEY, ...WORKLOADS.map((w) => w.key)]
  const cells: Cell[] = []
  for (const from of keys) {
    for (const to of keys) {
      if (from === to) continue
      for (const family of [4, 6] as const) {
        const srcIp = formatIp(snapshot.endpoint(from)!.ips.find((ip) => ip.family === family)!)
        const dstIp = formatIp(snapshot.endpoint(to)!.ips.find((ip) => ip.family === family)!)
        for (const port of [80, 81]) for (const protocol of ['TCP', 'UDP'] as const) cells.push({ from, to, srcIp, dstIp, port, protocol })
      }
    }
  }
  return cells
}

const describeCell = (c: Cell): string => `${c.from} (${c.srcIp}) -> ${c.to} (${c.dstIp}) ${c.port}/${c.protocol}`

describe('nftables enforcement in network namespaces', { skip }, () => {
  const world = new World()
  let snapshot: PolicySnapshot
  let input: NftRulesetInput
  let table: NftTable
  let cutter: ConntrackCutter
  let flowLog: FlowLog
  let reader: FlowLogReader
  let rulesetRev = ''
  let rules: Readonly<Record<string, NftRuleInfo>> = {}

  const probeCell = (probe: Probe, c: Cell, timeoutMs = 2000): Promise<boolean> =>
    probe.request({ op: 'probe', proto: c.protocol.toLowerCase(), host: c.dstIp, port: c.port, timeoutMs, localAddress: c.srcIp }).then((r) => r.ok)

  before(async () => {
    await world.build(HOST_IPS, WORKLOADS)
    await world.startProbes(HOST_KEY, [80, 81, 22, MESH_PORT, OVERLAY_PORT], [80, 81])
    snapshot = compile([...INVENTORY, ...POLICIES])
    input = {
      localEndpoints: [{ key: HOST_KEY, kind: 'host' }, ...world.workloads.map((w) => ({ key: w.key, kind: 'workload' as const, hostInterface: w.hostIfname }))],
      protectedPorts: { overlayUdpPort: OVERLAY_PORT, meshTcpPort: MESH_PORT },
      logPrefixTag: `t${world.tag}`,
    }
    table = createNftTable({ netns: world.host })
    cutter = createConntrackCutter({ netns: world.host })
    flowLog = new FlowLog({ tag: `t${world.tag}` })
    reader = createFlowLogReader(flowLog, { group: renderNftRuleset(snapshot, input).logGroup, netns: world.host })
    await reader.start()
    const enforcer = createNftEnforcer({ table, conntrack: cutter, flowLog })
    const result = await enforcer.enforce(snapshot, input)
    assert.equal(result.applied, true)
    assert.deepEqual(result.ruleset.skipped, [])
    rulesetRev = result.ruleset.rev
    rules = result.ruleset.rules
    assert.equal((await enforcer.enforce(snapshot, input)).applied, false, 'an unchanged ruleset is not applied again')
  })

  after(async () => {
    await reader?.stop()
    await world.destroy()
  })

  it('lets through exactly what PolicySnapshot.evaluate allows: every pair, ports 80/81, TCP and UDP, IPv4 and IPv6', async () => {
    const cells = matrix(snapshot)
    const got = await Promise.all(cells.map((c) => probeCell(world.probe(c.from), c)))
    const wrong: string[] = []
    cells.forEach((c, i) => {
      const v = snapshot.evaluate(snapshot.resolve(c.srcIp), snapshot.resolve(c.dstIp), c.port, c.protocol)
      if (v.allowed !== got[i]) wrong.push(`${describeCell(c)}: connected=${got[i]}, evaluate=${v.allowed} (${v.decidedBy.reason})`)
    })
    assert.deepEqual(wrong, [])
    const allowed = got.filter(Boolean).length
    // The world must exercise both outcomes, in every tier, or agreement proves little.
    assert.ok(allowed > 20 && allowed < cells.length - 20, `${allowed} of ${cells.length} allowed`)
    const tiers = new Set(cells.map((c) => snapshot.evaluate(snapshot.resolve(c.srcIp), snapshot.resolve(c.dstIp), c.port, c.protocol).decidedBy.tier))
    assert.deepEqual([...tiers].sort(), ['Admin', 'Baseline', 'Default', 'NetworkPolicy'])
  })

  it("counts packets under the rule that decided, and the flow log names that rule for every flow", async () => {
    const counters = await table.counters()
    assert.equal(counters.rev, rulesetRev)
    const idOf = (pred: (r: NftRuleInfo) => boolean): string => {
      const found = Object.values(rules).filter(pred)
      assert.equal(found.length, 1, `exactly one rule matches, got ${found.map((r) => r.description).join('; ')}`)
      return found[0]!.id
    }
    const adminDeny = idOf((r) => r.policy === 'deny-b-to-a-udp81' && r.endpoint === 'web/a' && r.direction === 'ingress')
    const npAllow = idOf((r) => r.policy === 'web/a-in' && r.rule === 0 && r.endpoint === 'web/a')
    const baseline = idOf((r) => r.policy === 'no-ops' && r.endpoint === 'web/b')
    // b -> a 81/UDP over IPv4 and IPv6: one packet each, both stopped by the Admin Deny.
    assert.equal(counters.rules.get(adminDeny)?.packets, 2)
    assert.ok((counters.rules.get(npAllow)?.packets ?? 0) >= 2, 'b -> a on http, both families')
    assert.ok((counters.rules.get(baseline)?.packets ?? 0) >= 8, 'node -> b, every port and protocol, both families')

    // Every flow of the matrix is in the flow log with evaluate's verdict and deciding rule.
    const cells = matrix(snapshot)
    const find = (c: Cell) => flowLog.recent().find((f) => f.src === c.srcIp && f.dst === c.dstIp && f.dstPort === c.port && f.protocol === c.protocol)
    const deadline = Date.now() + 5000
    while (cells.some((c) => !find(c)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    const wrong: string[] = []
    for (const c of cells) {
      const v = snapshot.evaluate(snapshot.resolve(c.srcIp), snapshot.resolve(c.dstIp), c.port, c.protocol)
      const f = find(c)
      const want = `${v.allowed ? 'allow' : 'deny'} ${v.decidedBy.direction} ${v.decidedBy.tier} ${v.decidedBy.policy ?? '-'} ${v.decidedBy.rule ?? '-'}`
      const have = f ? `${f.verdict} ${f.decidedBy.direction} ${f.decidedBy.tier} ${f.decidedBy.policy ?? '-'} ${f.decidedBy.rule ?? '-'}` : 'missing'
      if (want !== have) wrong.push(`${describeCell(c)}: flow log says ${have}, evaluate ${want}`)
    }
    assert.deepEqual(wrong, [])
    const merged = find(cells.find((c) => c.from === 'web/b' && c.to === 'web/a' && c.port === 81 && c.protocol === 'UDP')!)!
    assert.equal(merged.egress?.tier, 'Default', "b's egress record and a's ingress record are one flow")
    assert.equal(merged.ingress?.ruleName, 'no-udp-81')
    assert.equal(flowLog.stats().unattributed, 0)
  })

  it('keeps failsafe and protected ports of the host endpoint open under a deny-all', async () => {
    const locked = compile(DENY_ALL)
    await table.apply(renderNftRuleset(locked, input))
    const a = world.probe('web/a')
    const toHost = (port: number, protocol: Protocol, family: 4 | 6 = 4): Cell => ({
      from: 'web/a',
      to: HOST_KEY,
      srcIp: WORKLOADS[0]!.addresses[family === 4 ? 0 : 1]!,
      dstIp: HOST_IPS[family === 4 ? 0 : 1]!,
      port,
      protocol,
    })
    const cells = [toHost(22, 'TCP'), toHost(22, 'TCP', 6), toHost(MESH_PORT, 'TCP'), toHost(OVERLAY_PORT, 'UDP'), toHost(80, 'TCP'), toHost(81, 'UDP', 6)]
    const got = await Promise.all(cells.map((c) => probeCell(a, c)))
    assert.deepEqual(got, [true, true, true, true, false, false], 'ssh, mesh and overlay open; policy ports closed')
    for (const c of cells.slice(4)) assert.equal(locked.evaluate(locked.resolve(c.srcIp), locked.resolve(c.dstIp), c.port, c.protocol).allowed, false)
    assert.equal(await probeCell(world.probe('web/b'), { from: 'web/b', to: 'web/a', srcIp: '10.77.1.2', dstIp: '10.77.1.1', port: 80, protocol: 'TCP' }), false)
  })

  it('opens a failsafe port limited to a CIDR (from the agent configuration) only to sources in that CIDR, under a deny-all', async () => {
    const [aV4, aV6] = WORKLOADS[0]!.addresses as [string, string]
    const dir = mkdtempSync(join(tmpdir(), 'fn-enf-config-'))
    let failsafe: NftFailsafe
    try {
      const file = join(dir, 'agent.yaml')
      writeFileSync(file, ['policy:', '  failsafe:', '    inbound:', `    - {protocol: TCP, port: 22, cidr: ${aV4}/32}`, '    outbound: []', ''].join('\n'))
      failsafe = failsafeRulesetInput(loadAgentConfig({ file, env: {} }, { hostname: () => 'node' }).policy.failsafe)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
    assert.deepEqual(failsafe.inbound, [{ protocol: 'tcp', port: 22, cidr: `${aV4}/32` }])
    const locked = compile(DENY_ALL)
    const ruleset = renderNftRuleset(locked, { ...input, failsafe })
    await table.apply(ruleset)
    const ssh = (from: string, srcIp: string, dstIp: string): Promise<boolean> =>
      probeCell(world.probe(from), { from, to: HOST_KEY, srcIp, dstIp, port: 22, protocol: 'TCP' })
    const [fromA, fromB, fromC, fromA6] = await Promise.all([
      ssh('web/a', aV4, HOST_IPS[0]!),
      ssh('web/b', WORKLOADS[1]!.addresses[0]!, HOST_IPS[0]!),
      ssh('db/c', WORKLOADS[2]!.addresses[0]!, HOST_IPS[0]!),
      ssh('web/a', aV6, HOST_IPS[1]!),
    ])
    assert.deepEqual(
      { fromA, fromB, fromC, fromA6 },
      { fromA: true, fromB: false, fromC: false, fromA6: false },
      `only ${aV4} reaches SSH: not the other workloads, and not web/a over IPv6 (the CIDR is IPv4)`,
    )
    const rule = Object.values(ruleset.rules).find((r) => r.tier === 'Failsafe' && r.description.endsWith(`from ${aV4}/32`))
    assert.ok(rule, 'the limited entry has a rule of its own')
    assert.equal((await table.counters()).rules.get(rule.id)?.packets, 1, "web/a's SYN, counted under the limited failsafe rule")
  })

  it('replaces the table atomically: one table after repeated applies, a refused ruleset changes nothing', async () => {
    const ruleset = renderNftRuleset(snapshot, input)
    await table.apply(ruleset)
    await table.apply(ruleset)
    const tables = (await run(['ip', 'netns', 'exec', world.host, 'nft', 'list', 'tables'])).stdout.split('\n').filter((l) => l.trim() !== '')
    assert.deepEqual(tables, ['table inet flatnet'])
    assert.equal((await table.counters()).rev, ruleset.rev)

    const lines = ruleset.text.split('\n')
    const bad = lines.findIndex((l) => l.trim() === 'jump dispatch')
    lines[bad] = '\t\tjump no-such-chain'
    await assert.rejects(table.apply({ table: 'flatnet', text: lines.join('\n') }), (err: unknown) => {
      assert.ok(err instanceof NftRulesetRejectedError, String(err))
      assert.equal(err.code, 'ERR_NFT_RULESET_REJECTED')
      assert.ok(err.problems.some((p) => p.line === bad + 1 && p.text.includes('no-such-chain')), JSON.stringify(err.problems))
      return true
    })
    assert.equal((await table.counters()).rev, ruleset.rev, 'the previous ruleset stays in force')
    assert.equal(await probeCell(world.probe('web/b'), { from: 'web/b', to: 'web/a', srcIp: '10.77.1.2', dstIp: '10.77.1.1', port: 80, protocol: 'TCP' }), true)
  })

  /** The world's local endpoints as the agent hands them over: records, and host veths where it attached them. */
  const localOfInput = (): LocalEndpoint[] => input.localEndpoints.map((l) => ({ record: snapshot.endpoint(l.key)!, hostInterface: l.hostInterface }))

  it("takes the agent's local endpoints (records, and the veths it attached) and gives the same table as the full input", async () => {
    const enforcer = createNftEnforcer({ table, conntrack: cutter }, { ruleset: { protectedPorts: input.protectedPorts, logPrefixTag: input.logPrefixTag } })
    await enforcer.start()
    const report = await enforcer.apply(snapshot, localOfInput())
    assert.equal(enforcer.current?.text, renderNftRuleset(snapshot, input).text)
    assert.equal(report.rules, Object.keys(rules).length)
    assert.equal((await table.counters()).rev, rulesetRev)
  })

  it('tells the agent its rules are loaded once the table is in the kernel, then cuts by the same snapshot before the pass ends; an unchanged ruleset is in force without a cut', async () => {
    const events: string[] = []
    const enforcer = createNftEnforcer({
      table,
      conntrack: {
        list: () => cutter.list(),
        cut: async (...args) => {
          events.push(`cut; kernel rev ${(await table.counters()).rev === enforcer.current?.rev ? 'current' : 'other'}`)
          return cutter.cut(...args)
        },
      },
    })
    try {
      await table.remove()
      const local = localOfInput()
      const report = await enforcer.apply(snapshot, local, { onRulesLoaded: () => void events.push('loaded') })
      assert.deepEqual(events, ['loaded', 'cut; kernel rev current'], 'both before apply() returns, in this order')
      assert.equal(report.rules, Object.keys(enforcer.current!.rules).length)
      events.length = 0
      await enforcer.apply(snapshot, local, { onRulesLoaded: () => void events.push('loaded') })
      assert.deepEqual(events, ['loaded'], 'an unchanged ruleset is not applied again (nor cut), but it is in force')
    } finally {
      // Back to the full input (with the workloads' host interfaces) for the tests that follow.
      await table.apply(renderNftRuleset(snapshot, input))
    }
  })

  it('drops packets a workload sends from an address that is not its own, and counts them', async () => {
    const a = world.probe('web/a')
    const b = world.probe('web/b')
    const spoofed = `spoof-${world.tag}`
    const genuine = `genuine-${world.tag}`
    // The workload claims an address that is not its own: the kernel then lets it send from it.
    const wa = world.workloads.find((w) => w.key === 'web/a')!
    await run(['ip', '-n', wa.netns, 'addr', 'add', '10.77.9.9/32', 'dev', 'eth0'])
    for (const [from, token] of [
      ['10.77.9.9', spoofed],
      ['10.77.1.1', genuine],
    ] as const) {
      const sent = await a.request({ op: 'spoof', from, host: '10.77.1.2', port: 80, token })
      assert.equal(sent.ok, true, `sending from ${from}: ${sent.error}`)
    }
    const deadline = Date.now() + 2000
    while (!(await b.request({ op: 'received', token: genuine })).ok && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50))
    assert.equal((await b.request({ op: 'received', token: genuine })).ok, true, 'the same datagram from its own address arrives')
    assert.equal((await b.request({ op: 'received', token: spoofed })).ok, false, 'the spoofed one does not')
    // Policy alone would let it through: an outside source is ungoverned, and b allows it.
    assert.equal(snapshot.evaluateRefs('10.77.9.9', 'web/b', 80, 'UDP').allowed, true)
    const current = renderNftRuleset(snapshot, input)
    const antiSpoof = Object.values(current.rules).find((r) => r.tier === 'AntiSpoofing' && r.endpoint === 'web/a')!
    assert.ok(((await table.counters()).rules.get(antiSpoof.id)?.packets ?? 0) >= 1)
  })

  it('cuts an established connection that a policy change denies, and only that one', async () => {
    const a = world.probe('web/a')
    const b = world.probe('web/b')
    const toHost = await a.request({ op: 'open', host: '10.77.0.1', port: 80, localAddress: '10.77.1.1' })
    const toA = await b.request({ op: 'open', host: '10.77.1.1', port: 80, localAddress: '10.77.1.2' })
    assert.ok(toHost.ok && toA.ok)
    assert.equal((await a.request({ op: 'echo', conn: toHost.conn, timeoutMs: 2000 })).ok, true)

    // The host now takes only 81 from web: a -> node:80 is denied from here on.
    const changed = compile([...INVENTORY, ...POLICIES.filter((p) => (p.metadata as { name: string }).name !== 'node-in'), HOST_ALLOWS_WEB_ON(81)])
    assert.equal(changed.evaluateRefs('web/a', HOST_KEY, 80, 'TCP').allowed, false)
    await table.apply(renderNftRuleset(changed, input))
    assert.equal((await a.request({ op: 'echo', conn: toHost.conn, timeoutMs: 2000 })).ok, true, 'conntrack still carries the established connection')
    assert.equal(await probeCell(a, { from: 'web/a', to: HOST_KEY, srcIp: '10.77.1.1', dstIp: '10.77.0.1', port: 80, protocol: 'TCP' }), false, 'new connections are refused')

    const cut = await cutter.cut(changed, input)
    assert.ok(cut.examined >= 2)
    const tuple = (e: (typeof cut.denied)[number]['entry']): string =>
      `${formatIp(e.original.src)}:${e.original.sport} -> ${formatIp(e.original.dst)}:${e.original.dport}/${e.protocol}`
    const denied = cut.denied.map((d) => tuple(d.entry))
    assert.ok(denied.includes(`10.77.1.1:${toHost.localPort} -> 10.77.0.1:80/TCP`), denied.join(', '))
    // Others are what is left of the first test's probes to node:80 (closing and closed entries); each one is denied now.
    for (const d of cut.denied) {
      const e = d.entry
      assert.equal(changed.evaluate(changed.resolve(formatIp(e.original.src)), changed.resolve(formatIp(e.reply.src)), e.reply.sport, e.protocol).allowed, false, tuple(e))
      assert.equal(d.verdict.ingress?.policy, 'ops/node-in')
    }
    assert.ok(!denied.some((t) => t.startsWith(`10.77.1.2:${toA.localPort} `)), 'b -> a:80 is still allowed')
    assert.equal((await a.request({ op: 'echo', conn: toHost.conn, timeoutMs: 1500 })).ok, false, 'the cut connection gets no more answers')
    assert.equal((await b.request({ op: 'echo', conn: toA.conn, timeoutMs: 2000 })).ok, true, 'b -> a:80 is still allowed and keeps running')
  })

  it('removes the table, after which nothing is enforced', async () => {
    await table.remove()
    assert.equal(await table.exists(), false)
    await table.remove()
    const cell: Cell = { from: 'db/c', to: 'web/a', srcIp: '10.77.1.3', dstIp: '10.77.1.1', port: 81, protocol: 'TCP' }
    assert.equal(snapshot.evaluate(snapshot.resolve(cell.srcIp), snapshot.resolve(cell.dstIp), cell.port, cell.protocol).allowed, false)
    assert.equal(await probeCell(world.probe('db/c'), cell), true)
  })
})
