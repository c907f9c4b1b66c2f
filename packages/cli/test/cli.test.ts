/** The offline `flatnet policy` commands, driven in-process through run(). */
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { repoRoot, runCli } from './helpers.js'

const root = repoRoot()
const ex = (p: string): string => join(root, 'examples', p)
const tmp = mkdtempSync(join(tmpdir(), 'fn-cli-'))
after(() => rmSync(tmp, { recursive: true, force: true }))

function flatnet(...args: string[]): ReturnType<typeof runCli> {
  return runCli([...args])
}

const offline = ['-f', ex('policies'), '-i', ex('inventory')]

describe('flatnet policy validate', () => {
  it('accepts the examples and counts what it read', async () => {
    const r = await flatnet('policy', 'validate', '-f', ex('policies'), '-f', ex('inventory'))
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /valid: 3 ClusterNetworkPolicies, 4 NetworkPolicies, 3 Namespaces, 2 Pods, 2 HostEndpoints/)
  })

  it('reports file, line, column and field of every problem and exits 1', async () => {
    const file = join(tmp, 'bad.yaml')
    writeFileSync(
      file,
      ['apiVersion: networking.k8s.io/v1', 'kind: NetworkPolicy', 'metadata: {name: p, namespace: x}', 'spec:', '  podSelectr: {}', '  ingress:', '  - ports:', '    - {port: 80, endPort: 70}'].join('\n'),
    )
    const r = await flatnet('policy', 'validate', '-f', file)
    assert.equal(r.code, 1)
    assert.match(r.stderr, new RegExp(`${file}:5:3: spec.podSelectr: unknown field "podSelectr"; did you mean "podSelector"\\?`))
    assert.match(r.stderr, new RegExp(`${file}:8:27: spec.ingress\\[0\\].ports\\[0\\].endPort: must be greater than or equal to port \\(80\\), got 70`))
    assert.match(r.stderr, /2 problems found; nothing was loaded/)
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace')
  })

  it('names a missing input and exits 2', async () => {
    const r = await flatnet('policy', 'validate', '-f', join(tmp, 'nope.yaml'))
    assert.equal(r.code, 2)
    assert.match(r.stderr, /nope.yaml: cannot read: no such file or directory/)
  })
})

describe('flatnet policy explain', () => {
  it('says denied and names the isolating policy on the ingress side', async () => {
    const r = await flatnet('policy', 'explain', ...offline, '--from', 'shop/frontend', '--to', 'data/postgres', '--port', '5432/TCP')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^DENIED {2}shop\/frontend -> data\/postgres {2}5432\/TCP/)
    assert.match(r.stdout, /ingress to data\/postgres\s+deny\s+NetworkPolicy data\/postgres-clients/)
    assert.match(r.stdout, /egress of shop\/frontend\s+allow\s+default/)
  })

  it('attributes an Admin-tier accept to the cluster policy and rule', async () => {
    const r = await flatnet('policy', 'explain', ...offline, '--from', 'ops/bastion', '--to', 'data/postgres', '--port', '22', '-o', 'json')
    assert.equal(r.code, 0, r.stderr)
    const result = JSON.parse(r.stdout) as Record<string, unknown>
    assert.equal(result.allowed, true)
    assert.equal(result.tier, 'Admin')
    assert.equal(result.policy, 'ops-ssh')
    assert.equal(result.rule, 0)
    assert.equal(result.direction, 'ingress')
  })

  it('refuses an unknown endpoint and a bad port with exit 2', async () => {
    const a = await flatnet('policy', 'explain', ...offline, '--from', 'shop/nope', '--to', 'shop/api', '--port', '80')
    assert.equal(a.code, 2)
    assert.match(a.stderr, /unknown endpoint "shop\/nope"/)
    const b = await flatnet('policy', 'explain', ...offline, '--from', 'shop/frontend', '--to', 'shop/api', '--port', '80/ICMP')
    assert.equal(b.code, 2)
    assert.match(b.stderr, /--port: protocol must be TCP, UDP or SCTP/)
  })
})

describe('flatnet policy eval', () => {
  it('prints one JSON line per flow in the documented shape, passing unknown fields through', async () => {
    const flows = join(tmp, 'flows.jsonl')
    writeFileSync(
      flows,
      [
        '{"from":"shop/frontend","to":"shop/api","port":8080,"protocol":"TCP","id":7}',
        '# comments and blank lines are skipped',
        '',
        '{"from":"shop/frontend","to":"data/postgres","port":5432,"protocol":"TCP"}',
        '{"from":"198.51.100.1","to":"shop/frontend","port":8443}',
      ].join('\n'),
    )
    const r = await flatnet('policy', 'eval', ...offline, '--flows', flows, '--output', 'json')
    assert.equal(r.code, 0, r.stderr)
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>)
    assert.equal(lines.length, 3)
    assert.deepEqual(Object.keys(lines[0]!), ['from', 'to', 'port', 'protocol', 'id', 'allowed', 'direction', 'tier', 'policyKind', 'policy', 'rule', 'egress', 'ingress'])
    assert.equal(lines[0]!.id, 7)
    assert.deepEqual(
      { allowed: lines[0]!.allowed, tier: lines[0]!.tier, policy: lines[0]!.policy, rule: lines[0]!.rule },
      { allowed: true, tier: 'NetworkPolicy', policy: 'shop/frontend-to-api', rule: 0 },
    )
    assert.deepEqual(Object.keys(lines[0]!.egress as object), ['allowed', 'tier', 'policyKind', 'policy', 'rule', 'reason'])
    assert.equal(lines[1]!.allowed, false)
    assert.equal(lines[1]!.policy, 'data/postgres-clients')
    assert.equal(lines[2]!.protocol, 'TCP', 'protocol defaults to TCP')
    assert.equal(lines[2]!.allowed, true)
  })

  it('rejects a bad flow line by line number and prints no partial output', async () => {
    const flows = join(tmp, 'bad-flows.jsonl')
    writeFileSync(flows, '{"from":"shop/frontend","to":"shop/api","port":8080}\n{"from":"shop/frontend","to":"shop/api","port":99999}\nnot json\n')
    const r = await flatnet('policy', 'eval', ...offline, '--flows', flows, '-o', 'json')
    assert.equal(r.code, 1)
    assert.equal(r.stdout, '')
    assert.match(r.stderr, /bad-flows.jsonl:2:1: port: must be between 1 and 65535, got 99999/)
    assert.match(r.stderr, /bad-flows.jsonl:3:1: not valid JSON/)
  })
})

describe('flatnet policy test', () => {
  it('passes the example expectations', async () => {
    const r = await flatnet('policy', 'test', ...offline, '--tests', ex('policy-tests.yaml'))
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /ok {2}9 passed, 0 failed/)
  })

  it('shows each failed expectation with its line and reason, and exits 1', async () => {
    const tests = join(tmp, 'tests.yaml')
    writeFileSync(tests, 'allow:\n- shop/frontend -> data/postgres:5432/TCP\ndeny:\n- shop/frontend -> shop/api:8080\n- shop/frontend -> shop/api:9090\n')
    const r = await flatnet('policy', 'test', ...offline, '--tests', tests)
    assert.equal(r.code, 1)
    assert.match(r.stdout, /FAIL .*tests.yaml:2 {2}shop\/frontend -> data\/postgres 5432\/TCP\n\s+expected allow, got denied: the destination is isolated/)
    assert.match(r.stdout, /FAIL .*tests.yaml:4 {2}shop\/frontend -> shop\/api 8080\/TCP\n\s+expected deny, got allowed/)
    assert.match(r.stdout, /1 passed, 2 failed/)
  })
})

describe('the flatnet binary', () => {
  it('is linked into node_modules/.bin by the workspace and runs', () => {
    const bin = join(root, 'node_modules', '.bin', 'flatnet')
    assert.ok(existsSync(bin), 'node_modules/.bin/flatnet exists')
    const text = execFileSync(bin, ['--version'], { encoding: 'utf8' })
    assert.equal(text.trim(), '0.1.0')
  })
})
