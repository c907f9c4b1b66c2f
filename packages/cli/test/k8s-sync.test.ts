/**
 * `flatnet k8s sync` as a real process: a fake Kubernetes API server (recorded objects, real
 * list/watch/Lease protocol over HTTPS) and a real redis-server.
 */
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { connectRedis, FlatnetStore } from '@flatnet/store'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { FakeApiServer, fixture } from '@flatnet/k8s/testing'
import { repoRoot } from './helpers.js'

let redis: RedisServer
let api: FakeApiServer
let dir: string
let child: ChildProcess | undefined

before(async () => {
  redis = await startRedis()
  api = new FakeApiServer()
  api.tokens.add('cli-token')
  for (const name of ['namespaces', 'pods', 'networkpolicies', 'clusternetworkpolicies']) api.load(name, fixture(name))
  await api.start()
  dir = mkdtempSync(join(tmpdir(), 'fn-k8s-cli-'))
})
after(async () => {
  if (child?.exitCode === null) child.kill('SIGKILL')
  await api.stop()
  await redis.stop()
  rmSync(dir, { recursive: true, force: true })
})

async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

describe('flatnet k8s sync', () => {
  it('runs as a process: holds the Lease, mirrors the cluster, serves /readyz and /metrics, hands the Lease over on SIGTERM', async () => {
    const kubeconfig = join(dir, 'kubeconfig')
    writeFileSync(kubeconfig, api.kubeconfig('cli-token', 'flatnet-system'))
    const cluster = `k8s-cli-${process.pid}`
    let stderr = ''
    child = spawn(
      process.execPath,
      [join(repoRoot(), 'packages/cli/bin/flatnet.js'), 'k8s', 'sync', '--kubeconfig', kubeconfig, '--redis', redis.url, '--cluster', cluster, '--identity', 'cli-test', '--metrics-address', '127.0.0.1:0'],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    )
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
    const exited = new Promise<number | null>((resolve) => child!.once('exit', (code) => resolve(code)))
    const store = new FlatnetStore({ redis: connectRedis(redis.url), where: redis.url }, { cluster })
    try {
      await until('the pods in the store', 20_000, async () => (await store.list('Endpoint')).length === 4)
      const started = stderr.split('\n').find((l) => l.includes('flatnet k8s sync started'))
      assert.ok(started, stderr)
      const line = JSON.parse(started) as { metrics: string; lease: string; identity: string }
      assert.equal(line.lease, 'flatnet-system/flatnet-k8s-syncer', 'the Lease lives in the context namespace')
      assert.equal((api.lease('flatnet-system', 'flatnet-k8s-syncer')?.spec as { holderIdentity: string }).holderIdentity, 'cli-test')
      await until('ready', 10_000, async () => (await fetch(`http://${line.metrics}/readyz`)).status === 200)
      const metrics = await (await fetch(`http://${line.metrics}/metrics`)).text()
      assert.match(metrics, /^flatnet_k8s_leader 1$/m)
      assert.match(metrics, /^flatnet_k8s_invalid_objects_total\{resource="clusternetworkpolicies"\} 1$/m)
      assert.match(stderr, /"object":"egress-to-saas"/)
      child.kill('SIGTERM')
      let timer: NodeJS.Timeout | undefined
      const code = await Promise.race([exited, new Promise((r) => (timer = setTimeout(() => r('timeout'), 10_000)))])
      clearTimeout(timer)
      assert.equal(code, 0, stderr)
      assert.equal((api.lease('flatnet-system', 'flatnet-k8s-syncer')?.spec as { holderIdentity: string }).holderIdentity, '', 'released on SIGTERM')
    } finally {
      await store.close()
    }
  })

  it('a kubeconfig that cannot be read is one line and exit status 2', async () => {
    const proc = spawn(process.execPath, [join(repoRoot(), 'packages/cli/bin/flatnet.js'), 'k8s', 'sync', '--kubeconfig', join(dir, 'missing'), '--redis', redis.url], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stderr = ''
    proc.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve))
    assert.equal(code, 2)
    assert.match(stderr.trim(), /^error: Kubernetes client configuration \(.*missing\): file not found$/)
  })
})
