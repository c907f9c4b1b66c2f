/**
 * Metrics and health endpoints over real HTTP: a scrape parsed back into samples, the flatnet_
 * prefix, one registry per agent, /healthz, /readyz flipping with the readiness callback, and
 * the listen address (disabled, malformed, taken).
 */
import assert from 'node:assert/strict'
import { createServer } from 'node:net'
import { after, describe, it } from 'node:test'
import { InvalidArgumentError } from '@flatnet/core'
import { register as promGlobalRegistry } from 'prom-client'
import { AgentListenError, createHealthServer, createMetrics, HEALTH_DEFAULTS, parseListenAddress, silentApiLog, type HealthServer, type Readiness } from '../src/index.js'

const servers: HealthServer[] = []
after(async () => {
  for (const s of servers) await s.stop()
})

async function startHealth(readiness: () => Readiness | Promise<Readiness>, opts: { readinessTimeoutMs?: number } = {}): Promise<{ server: HealthServer; metrics: ReturnType<typeof createMetrics> }> {
  const metrics = createMetrics({ defaultLabels: { node: 'n1' } })
  const server = createHealthServer({ metrics, readiness, log: silentApiLog, options: { address: '127.0.0.1:0', ...opts } })
  await server.start()
  servers.push(server)
  return { server, metrics }
}

async function get(url: string): Promise<{ status: number; text: string; type: string | null }> {
  const r = await fetch(url, { signal: AbortSignal.timeout(5_000) })
  return { status: r.status, text: await r.text(), type: r.headers.get('content-type') }
}

interface Sample {
  readonly name: string
  readonly labels: Record<string, string>
  readonly value: number
}

/** Parses the Prometheus text exposition format (what a scraper reads). */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = []
  const types = new Map<string, string>()
  for (const line of text.split('\n')) {
    if (line === '') continue
    const t = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (t) types.set(t[1] as string, t[2] as string)
    if (line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    assert.ok(m, `not an exposition line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1] as string] = l[2] as string
    samples.push({ name: m[1] as string, labels, value: Number(m[3]) })
  }
  return { samples, types }
}

const find = (samples: Sample[], name: string, labels: Record<string, string> = {}): Sample | undefined =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

describe('metrics', () => {
  it('serves counters, gauges and histograms with the flatnet_ prefix in the Prometheus text format', async () => {
    const { server, metrics } = await startHealth(() => ({ ready: true, reasons: [] }))
    const applies = metrics.counter({ name: 'policy_applies_total', help: 'policy applies', labelNames: ['result'] })
    let endpoints = 0
    metrics.gauge({ name: 'local_endpoints', help: 'endpoints on this node', collect() { this.set(endpoints) } })
    const latency = metrics.histogram({ name: 'apply_seconds', help: 'apply duration', buckets: [0.01, 0.1, 1] })
    applies.inc({ result: 'ok' })
    applies.inc({ result: 'ok' })
    applies.inc({ result: 'error' })
    endpoints = 7
    latency.observe(0.05)
    latency.observe(0.5)

    const r = await get(`${server.url}/metrics`)
    assert.equal(r.status, 200)
    assert.match(r.type ?? '', /^text\/plain; version=0\.0\.4/)
    const { samples, types } = parseExposition(r.text)
    assert.equal(find(samples, 'flatnet_policy_applies_total', { result: 'ok', node: 'n1' })?.value, 2)
    assert.equal(find(samples, 'flatnet_policy_applies_total', { result: 'error' })?.value, 1)
    assert.equal(find(samples, 'flatnet_local_endpoints')?.value, 7, 'the gauge is collected at scrape time')
    assert.equal(find(samples, 'flatnet_apply_seconds_bucket', { le: '0.01' })?.value, 0)
    assert.equal(find(samples, 'flatnet_apply_seconds_bucket', { le: '0.1' })?.value, 1)
    assert.equal(find(samples, 'flatnet_apply_seconds_bucket', { le: '+Inf' })?.value, 2)
    assert.equal(find(samples, 'flatnet_apply_seconds_count')?.value, 2)
    assert.deepEqual([types.get('flatnet_policy_applies_total'), types.get('flatnet_local_endpoints'), types.get('flatnet_apply_seconds')], ['counter', 'gauge', 'histogram'])
    assert.ok(find(samples, 'flatnet_process_cpu_user_seconds_total'), 'process metrics carry the prefix too')
    assert.ok(find(samples, 'flatnet_nodejs_eventloop_lag_seconds'))
    assert.deepEqual(samples.filter((s) => !s.name.startsWith('flatnet_')), [], 'every metric is flatnet_*')
  })

  it("keeps each agent's metrics in its own registry, never prom-client's global one", async () => {
    const a = createMetrics({ processMetrics: false })
    const b = createMetrics({ processMetrics: false })
    a.counter({ name: 'same_name_total', help: 'x' }).inc(3)
    b.counter({ name: 'same_name_total', help: 'x' }).inc(5)
    assert.match(await a.text(), /^flatnet_same_name_total 3$/m)
    assert.match(await b.text(), /^flatnet_same_name_total 5$/m)
    assert.equal(promGlobalRegistry.getSingleMetric('flatnet_same_name_total'), undefined)
  })

  it('rejects a name that already carries the prefix', () => {
    assert.throws(() => createMetrics({ processMetrics: false }).counter({ name: 'flatnet_x_total', help: 'x' }), /without the "flatnet_" prefix/)
  })
})

describe('health endpoints', () => {
  it('/healthz answers 200 while the process runs', async () => {
    const { server } = await startHealth(() => ({ ready: false, reasons: ['starting'] }))
    const r = await get(`${server.url}/healthz`)
    assert.deepEqual([r.status, r.text], [200, 'ok\n'], 'liveness does not depend on readiness')
  })

  it('/readyz answers 503 with every reason until the readiness callback says ready, then 200', async () => {
    let state: Readiness = { ready: false, reasons: ['waiting for the first store sync', 'nftables ruleset not applied yet'] }
    const { server } = await startHealth(() => state)
    const before = await get(`${server.url}/readyz`)
    assert.equal(before.status, 503)
    assert.equal(before.text, 'not ready:\n- waiting for the first store sync\n- nftables ruleset not applied yet\n')
    state = { ready: true, reasons: [] }
    const ready = await get(`${server.url}/readyz`)
    assert.deepEqual([ready.status, ready.text], [200, 'ok\n'])
    state = { ready: false, reasons: ['store unreachable for 40 s'] }
    assert.equal((await get(`${server.url}/readyz`)).status, 503, 'and back')
  })

  it('/readyz is 503 when the callback throws or does not answer in time', async () => {
    let mode: 'throw' | 'hang' = 'throw'
    const { server } = await startHealth(
      () => {
        if (mode === 'throw') throw new Error('calculation graph missing')
        return new Promise<Readiness>(() => {})
      },
      { readinessTimeoutMs: 200 },
    )
    const thrown = await get(`${server.url}/readyz`)
    assert.equal(thrown.status, 503)
    assert.match(thrown.text, /the readiness check failed: calculation graph missing/)
    mode = 'hang'
    const hung = await get(`${server.url}/readyz`)
    assert.equal(hung.status, 503)
    assert.match(hung.text, /did not answer within 200 ms/)
  })

  it('answers 404 for other paths and 405 for other methods', async () => {
    const { server } = await startHealth(() => ({ ready: true, reasons: [] }))
    assert.equal((await get(`${server.url}/nope`)).status, 404)
    const post = await fetch(`${server.url}/metrics`, { method: 'POST', signal: AbortSignal.timeout(5_000) })
    assert.equal(post.status, 405)
  })

  it('listens on 127.0.0.1:9469 by default, is disabled by an empty address, and rejects a malformed one naming the setting', async () => {
    assert.equal(HEALTH_DEFAULTS.address, '127.0.0.1:9469')
    assert.deepEqual(parseListenAddress(HEALTH_DEFAULTS.address, 'x'), { host: '127.0.0.1', port: 9469 })
    assert.deepEqual(parseListenAddress('[::1]:9000', 'x'), { host: '::1', port: 9000 })
    const off = createHealthServer({ metrics: createMetrics({ processMetrics: false }), readiness: () => ({ ready: true, reasons: [] }), log: silentApiLog, options: { address: '' } })
    await off.start()
    assert.equal(off.enabled, false)
    assert.equal(off.url, undefined)
    assert.throws(
      () => createHealthServer({ metrics: createMetrics({ processMetrics: false }), readiness: () => ({ ready: true, reasons: [] }), log: silentApiLog, options: { address: 'localhost' } }),
      (e: unknown) => e instanceof InvalidArgumentError && /metrics address: "localhost" is not a listen address/.test(e.message),
    )
    assert.throws(() => parseListenAddress('127.0.0.1:70000', 'metrics.listen'), InvalidArgumentError)
  })

  it('reports a taken port as ERR_AGENT_LISTEN with EADDRINUSE', async () => {
    const blocker = createServer()
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', () => resolve()))
    const port = (blocker.address() as { port: number }).port
    try {
      const s = createHealthServer({ metrics: createMetrics({ processMetrics: false }), readiness: () => ({ ready: true, reasons: [] }), log: silentApiLog, options: { address: `127.0.0.1:${port}` } })
      await assert.rejects(s.start(), (e: unknown) => e instanceof AgentListenError && e.sysCode === 'EADDRINUSE' && e.message.includes(`127.0.0.1:${port}`))
    } finally {
      await new Promise((resolve) => blocker.close(resolve))
    }
  })
})
