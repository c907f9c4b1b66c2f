/**
 * The nftables renderer, without a kernel (the agent's enforcement test runs the text through
 * real nft and real packets):
 *
 * - the text of a small world: chain layout, tier order, verdicts, sets, dispatch, anti-spoofing;
 * - determinism: the same state gives the same text, whatever order it was built in;
 * - input checking and log prefixes;
 * - a differential test: random worlds are planned, the plan is executed packet by packet by a
 *   small interpreter of nft's rule semantics (first match, jump/goto/return, vmap dispatch),
 *   and every flow with a local side must get the verdict and attribution of
 *   `PolicySnapshot.evaluate`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { formatIp, InvalidArgumentError, parseIp, seededRandom, type IpAddress, type Protocol } from '@flatnet/core'
import {
  addressFromValue,
  addressValue,
  enforcedVerdicts,
  nftLogPrefix,
  parseNftLogPrefix,
  planNftRuleset,
  PolicyCompiler,
  renderNftRuleset,
  type DirectionVerdict,
  type NftFailsafe,
  type NftLocalEndpoint,
  type NftPlan,
  type NftPortSpec,
  type NftRulesetInput,
  type PlanMatch,
  type PolicySnapshot,
} from '../src/index.js'
import { loadPlain } from './helpers.js'

type Labels = Record<string, string>
type Manifest = Record<string, unknown>

const namespace = (name: string, labels: Labels): Manifest => ({ apiVersion: 'v1', kind: 'Namespace', metadata: { name, labels } })
const pod = (ns: string, name: string, labels: Labels, ips: string[], ports: { name: string; containerPort: number; protocol?: Protocol }[] = []): Manifest => ({
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name, namespace: ns, labels },
  spec: { containers: [{ name: 'main', ports }] },
  status: { podIPs: ips.map((ip) => ({ ip })) },
})
const hostEndpoint = (ns: string, name: string, labels: Labels, ips: string[], ports: { name: string; port: number; protocol?: Protocol }[] = []): Manifest => ({
  apiVersion: 'flatnet.dev/v1alpha1',
  kind: 'HostEndpoint',
  metadata: { name, namespace: ns, labels },
  spec: { ips, ports },
})
const networkPolicy = (ns: string, name: string, spec: Manifest): Manifest => ({ apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name, namespace: ns }, spec })
const clusterPolicy = (name: string, tier: 'Admin' | 'Baseline', priority: number, subject: Manifest, rules: { ingress?: Manifest[]; egress?: Manifest[] }): Manifest => ({
  apiVersion: 'policy.networking.k8s.io/v1alpha2',
  kind: 'ClusterNetworkPolicy',
  metadata: { name },
  spec: { tier, priority, subject, ...rules },
})

function compile(manifests: readonly Manifest[]): PolicySnapshot {
  return new PolicyCompiler().load(loadPlain(manifests))
}

/**
 *   x/a  pod=a  10.7.1.1 fd07::1   web 80/TCP      workload, veth vwa
 *   x/b  pod=b  10.7.1.2           web 81/UDP      workload, veth vwb
 *   y/c  pod=c  10.7.1.3                           remote (not local)
 *   x/h  role=host 10.7.0.1                        host endpoint
 */
const SMALL: Manifest[] = [
  namespace('x', { ns: 'x' }),
  namespace('y', { ns: 'y' }),
  pod('x', 'a', { pod: 'a' }, ['10.7.1.1', 'fd07::1'], [{ name: 'web', containerPort: 80 }]),
  pod('x', 'b', { pod: 'b' }, ['10.7.1.2'], [{ name: 'web', containerPort: 81, protocol: 'UDP' }]),
  pod('y', 'c', { pod: 'c' }, ['10.7.1.3']),
  hostEndpoint('x', 'h', { role: 'host' }, ['10.7.0.1']),
  networkPolicy('x', 'a-policy', {
    podSelector: { matchLabels: { pod: 'a' } },
    policyTypes: ['Ingress', 'Egress'],
    ingress: [{ from: [{ podSelector: {} }, { ipBlock: { cidr: '10.0.0.0/8', except: ['10.7.1.0/24'] } }], ports: [{ port: 'web' }, { protocol: 'UDP', port: 81, endPort: 90 }] }],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: 'y' } } }, { podSelector: { matchLabels: { pod: 'b' } } }], ports: [{ protocol: 'UDP', port: 'web' }, { port: 80 }] }],
  }),
  clusterPolicy('guard', 'Admin', 10, { namespaces: {} }, {
    ingress: [
      { name: 'from-y-deny', action: 'Deny', from: [{ namespaces: { matchLabels: { ns: 'y' } } }], protocols: [{ tcp: { destinationPort: { number: 80 } } }] },
      { action: 'Pass', from: [{ namespaces: {} }] },
    ],
  }),
  clusterPolicy('floor', 'Baseline', 5, { namespaces: {} }, { ingress: [{ action: 'Deny', from: [{ pods: { namespaceSelector: {}, podSelector: { matchLabels: { pod: 'c' } } } }] }] }),
]

const SMALL_LOCAL: NftLocalEndpoint[] = [
  { key: 'x/a', kind: 'workload', hostInterface: 'vwa' },
  { key: 'x/b', kind: 'workload', hostInterface: 'vwb' },
  { key: 'x/h', kind: 'host' },
]
const SMALL_INPUT: NftRulesetInput = { localEndpoints: SMALL_LOCAL, protectedPorts: { overlayUdpPort: 51820, meshTcpPort: 4001 }, logPrefixTag: 'n1' }

/**
 * SSH and SNMP in from an admin network (written in two forms of one IPv6 CIDR, to show they are
 * one), a port open to all of IPv4 but not IPv6, DHCP replies from anywhere; HTTPS out to one
 * network, DNS out anywhere.
 */
const FAILSAFE_CIDRS: NftFailsafe = {
  inbound: [
    { protocol: 'tcp', port: 22, cidr: '10.7.1.0/24' },
    { protocol: 'tcp', port: 22, cidr: 'fd07::/112' },
    { protocol: 'udp', port: 161, cidr: '10.7.1.0/24' },
    { protocol: 'tcp', port: 2222, cidr: '0.0.0.0/0' },
    { protocol: 'udp', port: 68 },
    { protocol: 'tcp', port: 22, cidr: 'FD07:0::/112' },
  ],
  outbound: [
    { protocol: 'tcp', port: 443, cidr: '192.0.2.0/24' },
    { protocol: 'udp', port: 53 },
  ],
}

/** The lines of one block (`chain NAME {` ... `}`) of the ruleset text. */
function block(text: string, head: string): string[] {
  const lines = text.split('\n')
  const start = lines.findIndex((l) => l.trim() === `${head} {`)
  assert.notEqual(start, -1, `no block "${head}" in the ruleset`)
  const end = lines.findIndex((l, i) => i > start && l === '\t}')
  return lines.slice(start + 1, end).map((l) => l.trim())
}

describe('nft ruleset text', () => {
  const snapshot = compile(SMALL)
  const r = renderNftRuleset(snapshot, SMALL_INPUT)

  it('replaces the whole table in one file: create, delete, define', () => {
    const lines = r.text.split('\n').filter((l) => !l.startsWith('#'))
    assert.deepEqual(lines.slice(0, 3), ['table inet flatnet {}', 'delete table inet flatnet', 'table inet flatnet {'])
    assert.equal(r.text.match(/^table inet/gm)?.length, 2)
  })

  it('checks conntrack first, then egress of a local source, then ingress of a local destination', () => {
    const forward = block(r.text, 'chain forward')
    assert.equal(forward[0], 'type filter hook forward priority filter; policy accept;')
    assert.equal(forward[1], 'ct state established,related counter accept')
    assert.match(forward[2]!, /^ct state invalid counter log .* drop$/)
    assert.equal(forward[3], 'jump dispatch')
    assert.deepEqual(block(r.text, 'chain dispatch').slice(1), ['ip saddr vmap @egress-v4', 'ip6 saddr vmap @egress-v6', 'ip daddr vmap @ingress-v4', 'ip6 daddr vmap @ingress-v6'])
    // Only local endpoints are dispatched; y/c is remote.
    assert.deepEqual(block(r.text, 'map egress-v4').at(-1), 'elements = { 10.7.0.1 : jump ep3-egress, 10.7.1.1 : jump ep1-egress, 10.7.1.2 : jump ep2-egress }')
    assert.deepEqual(block(r.text, 'map ingress-v6').at(-1), 'elements = { fd07::1 : jump ep1-ingress }')
  })

  it('walks the Admin tier before NetworkPolicies: a Deny first, Pass jumps to the NetworkPolicy chain', () => {
    const ingress = block(r.text, 'chain ep1-ingress')
    assert.match(ingress[1]!, /^ip saddr @(\S+) meta l4proto \. th dport \{ tcp \. 80 \} counter log prefix "n1:\w+:\d+" group 17 snaplen 128 drop$/)
    assert.match(ingress[2]!, /^ip saddr @\S+ counter log .* goto ep1-ingress-np$/)
    assert.equal(ingress.at(-1), 'goto ep1-ingress-np', 'no Admin rule matched: on to the NetworkPolicy tier')
    const np = block(r.text, 'chain ep1-ingress-np')
    // The named port "web" of x/a itself is 80/TCP; UDP 81-90 stays a range; the isolation drop ends the chain.
    assert.match(np[1]!, /^ip saddr @\S+ meta l4proto \. th dport \{ tcp \. 80, udp \. 81-90 \} counter .* accept$/)
    assert.match(np.at(-1)!, /^counter log .* drop$/)
  })

  it('returns from egress chains on allow and accepts in ingress chains', () => {
    for (const line of block(r.text, 'chain ep1-egress').slice(1, -1)) assert.match(line, / return$/)
    assert.match(block(r.text, 'chain ep2-egress').at(-1)!, /^counter log .* return$/, 'default allow of an unisolated egress')
    assert.match(block(r.text, 'chain ep2-ingress-np').at(-1)!, /^counter log .* accept$/)
  })

  it('writes ipBlock minus except as intervals and named egress ports as address . protocol . port', () => {
    const sets = r.text.split('\n\tset ').slice(1).map((s) => s.split('\n\t}')[0]!)
    const ipBlock = sets.find((s) => s.includes('10.0.0.0-10.7.0.255'))
    assert.ok(ipBlock, 'the ipBlock set')
    // Pods of x (x/a, x/b, x/h) are inside the except but are matched by the podSelector peer of the same rule.
    assert.match(ipBlock, /elements = \{ 10\.0\.0\.0-10\.7\.0\.255, 10\.7\.1\.1-10\.7\.1\.2, 10\.7\.2\.0-10\.255\.255\.255 \}/)
    const dports = sets.find((s) => s.includes('inet_proto . inet_service'))
    assert.match(dports!, /elements = \{ 10\.7\.1\.2 \. udp \. 81 \}/)
    assert.ok(block(r.text, 'chain ep1-egress').some((l) => /ip daddr @\S+ ip daddr \. meta l4proto \. th dport @dports1-v4 counter .* return$/.test(l)))
  })

  it('puts failsafe and protected ports first in host endpoint chains', () => {
    const ingress = block(r.text, 'chain ep3-ingress')
    assert.match(ingress[1]!, /^meta l4proto \. th dport \{ tcp \. 22, udp \. 68 \} counter .* accept$/)
    assert.match(ingress[2]!, /^meta l4proto \. th dport \{ tcp \. 4001, udp \. 51820 \} counter .* accept$/)
    const egress = block(r.text, 'chain ep3-egress')
    assert.match(egress[1]!, /^meta l4proto \. th dport \{ tcp \. 53, udp \. 53, udp \. 67 \} counter .* return$/)
    assert.match(egress[3]!, /^meta l4proto \. th sport \{ udp \. 51820 \} counter .* return$/)
  })

  it('keeps the protected ports when the failsafe list is emptied', () => {
    const text = renderNftRuleset(snapshot, { ...SMALL_INPUT, failsafe: { inbound: [], outbound: [] } }).text
    const ingress = block(text, 'chain ep3-ingress')
    assert.match(ingress[1]!, /^meta l4proto \. th dport \{ tcp \. 4001, udp \. 51820 \} counter .* accept$/)
    assert.ok(!text.includes('tcp . 22'))
  })

  it('limits a failsafe entry with a CIDR to sources (inbound) or destinations (outbound) in it, with a set of its own family', () => {
    const text = renderNftRuleset(snapshot, { ...SMALL_INPUT, failsafe: FAILSAFE_CIDRS }).text
    const ingress = block(text, 'chain ep3-ingress')
    // Unlimited entries first, then one rule per CIDR (IPv4 before IPv6), then the protected ports.
    assert.match(ingress[1]!, /^meta l4proto \. th dport \{ udp \. 68 \} counter .* accept$/)
    const v4any = /^ip saddr @(\S+) meta l4proto \. th dport \{ tcp \. 2222 \} counter .* accept$/.exec(ingress[2]!)
    const v4admin = /^ip saddr @(\S+) meta l4proto \. th dport \{ tcp \. 22, udp \. 161 \} counter .* accept$/.exec(ingress[3]!)
    const v6admin = /^ip6 saddr @(\S+) meta l4proto \. th dport \{ tcp \. 22 \} counter .* accept$/.exec(ingress[4]!)
    assert.ok(v4any && v4admin && v6admin, ingress.join('\n'))
    assert.match(ingress[5]!, /^meta l4proto \. th dport \{ tcp \. 4001, udp \. 51820 \} counter .* accept$/)
    assert.deepEqual(block(text, `set ${v4any[1]}`).filter((l) => !l.startsWith('comment')), ['type ipv4_addr', 'flags interval', 'elements = { 0.0.0.0/0 }'])
    assert.deepEqual(block(text, `set ${v4admin[1]}`).filter((l) => !l.startsWith('comment')), ['type ipv4_addr', 'flags interval', 'elements = { 10.7.1.0/24 }'])
    assert.deepEqual(block(text, `set ${v6admin[1]}`).filter((l) => !l.startsWith('comment')), ['type ipv6_addr', 'flags interval', 'elements = { fd07::/112 }'])
    const egress = block(text, 'chain ep3-egress')
    assert.match(egress[1]!, /^meta l4proto \. th dport \{ udp \. 53 \} counter .* return$/)
    const out = /^ip daddr @(\S+) meta l4proto \. th dport \{ tcp \. 443 \} counter .* return$/.exec(egress[2]!)
    assert.ok(out, egress.join('\n'))
    assert.ok(block(text, `set ${out[1]}`).includes('elements = { 192.0.2.0/24 }'))
    // No rule opens a CIDR-limited port to everyone, and workloads get no failsafe rules at all.
    assert.ok(!/^\t\tmeta l4proto \. th dport \{[^}]*tcp \. (22|2222|443)\b/m.test(text), 'the limited ports appear only behind an address match')
    assert.ok(!block(text, 'chain ep1-ingress').some((l) => l.includes('2222')))
    const r = renderNftRuleset(snapshot, { ...SMALL_INPUT, failsafe: FAILSAFE_CIDRS })
    const described = Object.values(r.rules).filter((x) => x.tier === 'Failsafe' && x.endpoint === 'x/h').map((x) => x.description)
    assert.ok(described.includes('failsafe inbound port of host endpoint x/h from 10.7.1.0/24'), described.join('; '))
    assert.ok(described.includes('failsafe outbound port of host endpoint x/h to 192.0.2.0/24'), described.join('; '))
  })

  it('drops packets from a workload veth whose source is not the workload address, before conntrack', () => {
    const pre = block(r.text, 'chain prerouting')
    assert.equal(pre[0], 'type filter hook prerouting priority raw; policy accept;')
    assert.match(pre[2]!, /^iifname "vwa" ip saddr != \{ 10\.7\.1\.1 \} counter .* drop$/)
    assert.match(pre[3]!, /^iifname "vwa" ip6 saddr != \{ ::, fd07::1, fe80::\/10 \} counter .* drop$/)
    assert.match(pre[5]!, /^iifname "vwb" ip6 saddr != \{ ::, fe80::\/10 \} counter .* drop$/, 'an IPv4-only workload still may not send from global IPv6 addresses')
  })

  it('names tier, policy, rule, direction and endpoint for every rule id in a log prefix', () => {
    const ids = [...r.text.matchAll(/log prefix "([^"]+)"/g)].map((m) => m[1]!)
    assert.ok(ids.length > 20)
    for (const prefix of ids) {
      assert.ok(prefix.length <= 127)
      const parsed = parseNftLogPrefix(prefix)
      assert.ok(parsed, prefix)
      assert.equal(parsed.tag, 'n1')
      assert.equal(parsed.rev, r.rev)
      assert.ok(r.rules[parsed.id], `rule ${parsed.id} is described`)
    }
    const deny = Object.values(r.rules).find((x) => x.policy === 'guard' && x.endpoint === 'x/a' && x.direction === 'ingress' && x.rule === 0)
    assert.deepEqual(
      { tier: deny?.tier, action: deny?.action, ruleName: deny?.ruleName, clusterAction: deny?.clusterAction },
      { tier: 'Admin', action: 'deny', ruleName: 'from-y-deny', clusterAction: 'Deny' },
    )
    const iso = Object.values(r.rules).find((x) => x.endpoint === 'x/a' && x.direction === 'egress' && x.action === 'deny')
    assert.deepEqual({ tier: iso?.tier, policy: iso?.policy, rule: iso?.rule, isolatedBy: iso?.isolatedBy }, { tier: 'NetworkPolicy', policy: 'x/a-policy', rule: undefined, isolatedBy: ['x/a-policy'] })
    assert.equal(parseNftLogPrefix(nftLogPrefix('a.b-c_d', '0abc123', '4711'))?.id, '4711')
    assert.equal(parseNftLogPrefix('IN=eth0 OUT='), undefined)
  })

  it('reports local endpoints the snapshot does not hold and enforces nothing for them', () => {
    const out = renderNftRuleset(snapshot, { localEndpoints: [...SMALL_LOCAL, { key: 'x/new', kind: 'workload', hostInterface: 'vwn' }] })
    assert.deepEqual(out.skipped, ['x/new'])
    assert.ok(!out.text.includes('vwn'))
  })

  it('refuses input that cannot be written safely, naming the field', () => {
    const bad: [NftRulesetInput, RegExp][] = [
      [{ localEndpoints: [{ key: 'x/a', kind: 'workload', hostInterface: 'eth0"; flush ruleset' }] }, /localEndpoints\[0\]\.hostInterface/],
      [{ localEndpoints: [{ key: 'a', kind: 'workload' }] }, /localEndpoints\[0\]\.key must be "namespace\/name"/],
      [{ localEndpoints: [{ key: 'x/a', kind: 'host' }, { key: 'x/a', kind: 'host' }] }, /localEndpoints\[1\]\.key "x\/a" is listed twice/],
      [{ localEndpoints: [], table: 'flat net' }, /table "flat net"/],
      [{ localEndpoints: [], logPrefixTag: 'a:b' }, /logPrefixTag/],
      [{ localEndpoints: [], failsafe: { inbound: [{ protocol: 'tcp', port: 0 }] } }, /failsafe\.inbound\[0\]\.port/],
      [{ localEndpoints: [], protectedPorts: { meshTcpPort: 70000 } }, /protectedPorts\.meshTcpPort/],
      [{ localEndpoints: [], failsafe: { inbound: [{ protocol: 'tcp', port: 22, cidr: '10.0.0.0/33' }] } }, /failsafe\.inbound\[0\]\.cidr must be an IPv4 or IPv6 CIDR/],
      [{ localEndpoints: [], failsafe: { inbound: [{ protocol: 'tcp', port: 22, cidr: '' }] } }, /failsafe\.inbound\[0\]\.cidr must be an IPv4 or IPv6 CIDR/],
      [{ localEndpoints: [], failsafe: { inbound: [{ protocol: 'tcp', port: 22, cidr: '10.0.0.1' }] } }, /failsafe\.inbound\[0\]\.cidr/],
      [{ localEndpoints: [], failsafe: { outbound: [{ protocol: 'udp', port: 53 }, { protocol: 'tcp', port: 53, cidr: '10.0.0.1/8' }] } }, /failsafe\.outbound\[1\]\.cidr "10\.0\.0\.1\/8" has host bits set: did you mean 10\.0\.0\.0\/8\?/],
      [{ localEndpoints: [], failsafe: { outbound: [{ protocol: 'tcp', port: 53, cidr: 'fd00::1/64' }] } }, /failsafe\.outbound\[0\]\.cidr .* did you mean fd00::\/64\?/],
    ]
    for (const [input, message] of bad) {
      assert.throws(
        () => renderNftRuleset(snapshot, input),
        (err: unknown) => err instanceof InvalidArgumentError && message.test(err.message),
      )
    }
  })
})

describe('nft ruleset determinism', () => {
  it('gives the same text for the same state, whatever the order of updates and of local endpoints', () => {
    const reference = renderNftRuleset(compile(SMALL), SMALL_INPUT).text
    assert.equal(renderNftRuleset(compile([...SMALL].reverse()), { ...SMALL_INPUT, localEndpoints: [...SMALL_LOCAL].reverse() }).text, reference)

    // Built incrementally, with a detour: a policy added, changed and removed again, an endpoint relabelled and back.
    const objects = loadPlain(SMALL)
    const compiler = new PolicyCompiler()
    compiler.load({ endpoints: objects.endpoints.slice().reverse(), namespaces: objects.namespaces })
    const detour = loadPlain([networkPolicy('x', 'temp', { podSelector: {}, policyTypes: ['Egress'] }), pod('x', 'b', { pod: 'zzz' }, ['10.7.1.2'])])
    compiler.load({ policies: detour.policies, endpoints: detour.endpoints })
    for (const p of objects.policies.slice().reverse()) compiler.upsert(p)
    compiler.delete({ kind: 'NetworkPolicy', namespace: 'x', name: 'temp' })
    compiler.upsert(objects.endpoints.find((e) => e.name === 'b')!)
    assert.equal(renderNftRuleset(compiler.commit(), SMALL_INPUT).text, reference)
  })

  it('changes the rev, and so every log prefix, when the rules change', () => {
    const a = renderNftRuleset(compile(SMALL), SMALL_INPUT)
    const b = renderNftRuleset(compile([...SMALL, networkPolicy('x', 'more', { podSelector: {}, ingress: [{}] })]), SMALL_INPUT)
    assert.notEqual(a.rev, b.rev)
    assert.ok(!b.text.includes(`:${a.rev}:`))
  })
})

// ---------------------------------------------------------------------------------------------
// An interpreter of the plan with nft's semantics, for the differential test.

interface Packet {
  readonly family: 4 | 6
  readonly src: bigint
  readonly dst: bigint
  readonly protocol: Protocol
  readonly sport: number
  readonly dport: number
}

type Outcome = { verdict: 'accept' | 'drop'; decided: Partial<Record<'egress' | 'ingress', string>> }

function inRanges(ranges: readonly { lo: bigint; hi: bigint }[], v: bigint): boolean {
  return ranges.some((r) => v >= r.lo && v <= r.hi)
}

function matches(plan: NftPlan, m: PlanMatch, p: Packet): boolean {
  if (m.family !== undefined && m.family !== p.family) return false
  if (m.inInterface !== undefined) return false // anti-spoofing is not part of these flows
  if (m.peer) {
    const set = plan.addressSets.find((s) => s.name === m.peer!.set)!
    if (set.family !== p.family || !inRanges(set.ranges, m.peer.field === 'saddr' ? p.src : p.dst)) return false
  }
  if (m.ports && !m.ports.some((r) => r.protocol === p.protocol && p.dport >= r.from && p.dport <= r.to)) return false
  if (m.sourcePorts && !m.sourcePorts.some((r) => r.protocol === p.protocol && p.sport >= r.from && p.sport <= r.to)) return false
  if (m.destinationPorts) {
    const set = plan.destinationPortSets.find((s) => s.name === m.destinationPorts)!
    if (set.family !== p.family || !set.elements.some((e) => e.address === p.dst && e.protocol === p.protocol && e.port === p.dport)) return false
  }
  return true
}

/** Runs one chain: 'accept' and 'drop' end the hook, 'return' goes back to the caller. */
function runChain(plan: NftPlan, name: string, p: Packet, trail: string[]): 'accept' | 'drop' | 'return' {
  const chain = plan.chains.find((c) => c.name === name)
  assert.ok(chain, `chain ${name} exists`)
  for (const rule of chain.rules) {
    if (!matches(plan, rule.match, p)) continue
    if (rule.id !== undefined) trail.push(rule.id)
    if (rule.verdict.kind === 'goto') return runChain(plan, rule.verdict.chain, p, trail)
    return rule.verdict.kind
  }
  return 'return'
}

/** The forward hook for a new connection: dispatch by source (egress), then by destination (ingress). */
function runPlan(plan: NftPlan, p: Packet): Outcome {
  const decided: Outcome['decided'] = {}
  for (const direction of ['egress', 'ingress'] as const) {
    const address = direction === 'egress' ? p.src : p.dst
    const entry = plan.dispatch[direction][p.family].find((e) => e.address === address)
    if (!entry) continue
    const trail: string[] = []
    const result = runChain(plan, entry.chain, p, trail)
    // The deciding rule is the last one with an id (a Pass rule is followed by the rule that decides).
    decided[direction] = trail.at(-1)
    if (result !== 'return') return { verdict: result, decided }
  }
  return { verdict: 'accept', decided }
}

// ---------------------------------------------------------------------------------------------
// Random worlds.

class Rng {
  private readonly next: () => number
  constructor(seed: number) {
    this.next = seededRandom(seed)
  }
  int(n: number): number {
    return Math.floor(this.next() * n)
  }
  chance(p: number): boolean {
    return this.next() < p
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!
  }
}

const NAMESPACES = ['n1', 'n2', 'n3']
const PORT_NAMES = ['http', 'dns']
const PORTS = [53, 80, 81, 443, 8080]
const PROTOCOLS: readonly Protocol[] = ['TCP', 'UDP', 'SCTP']
const FLOW_PORTS = [53, 80, 81, 82, 443, 8080, 9999]

function genSelector(rng: Rng, vocab: Record<string, readonly string[]>): Manifest {
  const r = rng.int(4)
  const key = rng.pick(Object.keys(vocab))
  if (r === 0) return {}
  if (r === 1) return { matchLabels: { [key]: rng.pick(vocab[key]!) } }
  if (r === 2) return { matchExpressions: [{ key, operator: rng.pick(['In', 'NotIn']), values: [rng.pick(vocab[key]!)] }] }
  return { matchExpressions: [{ key, operator: rng.pick(['Exists', 'DoesNotExist']) }] }
}

const NS_VOCAB = { env: ['a', 'b'], 'kubernetes.io/metadata.name': NAMESPACES }
const EP_VOCAB = { app: ['web', 'db', 'api'], tier: ['f', 'b'] }

function genCidr(rng: Rng, anchors: readonly IpAddress[]): { cidr: string; except?: string[] } {
  const anchor = rng.pick(anchors)
  const family = anchor.family
  const bits = family === 4 ? 32 : 128
  const prefix = rng.pick(family === 4 ? [0, 8, 16, 24, 30, 32] : [0, 64, 120, 126, 128])
  const network = (ip: IpAddress, p: number): bigint => (addressValue(ip) >> BigInt(bits - p)) << BigInt(bits - p)
  const text = (ip: IpAddress, p: number): string => `${formatIp(addressFromValue(family, network(ip, p)))}/${p}`
  const cidr = text(anchor, prefix)
  if (prefix === bits || rng.chance(0.4)) return { cidr }
  // An except must lie inside the CIDR: take a longer prefix of an address inside it.
  const inside = anchors.filter((a) => a.family === family && network(a, prefix) === network(anchor, prefix))
  return { cidr, except: [text(rng.pick(inside), prefix + 1 + rng.int(bits - prefix))] }
}

function genWorld(seed: number): { manifests: Manifest[]; local: NftLocalEndpoint[]; outside: IpAddress[] } {
  const rng = new Rng(seed)
  const manifests: Manifest[] = NAMESPACES.map((n) => namespace(n, rng.chance(0.7) ? { env: rng.pick(['a', 'b']) } : {}))
  const addresses: IpAddress[] = []
  const local: NftLocalEndpoint[] = []
  const endpointCount = 5 + rng.int(5)
  for (let i = 0; i < endpointCount; i++) {
    const ns = rng.pick(NAMESPACES)
    const labels: Labels = {}
    if (rng.chance(0.8)) labels.app = rng.pick(EP_VOCAB.app)
    if (rng.chance(0.5)) labels.tier = rng.pick(EP_VOCAB.tier)
    const ips: string[] = []
    if (rng.chance(0.85)) ips.push(`10.${rng.pick([1, 2])}.0.${i + 1}`)
    if (ips.length === 0 || rng.chance(0.35)) ips.push(`fd00::${(i + 1).toString(16)}`)
    addresses.push(...ips.map((t) => parseIp(t)!))
    const named = PORT_NAMES.filter(() => rng.chance(0.5)).map((name) => ({ name, port: rng.pick(PORTS), protocol: rng.pick(['TCP', 'UDP'] as const) }))
    const isHost = rng.chance(0.25)
    const name = `e${i}`
    manifests.push(
      isHost ? hostEndpoint(ns, name, labels, ips, named) : pod(ns, name, labels, ips, named.map((p) => ({ name: p.name, containerPort: p.port, protocol: p.protocol }))),
    )
    if (rng.chance(0.6)) local.push({ key: `${ns}/${name}`, kind: isHost ? 'host' : 'workload' })
  }
  const outside = [parseIp('10.1.0.200')!, parseIp('192.168.9.9')!, parseIp('fd00::ff')!]
  const anchors = [...addresses, ...outside]
  const npPort = (): Manifest => {
    const r = rng.int(5)
    const protocol = rng.chance(0.5) ? { protocol: rng.pick(PROTOCOLS) } : {}
    if (r === 0) return { ...protocol, port: rng.pick(PORTS) }
    if (r === 1) {
      const port = rng.pick(PORTS)
      return { ...protocol, port, endPort: port + rng.int(300) }
    }
    if (r === 2) return { ...protocol, port: rng.pick(PORT_NAMES) }
    if (r === 3) return { protocol: rng.pick(PROTOCOLS) }
    return {}
  }
  const npPeer = (): Manifest => {
    const r = rng.int(4)
    if (r === 0) return { podSelector: genSelector(rng, EP_VOCAB) }
    if (r === 1) return { namespaceSelector: genSelector(rng, NS_VOCAB) }
    if (r === 2) return { podSelector: genSelector(rng, EP_VOCAB), namespaceSelector: genSelector(rng, NS_VOCAB) }
    return { ipBlock: genCidr(rng, anchors) }
  }
  const list = <T>(gen: () => T): T[] | undefined => (rng.chance(0.2) ? undefined : Array.from({ length: rng.int(3) }, gen))
  for (let i = 0; i < 1 + rng.int(4); i++) {
    const ns = rng.pick(NAMESPACES)
    const rule = (field: 'from' | 'to'): Manifest => {
      const peers = list(npPeer)
      const ports = list(npPort)
      return { ...(peers ? { [field]: peers } : {}), ...(ports ? { ports } : {}) }
    }
    const spec: Manifest = { podSelector: genSelector(rng, EP_VOCAB) }
    const ingress = list(() => rule('from'))
    const egress = list(() => rule('to'))
    if (ingress) spec.ingress = ingress
    if (egress && egress.length > 0) spec.egress = egress
    if (rng.chance(0.6)) spec.policyTypes = rng.pick([['Ingress'], ['Egress'], ['Ingress', 'Egress']])
    manifests.push(networkPolicy(ns, `np${i}`, spec))
  }
  const selection = (): Manifest =>
    rng.chance(0.5) ? { namespaces: genSelector(rng, NS_VOCAB) } : { pods: { namespaceSelector: genSelector(rng, NS_VOCAB), podSelector: genSelector(rng, EP_VOCAB) } }
  for (let i = 0; i < rng.int(4); i++) {
    const tier = rng.pick(['Admin', 'Baseline'] as const)
    const rules = (direction: 'ingress' | 'egress'): Manifest[] =>
      Array.from({ length: rng.int(3) }, (_, j) => {
        const action = rng.pick(tier === 'Admin' ? ['Accept', 'Deny', 'Pass'] : ['Accept', 'Deny'])
        const networks = direction === 'egress' && rng.chance(0.3)
        const peers = networks ? [{ networks: [genCidr(rng, anchors).cidr] }] : [selection()]
        const rule: Manifest = { action, [direction === 'ingress' ? 'from' : 'to']: peers }
        if (rng.chance(0.3)) rule.name = `r${j}`
        if (rng.chance(0.5)) {
          rule.protocols = Array.from({ length: 1 + rng.int(2) }, () => {
            if (!networks && rng.chance(0.3)) return { destinationNamedPort: rng.pick(PORT_NAMES) }
            const start = rng.pick(PORTS)
            const destinationPort = rng.chance(0.5) ? { number: start } : { range: { start, end: start + rng.int(100) } }
            return { [rng.pick(['tcp', 'udp', 'sctp'])]: { destinationPort } }
          })
        }
        return rule
      })
    manifests.push(clusterPolicy(`cnp${i}`, tier, rng.int(3), selection(), { ingress: rules('ingress'), egress: rules('egress') }))
  }
  return { manifests, local, outside }
}

function sameAttribution(info: { tier: string; policy?: string | undefined; rule?: number | undefined } | undefined, v: DirectionVerdict): boolean {
  if (v.tier === 'Default') return info?.tier === 'Default'
  return info !== undefined && info.tier === v.tier && info.policy === v.policy && info.rule === v.rule
}

describe('nft plan, differential against PolicySnapshot.evaluate', () => {
  const SCENARIOS = Number(process.env.NFT_DIFF_SCENARIOS ?? 120)
  const BASE = Number(process.env.NFT_DIFF_SEED ?? 7100)

  it(`enforces evaluate's verdict, attributed to evaluate's rule, for every flow with a local side (${SCENARIOS} random worlds)`, () => {
    let flows = 0
    let denied = 0
    for (let s = 0; s < SCENARIOS; s++) {
      const seed = BASE + s
      const world = genWorld(seed)
      const snapshot = compile(world.manifests)
      const input: NftRulesetInput = { localEndpoints: world.local, failsafe: { inbound: [], outbound: [] } }
      const plan = planNftRuleset(snapshot, input)
      const judge = enforcedVerdicts(snapshot, input)
      const localIps = new Set<string>()
      for (const l of world.local) for (const ip of snapshot.endpoint(l.key)!.ips) localIps.add(formatIp(ip))
      const all = [...snapshot.endpoints.values()].flatMap((r) => r.ips).concat(world.outside)
      for (const src of all) {
        for (const dst of all) {
          if (src === dst || src.family !== dst.family) continue
          const srcLocal = localIps.has(formatIp(src))
          const dstLocal = localIps.has(formatIp(dst))
          if (!srcLocal && !dstLocal) continue
          // Traffic between two host endpoints of this node stays on loopback, which the table lets through.
          const srcHost = world.local.some((l) => l.kind === 'host' && snapshot.endpoint(l.key)!.ips.some((ip) => formatIp(ip) === formatIp(src)))
          const dstHost = world.local.some((l) => l.kind === 'host' && snapshot.endpoint(l.key)!.ips.some((ip) => formatIp(ip) === formatIp(dst)))
          if (srcHost && dstHost) continue
          for (const protocol of PROTOCOLS) {
            for (const port of FLOW_PORTS) {
              const v = snapshot.evaluate(snapshot.resolve(formatIp(src)), snapshot.resolve(formatIp(dst)), port, protocol)
              const want = (!srcLocal || v.egress.allowed) && (!dstLocal || v.ingress.allowed)
              const got = runPlan(plan, { family: src.family, src: addressValue(src), dst: addressValue(dst), protocol, sport: 40000, dport: port })
              const where = `seed ${seed}: ${formatIp(src)} -> ${formatIp(dst)}:${port}/${protocol}`
              assert.equal(got.verdict === 'accept', want, `${where}: plan says ${got.verdict}, evaluate says ${want ? 'allow' : 'deny'} (${v.decidedBy.reason})`)
              if (srcLocal) assert.ok(sameAttribution(plan.rules[got.decided.egress!], v.egress), `${where}: egress decided by rule ${got.decided.egress}, evaluate: ${v.egress.reason}`)
              if (dstLocal && (!srcLocal || v.egress.allowed)) {
                assert.ok(sameAttribution(plan.rules[got.decided.ingress!], v.ingress), `${where}: ingress decided by rule ${got.decided.ingress}, evaluate: ${v.ingress.reason}`)
              }
              assert.equal(judge({ src, dst, protocol, srcPort: 40000, dstPort: port }).allowed, want, `${where}: enforcedVerdicts`)
              flows++
              if (!want) denied++
            }
          }
        }
      }
    }
    // The worlds must exercise both outcomes broadly, or the comparison proves little.
    assert.ok(flows > 20_000, `only ${flows} flows`)
    assert.ok(denied > flows / 10 && denied < flows * 0.9, `${denied} of ${flows} denied`)
  })
})

/**
 * Runs every flow between the snapshot's addresses and `outside` (with a local side, one family,
 * not host to host: that is loopback) through the plan's rules and through `enforcedVerdicts`,
 * and asserts they agree; where the judge names a failsafe exemption, a Failsafe rule decided.
 */
function agreeOnEveryFlow(snapshot: PolicySnapshot, input: NftRulesetInput, outside: readonly IpAddress[], label: string): { allowed: number; denied: number; failsafe: number } {
  const plan = planNftRuleset(snapshot, input)
  const judge = enforcedVerdicts(snapshot, input)
  const kindOf = new Map<string, 'host' | 'workload'>()
  for (const l of input.localEndpoints) for (const a of snapshot.endpoint(l.key)?.ips ?? []) kindOf.set(formatIp(a), l.kind)
  const all = [...snapshot.endpoints.values()].flatMap((r) => r.ips).concat(outside)
  const counts = { allowed: 0, denied: 0, failsafe: 0 }
  for (const src of all) {
    for (const dst of all) {
      if (src.family !== dst.family || formatIp(src) === formatIp(dst)) continue
      const srcKind = kindOf.get(formatIp(src))
      const dstKind = kindOf.get(formatIp(dst))
      if ((!srcKind && !dstKind) || (srcKind === 'host' && dstKind === 'host')) continue
      for (const protocol of ['TCP', 'UDP'] as const) {
        for (const port of [...FLOW_PORTS, 22, 68, 161, 2222]) {
          const where = `${label}: ${formatIp(src)} -> ${formatIp(dst)}:${port}/${protocol}`
          const got = runPlan(plan, { family: src.family, src: addressValue(src), dst: addressValue(dst), protocol, sport: 40000, dport: port })
          const v = judge({ src, dst, protocol, srcPort: 40000, dstPort: port })
          assert.equal(v.allowed, got.verdict === 'accept', `${where}: enforcedVerdicts says ${v.allowed ? 'allow' : 'deny'}, the rules ${got.verdict}`)
          if (v.allowed && (v.exempt === 'failsafe-outbound' || v.exempt === 'failsafe-inbound')) {
            const decided = got.decided[v.exempt === 'failsafe-outbound' ? 'egress' : 'ingress']
            assert.equal(plan.rules[decided!]?.tier, 'Failsafe', `${where}: decided by rule ${decided}`)
            counts.failsafe++
          }
          counts[v.allowed ? 'allowed' : 'denied']++
        }
      }
    }
  }
  return counts
}

/** SMALL with the host endpoint x/h on IPv4 and IPv6 and isolated both ways, and two remote IPv6 pods. */
const FAILSAFE_WORLD: Manifest[] = [
  ...SMALL.filter((m) => (m.metadata as { name: string }).name !== 'h'),
  hostEndpoint('x', 'h', { role: 'host' }, ['10.7.0.1', 'fd07::100']),
  pod('y', 'c6', { pod: 'c6' }, ['fd07::3']),
  pod('y', 'd6', { pod: 'd6' }, ['fd08::3']),
  networkPolicy('x', 'host-lockdown', { podSelector: { matchLabels: { role: 'host' } }, policyTypes: ['Ingress', 'Egress'] }),
]

describe('enforcedVerdicts', () => {
  const snapshot = compile([
    ...SMALL,
    networkPolicy('x', 'host-lockdown', { podSelector: { matchLabels: { role: 'host' } }, policyTypes: ['Ingress', 'Egress'] }),
  ])
  const judge = enforcedVerdicts(snapshot, SMALL_INPUT)
  const ip = (t: string): IpAddress => parseIp(t)!
  const flow = (src: string, dst: string, dstPort: number, protocol: Protocol = 'TCP', srcPort = 40000) => judge({ src: ip(src), dst: ip(dst), protocol, srcPort, dstPort })

  it('lets failsafe and protected ports through a host endpoint that policy isolates', () => {
    assert.equal(flow('10.7.1.3', '10.7.0.1', 80).allowed, false)
    assert.deepEqual([flow('10.7.1.3', '10.7.0.1', 22).allowed, flow('10.7.1.3', '10.7.0.1', 22).exempt], [true, 'failsafe-inbound'])
    assert.equal(flow('10.7.1.3', '10.7.0.1', 4001).allowed, true)
    assert.equal(flow('10.7.1.3', '10.7.0.1', 51820, 'UDP').allowed, true)
    assert.equal(flow('10.7.0.1', '192.0.2.1', 53, 'UDP').allowed, true)
    assert.equal(flow('10.7.0.1', '192.0.2.1', 9999, 'UDP', 51820).allowed, true, 'WireGuard from its own port')
    assert.equal(flow('10.7.0.1', '192.0.2.1', 9999, 'UDP').allowed, false)
  })

  it('lets a failsafe entry with a CIDR through only for sources (inbound) or destinations (outbound) in it, of its own family', () => {
    const fs = compile(FAILSAFE_WORLD)
    const j = enforcedVerdicts(fs, { ...SMALL_INPUT, failsafe: FAILSAFE_CIDRS })
    const judged = (src: string, dst: string, dstPort: number, protocol: Protocol = 'TCP'): string => {
      const v = j({ src: ip(src), dst: ip(dst), protocol, srcPort: 40000, dstPort })
      return v.allowed ? `allowed ${v.exempt}` : 'denied'
    }
    assert.equal(judged('10.7.1.3', '10.7.0.1', 22), 'allowed failsafe-inbound', 'y/c is in 10.7.1.0/24')
    assert.equal(judged('10.7.2.9', '10.7.0.1', 22), 'denied', 'outside 10.7.1.0/24')
    assert.equal(judged('10.7.1.3', '10.7.0.1', 22, 'UDP'), 'denied', 'the entry is TCP')
    assert.equal(judged('10.7.1.3', '10.7.0.1', 161, 'UDP'), 'allowed failsafe-inbound')
    assert.equal(judged('fd07::3', 'fd07::100', 22), 'allowed failsafe-inbound', 'in fd07::/112')
    assert.equal(judged('fd08::3', 'fd07::100', 22), 'denied', 'outside fd07::/112')
    assert.equal(judged('fd07::3', 'fd07::100', 161, 'UDP'), 'denied', 'SNMP is open to the IPv4 admin network only')
    assert.equal(judged('::ffff:10.7.1.3', 'fd07::100', 22), 'denied', 'an IPv4-mapped IPv6 source is IPv6, not in the IPv4 CIDR')
    assert.equal(judged('192.0.2.7', '10.7.0.1', 2222), 'allowed failsafe-inbound', '0.0.0.0/0 is all of IPv4 ...')
    assert.equal(judged('fd08::3', 'fd07::100', 2222), 'denied', '... and none of IPv6')
    assert.equal(judged('fd08::3', 'fd07::100', 68, 'UDP'), 'allowed failsafe-inbound', 'an entry without a CIDR takes both families')
    assert.equal(judged('10.7.0.1', '192.0.2.80', 443), 'allowed failsafe-outbound', 'outbound, the destination is matched')
    assert.equal(judged('10.7.0.1', '198.51.100.80', 443), 'denied')
    assert.equal(judged('10.7.1.3', '10.7.0.1', 443), 'denied', 'an outbound entry does not open the port inbound')
  })

  it('agrees with the rules of the table on every flow when failsafe entries have CIDRs', () => {
    const fs = compile(FAILSAFE_WORLD)
    const input: NftRulesetInput = { ...SMALL_INPUT, failsafe: FAILSAFE_CIDRS }
    const checked = agreeOnEveryFlow(fs, input, ['10.7.2.9', '192.0.2.80', '198.51.100.80', 'fd08::ff', '::ffff:10.7.1.3'].map(ip), 'fixed world')
    assert.ok(checked.allowed > 50 && checked.denied > 50, JSON.stringify(checked))
  })

  it('agrees with the rules of the table for random failsafe entries with CIDRs (random worlds)', () => {
    let allowedByFailsafe = 0
    for (let s = 0; s < 30; s++) {
      const seed = 9100 + s
      const world = genWorld(seed)
      const rng = new Rng(seed * 31)
      const snap = compile(world.manifests)
      const anchors = [...[...snap.endpoints.values()].flatMap((r) => r.ips), ...world.outside]
      const entries = (): NftPortSpec[] =>
        Array.from({ length: rng.int(5) }, () => ({
          protocol: rng.pick(['tcp', 'udp'] as const),
          port: rng.pick(FLOW_PORTS),
          ...(rng.chance(0.75) ? { cidr: genCidr(rng, anchors).cidr } : {}),
        }))
      const input: NftRulesetInput = { localEndpoints: world.local, failsafe: { inbound: entries(), outbound: entries() } }
      allowedByFailsafe += agreeOnEveryFlow(snap, input, world.outside, `seed ${seed}`).failsafe
    }
    assert.ok(allowedByFailsafe > 100, `only ${allowedByFailsafe} flows were let through by a failsafe rule`)
  })

  it('judges only the directions enforced on this node', () => {
    assert.deepEqual(flow('192.0.2.1', '192.0.2.2', 80), { allowed: true, exempt: 'not-local' })
    const v = flow('10.7.1.3', '10.7.1.2', 80, 'TCP')
    assert.equal(v.egress, undefined, 'y/c is remote: its egress is enforced on its own node')
    assert.equal(v.ingress?.tier, 'Admin')
  })
})
