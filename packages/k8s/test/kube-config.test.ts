import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { K8sApiError, K8sConfigError } from '../src/errors.js'
import { loadKubeConfig } from '../src/kube-config.js'
import { expectStatus, kubeConfigTransport } from '../src/kube-transport.js'
import type { FakeApiServer } from './fake-api-server.js'
import { recordedCluster } from './helpers.js'

let server: FakeApiServer
let dir: string

before(async () => {
  server = await recordedCluster(['good-token', 'sa-token'])
  dir = mkdtempSync(join(tmpdir(), 'fn-kubeconfig-test-'))
})
after(async () => {
  await server.stop()
  rmSync(dir, { recursive: true, force: true })
})

function withEnv<T>(env: Record<string, string | undefined>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  try {
    return fn()
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}

describe('reaching the Kubernetes API', () => {
  it('a kubeconfig file: TLS with its CA, bearer token, the context namespace', async () => {
    const file = join(dir, 'config')
    writeFileSync(file, server.kubeconfig('good-token', 'flatnet-system'))
    const loaded = loadKubeConfig({ kubeconfig: file })
    assert.equal(loaded.server, server.url)
    assert.equal(loaded.namespace, 'flatnet-system')
    const transport = kubeConfigTransport(loaded.kubeConfig, loaded.server)
    const list = expectStatus('GET', '/api/v1/namespaces', await transport.request('GET', '/api/v1/namespaces'), [200]) as { items: unknown[] }
    assert.equal(list.items.length, 5)
    assert.equal(server.requests.at(-1)?.token, 'good-token')
  })

  it('in a pod: the service-account token, CA and namespace files, and KUBERNETES_SERVICE_HOST/PORT', async () => {
    const root = join(dir, 'pod')
    const sa = join(root, 'var/run/secrets/kubernetes.io/serviceaccount')
    mkdirSync(sa, { recursive: true })
    writeFileSync(join(sa, 'token'), 'sa-token')
    writeFileSync(join(sa, 'ca.crt'), server.ca)
    writeFileSync(join(sa, 'namespace'), 'flatnet-system')
    const port = new URL(server.url).port
    const loaded = withEnv({ KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port }, () => loadKubeConfig({ inCluster: true, inClusterRoot: root }))
    assert.equal(loaded.source, 'in-cluster')
    assert.equal(loaded.namespace, 'flatnet-system')
    const transport = kubeConfigTransport(loaded.kubeConfig, loaded.server)
    const got = await transport.request('GET', '/api/v1/pods?limit=1')
    assert.equal(got.status, 200)
    assert.equal(server.requests.at(-1)?.token, 'sa-token')
  })

  it('a refused token is an ERR_K8S_API error with the status and reason', async () => {
    const file = join(dir, 'bad')
    writeFileSync(file, server.kubeconfig('wrong-token'))
    const loaded = loadKubeConfig({ kubeconfig: file })
    const response = await kubeConfigTransport(loaded.kubeConfig, loaded.server).request('GET', '/api/v1/pods')
    const err = (() => {
      try {
        expectStatus('GET', '/api/v1/pods', response, [200])
      } catch (e) {
        return e as K8sApiError
      }
      return undefined
    })()
    assert.ok(err instanceof K8sApiError)
    assert.equal(err.code, 'ERR_K8S_API')
    assert.equal(err.status, 401)
    assert.match(err.message, /GET \/api\/v1\/pods: 401 Unauthorized/)
  })

  it('an unreachable API server is an ERR_K8S_API error with status 0, within the timeout', async () => {
    const file = join(dir, 'down')
    const config = JSON.parse(server.kubeconfig('good-token')) as { clusters: { cluster: { server: string } }[] }
    config.clusters[0]!.cluster.server = 'https://127.0.0.1:1'
    writeFileSync(file, JSON.stringify(config))
    const loaded = loadKubeConfig({ kubeconfig: file })
    await assert.rejects(kubeConfigTransport(loaded.kubeConfig, loaded.server).request('GET', '/api/v1/pods', { timeoutMs: 2_000 }), (e: unknown) => e instanceof K8sApiError && e.status === 0 && /ECONNREFUSED/.test(e.message))
  })

  it('clear errors: a missing file, an unknown context, a plain http server without insecure-skip-tls-verify, in-cluster outside a pod', () => {
    assert.throws(() => loadKubeConfig({ kubeconfig: join(dir, 'nope') }), (e: unknown) => e instanceof K8sConfigError && e.code === 'ERR_K8S_CONFIG' && /nope.*file not found/.test(e.message))
    const file = join(dir, 'ctx')
    writeFileSync(file, server.kubeconfig('good-token'))
    assert.throws(() => loadKubeConfig({ kubeconfig: file, context: 'prod' }), /no context "prod" \(contexts: fake\)/)
    const http = JSON.parse(server.kubeconfig('t')) as { clusters: { cluster: Record<string, unknown> }[] }
    http.clusters[0]!.cluster = { server: 'http://127.0.0.1:8080' }
    writeFileSync(file, JSON.stringify(http))
    assert.throws(() => loadKubeConfig({ kubeconfig: file }), /plain http:\/\/ server needs insecure-skip-tls-verify/)
    withEnv({ KUBERNETES_SERVICE_HOST: undefined, KUBERNETES_SERVICE_PORT: undefined }, () => {
      assert.throws(() => loadKubeConfig({ inCluster: true }), /not running in a pod/)
    })
  })
})
