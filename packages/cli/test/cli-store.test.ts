/** The online commands against a real redis-server: apply, get, diff, delete, explain, nodes, IPAM. */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { run, type Out } from '../src/index.js'
import { repoRoot, runCli } from './helpers.js'

const ex = (p: string): string => join(repoRoot(), 'examples', p)
const tmp = mkdtempSync(join(tmpdir(), 'fn-cli-store-'))
let redis: RedisServer

before(async () => {
  redis = await startRedis()
})
after(async () => {
  await redis?.stop()
  rmSync(tmp, { recursive: true, force: true })
})

function flatnet(...args: string[]): ReturnType<typeof runCli> {
  return runCli([...args, '--redis', redis.url, '--cluster', 'clitest'])
}

describe('flatnet policy apply|get|diff|delete against the store', () => {
  it('applies every document as one revision and reports each', async () => {
    const r = await flatnet('policy', 'apply', '-f', ex('policies'), '-f', ex('inventory'))
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /NetworkPolicy shop\/frontend-to-api created/)
    assert.match(r.stdout, /HostEndpoint data\/postgres created/)
    assert.match(r.stdout, /revision 1\n$/)
    const again = await flatnet('policy', 'apply', '-f', ex('policies'))
    assert.match(again.stdout, /NetworkPolicy shop\/frontend-to-api unchanged/)
    assert.match(again.stdout, /revision 1\n$/, 'nothing changed, no revision spent')
  })

  it('changes nothing when one document of a multi-document apply is bad', async () => {
    const file = join(tmp, 'half-bad.yaml')
    writeFileSync(
      file,
      [
        'apiVersion: networking.k8s.io/v1',
        'kind: NetworkPolicy',
        'metadata: {name: fine, namespace: shop}',
        'spec: {podSelector: {}}',
        '---',
        'apiVersion: networking.k8s.io/v1',
        'kind: NetworkPolicy',
        'metadata: {name: broken, namespace: shop}',
        'spec: {podSelector: {matchLabels: {app: "-bad-"}}}',
      ].join('\n'),
    )
    const r = await flatnet('policy', 'apply', '-f', file)
    assert.equal(r.code, 1)
    assert.match(r.stderr, /half-bad.yaml:9:\d+: spec.podSelector.matchLabels/)
    const get = await flatnet('policy', 'get', '-n', 'shop', 'fine')
    assert.equal(get.code, 1)
    assert.match(get.stderr, /NetworkPolicy shop\/fine not found/)
    const list = await flatnet('policy', 'list', '-A', '-o', 'json')
    assert.equal((JSON.parse(list.stdout) as { items: unknown[] }).items.length, 4)
  })

  it('gets policies as a table, as YAML that applies back unchanged, and by kind', async () => {
    const t = await flatnet('policy', 'get', '-A')
    assert.match(t.stdout, /NAMESPACE\s+NAME\s+POD-SELECTOR\s+POLICY-TYPES\s+REVISION/)
    assert.match(t.stdout, /shop\s+frontend-to-api\s+app=api\s+Ingress\s+1/)
    const cnp = await flatnet('policy', 'get', '--kind', 'ClusterNetworkPolicy')
    assert.match(cnp.stdout, /ops-ssh\s+Admin\s+10\s+namespaces/)
    const yaml = await flatnet('policy', 'get', '-n', 'shop', 'frontend-to-api', '-o', 'yaml')
    const file = join(tmp, 'roundtrip.yaml')
    writeFileSync(file, yaml.stdout)
    const back = await flatnet('policy', 'apply', '-f', file)
    assert.match(back.stdout, /NetworkPolicy shop\/frontend-to-api unchanged/)
  })

  it('diffs against the store, exits 1 on a difference, and --dry-run writes nothing', async () => {
    const file = join(tmp, 'changed.yaml')
    writeFileSync(file, 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: frontend-to-api, namespace: shop}\nspec:\n  podSelector: {matchLabels: {app: api}}\n  ingress:\n  - ports: [{port: 9090}]\n')
    const d = await flatnet('policy', 'diff', '-f', file)
    assert.equal(d.code, 1)
    assert.match(d.stdout, /^\+\s+- port: 9090$/m)
    const dry = await flatnet('policy', 'apply', '--dry-run', '-f', file)
    assert.equal(dry.code, 0)
    assert.match(dry.stdout, /NetworkPolicy shop\/frontend-to-api configured \(dry run\)/)
    const still = await flatnet('policy', 'diff', '-f', ex('policies/shop.yaml'))
    assert.equal(still.code, 0, 'the dry run changed nothing')
  })

  it('refuses a stale --if-revision and changes nothing', async () => {
    const r = await flatnet('policy', 'apply', '--if-revision', '0', '-f', join(tmp, 'changed.yaml'))
    assert.equal(r.code, 4)
    assert.match(r.stderr, /the store is at revision 1, not 0/)
  })

  it('explains and tests flows against the live store', async () => {
    const e = await flatnet('policy', 'explain', '--from', 'shop/frontend', '--to', 'data/postgres', '--port', '5432/TCP')
    assert.equal(e.code, 0, e.stderr)
    assert.match(e.stdout, /^DENIED/)
    const t = await flatnet('policy', 'test', '--tests', ex('policy-tests.yaml'))
    assert.equal(t.code, 0, t.stdout + t.stderr)
    assert.match(t.stdout, /9 passed, 0 failed/)
  })

  it('deletes by name and by file, and says what was not there', async () => {
    const one = await flatnet('policy', 'delete', '-n', 'shop', 'public-frontend')
    assert.equal(one.code, 0, one.stderr)
    assert.match(one.stdout, /NetworkPolicy shop\/public-frontend deleted/)
    const missing = await flatnet('policy', 'delete', '-n', 'shop', 'public-frontend')
    assert.equal(missing.code, 1)
    assert.match(missing.stderr, /not found/)
    const byFile = await flatnet('policy', 'delete', '-f', ex('policies/cluster-tiers.yaml'))
    assert.match(byFile.stdout, /ClusterNetworkPolicy ops-ssh deleted/)
  })
})

describe('flatnet node, endpoint and ipam commands', () => {
  it('lists endpoints across namespaces', async () => {
    const r = await flatnet('endpoint', 'list', '-A')
    assert.equal(r.code, 0, r.stderr)
    assert.match(r.stdout, /data\s+postgres\s+HostEndpoint\s+10\.64\.2\.5\s+vm-db-1/)
  })

  it('creates a pool and shows its usage', async () => {
    assert.equal((await flatnet('ipam', 'pool', 'set', 'default', '--cidr', '10.80.0.0/16', '--block-prefix', '26')).code, 0)
    const r = await flatnet('ipam', 'show')
    assert.match(r.stdout, /default\s+10\.80\.0\.0\/16\s+\/26\s+0\/1024\s+0\/65534/)
    const bad = await flatnet('ipam', 'pool', 'set', 'other', '--cidr', '10.80.0.0/33')
    assert.equal(bad.code, 2)
  })

  it('creates join tokens whose secret is printed once and never listed', async () => {
    const c = await flatnet('node', 'token', 'create', '--ttl', '2h', '--description', 'rack 4')
    assert.equal(c.code, 0, c.stderr)
    const token = c.stdout.trim()
    assert.match(token, /^fnt_[0-9a-f]+\.\S+$/)
    const l = await flatnet('node', 'token', 'list', '-o', 'json')
    assert.ok(!l.stdout.includes(token.split('.')[1]!), 'the secret is not stored in the clear')
    assert.match(l.stdout, /rack 4/)
    const badTtl = await flatnet('node', 'token', 'create', '--ttl', 'forever')
    assert.equal(badTtl.code, 2)
  })
})

describe('when Redis cannot be reached', () => {
  it('says so in one line with exit 3 within the timeout, never a stack trace', async () => {
    let stderr = ''
    const out: Out = { color: false, write: () => undefined, error: (t) => void (stderr += `${t}\n`) }
    const started = Date.now()
    const code = await run(['node', 'flatnet', 'policy', 'get', '-A', '--redis', 'redis://user:s3cret@127.0.0.1:1', '--timeout', '1500'], out)
    assert.equal(code, 3)
    assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`)
    assert.equal(stderr.trim().split('\n').length, 1, stderr)
    assert.match(stderr, /^error: store unavailable: cannot reach Redis at redis:\/\/user:\*\*\*@127\.0\.0\.1:1/)
    assert.doesNotMatch(stderr, /s3cret/)
  })
})

describe('the embedded store', () => {
  it('starts redis-server in the state dir when no URL is given, and keeps data across commands', async () => {
    const stateDir = join(tmp, 'state')
    let stdout = ''
    const out: Out = { color: false, write: (t) => void (stdout += `${t}\n`), error: () => undefined }
    const env = process.env.FLATNET_REDIS_URL
    delete process.env.FLATNET_REDIS_URL
    try {
      assert.equal(await run(['node', 'flatnet', 'policy', 'apply', '-f', ex('policies/shop.yaml'), '--state-dir', stateDir], out), 0)
      stdout = ''
      assert.equal(await run(['node', 'flatnet', 'policy', 'get', '-n', 'shop', '--state-dir', stateDir], out), 0)
      assert.match(stdout, /frontend-to-api/)
      assert.ok(existsSync(join(stateDir, 'appendonlydir')) || existsSync(join(stateDir, 'appendonly.aof')), 'AOF is on')
    } finally {
      if (env !== undefined) process.env.FLATNET_REDIS_URL = env
    }
  })
})
