/**
 * The flatnet command line against a running lab, as a person would use it: `lab env` points
 * the other commands at the lab's store, `policy apply` changes what the agents enforce, `lab
 * probe` measures it, `status`, `flows` and `policy status` report it, `endpoint label` and
 * `namespace label` change what policies select.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { connectRedis, FlatnetStore } from '@flatnet/store'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { labDown, labUp, loadTopology, readLabState, type LabUpResult } from '../src/index.js'
import { repoRoot, skipReason, tempStateDir, uniqueLabId } from './helpers.js'

const FLATNET = join(repoRoot(), 'packages', 'cli', 'bin', 'flatnet.js')

describe('the flatnet CLI against a running lab', { skip: skipReason, timeout: 180_000 }, () => {
  let lab: LabUpResult
  let stateDir: string
  let env: NodeJS.ProcessEnv

  function flatnet(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((resolve) => {
      execFile(process.execPath, [FLATNET, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
      )
    })
  }

  before(async () => {
    stateDir = await tempStateDir()
    lab = await labUp({ topology: await loadTopology(), stateDir, id: uniqueLabId(), agentArgv: [process.execPath, FLATNET, 'agent', 'run'], logLevel: 'warn' })
    env = { ...process.env, FLATNET_LAB_STATE_DIR: stateDir }
    delete env.FLATNET_REDIS_URL
  })

  after(async () => {
    if (stateDir) {
      await labDown({ stateDir })
      await rm(stateDir, { recursive: true, force: true })
    }
  })

  it('lab env prints shell assignments that point the other commands at the lab', async () => {
    const r = await flatnet('lab', 'env')
    assert.equal(r.code, 0, r.stderr)
    const m = /^export FLATNET_REDIS_URL='?([^'\n]+)'?$/m.exec(r.stdout)
    assert.ok(m, r.stdout)
    assert.equal(m[1], lab.redisUrl)
    env.FLATNET_REDIS_URL = lab.redisUrl
  })

  it('policy apply changes what the agents enforce, lab probe measures it, flows names the rule', async () => {
    const file = join(stateDir, 'deny-data.yaml')
    writeFileSync(
      file,
      ['apiVersion: networking.k8s.io/v1', 'kind: NetworkPolicy', 'metadata: {name: web-only, namespace: data}', 'spec:', '  podSelector: {}', '  ingress:', '  - from:', '    - namespaceSelector: {matchLabels: {team: web}}', ''].join('\n'),
    )
    const applied = await flatnet('policy', 'apply', '-f', file)
    assert.equal(applied.code, 0, applied.stderr)
    const flowsFile = join(stateDir, 'flows.jsonl')
    writeFileSync(flowsFile, ['{"from":"shop/api","to":"data/postgres","port":5432,"protocol":"TCP"}', '{"from":"hosts/baremetal","to":"data/postgres","port":5432,"protocol":"TCP"}', ''].join('\n'))
    // Within the propagation target, the probe sees the policy.
    const deadline = Date.now() + 5_000
    let lines: { from: string; allowed: boolean; expected?: boolean; policy: string | null }[] = []
    for (;;) {
      const probe = await flatnet('lab', 'probe', '--flows', flowsFile, '--output', 'json', '--timeout', '400')
      assert.equal(probe.code, 0, probe.stderr)
      lines = probe.stdout.trim().split('\n').map((l) => JSON.parse(l) as (typeof lines)[number])
      if (lines[1]?.allowed === false || Date.now() > deadline) break
    }
    assert.deepEqual(
      lines.map((l) => [l.from, l.allowed, l.expected]),
      [
        ['shop/api', true, true],
        ['hosts/baremetal', false, false],
      ],
    )
    assert.equal(lines[1]?.policy, 'data/web-only')
    // The flow log merges a packet's egress and ingress records over a short window: poll.
    const vmSocket = lab.agentSockets.vm as string
    const until = Date.now() + 5_000
    let flows = { code: 0, stdout: '[]', stderr: '' }
    let denied: { dstPort?: number; decidedBy: { policy?: string; tier: string } }[] = []
    while (Date.now() < until) {
      flows = await flatnet('flows', '--socket', vmSocket, '-o', 'json', '--verdict', 'deny')
      assert.equal(flows.code, 0, flows.stderr)
      denied = JSON.parse(flows.stdout) as typeof denied
      if (denied.some((f) => f.dstPort === 5432 && f.decidedBy.policy === 'data/web-only')) break
      await new Promise((r) => setTimeout(r, 200))
    }
    assert.ok(
      denied.some((f) => f.dstPort === 5432 && f.decidedBy.policy === 'data/web-only'),
      flows.stdout.slice(0, 2000),
    )
  })

  it('status shows the node, its peers with handshakes, its endpoints and the applied revision', async () => {
    const r = await flatnet('status', '--socket', lab.agentSockets['k8s-node'] as string)
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /^node k8s-node \(12D3KooW/m)
    assert.match(r.stdout, /policy revision \d+ applied/)
    assert.match(r.stdout, /^vm\s+192\.168\.77\.1:51820\s+10\.244\.\d+\.\d+\/26\s+\d+ seconds? ago/m)
    assert.match(r.stdout, /^shop\/frontend\s+Pod\s+10\.244\./m)
    const json = JSON.parse((await flatnet('status', '--socket', lab.agentSockets['k8s-node'] as string, '-o', 'json')).stdout) as { peers: unknown[]; store: { connected: boolean } }
    assert.equal(json.peers.length, 2)
    assert.equal(json.store.connected, true)
  })

  it('policy status lists every node at the store\'s revision', async () => {
    const r = await flatnet('policy', 'status', '-o', 'json')
    assert.equal(r.code, 0, r.stderr)
    const doc = JSON.parse(r.stdout) as { revision: number; nodes: { node?: string; hostname?: string; revision?: number; state: string }[] }
    assert.equal(doc.nodes.length, 3, r.stdout)
    for (const n of doc.nodes) assert.equal(n.state, 'current', JSON.stringify(n))
  })

  it('endpoint label and namespace label change what a policy selects', async () => {
    const flowsFile = join(stateDir, 'flows2.jsonl')
    writeFileSync(flowsFile, '{"from":"hosts/baremetal","to":"data/postgres","port":5432,"protocol":"TCP"}\n')
    const ns = await flatnet('namespace', 'label', 'hosts', 'team=web', '--overwrite')
    assert.equal(ns.code, 0, ns.stderr)
    const deadline = Date.now() + 5_000
    let allowed = false
    while (!allowed && Date.now() < deadline) {
      allowed = (JSON.parse((await flatnet('lab', 'probe', '--flows', flowsFile, '--output', 'json', '--timeout', '400')).stdout) as { allowed: boolean }).allowed
    }
    assert.equal(allowed, true, 'hosts is a web namespace now')
    const bad = await flatnet('endpoint', 'label', 'data/postgres', 'Bad Key=1')
    assert.equal(bad.code, 2, bad.stdout)
    const ep = await flatnet('endpoint', 'label', 'data/postgres', 'tier=db')
    assert.equal(ep.code, 0, ep.stderr)
  })

  it('serves Prometheus metrics and health on its local port, inside the host\'s namespace', async () => {
    const host = readLabState(stateDir)!.hosts.find((h) => h.name === 'k8s-node')!
    const fetchIn = (path: string) =>
      new Promise<string>((resolve, reject) => {
        const script = `fetch('http://127.0.0.1:9469${path}').then(async (r) => process.stdout.write(r.status + '\\n' + (await r.text())))`
        execFile('ip', ['netns', 'exec', host.netns, process.execPath, '-e', script], { timeout: 15_000 }, (err, stdout) => (err ? reject(err) : resolve(String(stdout))))
      })
    const metrics = await fetchIn('/metrics')
    assert.match(metrics, /^200\n/)
    assert.match(metrics, /^flatnet_policy_applied_revision\{node="k8s-node"\} [1-9]\d*$/m)
    assert.match(metrics, /^flatnet_wireguard_peers\{node="k8s-node"\} 2$/m)
    assert.match(metrics, /^flatnet_store_connected\{node="k8s-node"\} 1$/m)
    assert.match(await fetchIn('/readyz'), /^200\n/)
  })

  it('re-reads its configuration on SIGHUP: new host endpoint labels reach the store', async () => {
    const state = readLabState(stateDir)!
    const agent = state.processes.find((p) => p.name === 'agent baremetal')!
    const file = join(stateDir, 'agents', 'baremetal', 'agent.yaml')
    writeFileSync(file, readFileSync(file, 'utf8').replace(/role: bastion/, 'role: bastion\n    reloaded: "yes"'))
    process.kill(agent.pid!, 'SIGHUP')
    const store = new FlatnetStore({ redis: connectRedis(lab.redisUrl), where: 'lab' }, { cluster: 'default' })
    try {
      const deadline = Date.now() + 5_000
      let labels: Record<string, string> = {}
      while (Date.now() < deadline) {
        labels = ((await store.get('Endpoint', 'hosts/baremetal'))?.value as { metadata: { labels: Record<string, string> } }).metadata.labels
        if (labels.reloaded === 'yes') break
        await new Promise((r) => setTimeout(r, 100))
      }
      assert.deepEqual(labels, { role: 'bastion', reloaded: 'yes' })
    } finally {
      await store.close()
    }
  })

  it('leaves its rules in place when stopped (SIGTERM), and agent cleanup removes what flatnet made on the host', async () => {
    const state = readLabState(stateDir)!
    const agent = state.processes.find((p) => p.name === 'agent vm')!
    const host = state.hosts.find((h) => h.name === 'vm')!
    const workload = state.endpoints.find((e) => e.host === 'vm' && e.role === 'workload')!
    const inHost = (...argv: string[]) => new Promise<{ code: number; out: string }>((resolve) => {
      execFile('ip', ['netns', 'exec', host.netns, ...argv], { env, timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: String(stdout) + String(stderr) }))
    })
    process.kill(agent.pid!, 'SIGTERM')
    const deadline = Date.now() + 10_000
    while (Date.now() < deadline && (await inHost('kill', '-0', String(agent.pid))).code === 0) await new Promise((r) => setTimeout(r, 100))
    assert.equal((await inHost('nft', 'list', 'table', 'inet', 'flatnet')).code, 0, 'the ruleset outlives the agent')
    assert.equal((await inHost('ip', 'link', 'show', 'dev', workload.hostIfname!)).code, 0)
    const cleanup = await inHost(process.execPath, FLATNET, 'agent', 'cleanup', '--config', join(stateDir, 'agents', 'vm', 'agent.yaml'))
    assert.equal(cleanup.code, 0, cleanup.out)
    assert.match(cleanup.out, /removed nftables table inet flatnet/)
    assert.match(cleanup.out, new RegExp(`removed workload link ${workload.hostIfname}`))
    assert.notEqual((await inHost('nft', 'list', 'table', 'inet', 'flatnet')).code, 0, 'the table is gone')
    assert.notEqual((await inHost('ip', 'link', 'show', 'dev', workload.hostIfname!)).code, 0, 'the workload link is gone')
  })
})
