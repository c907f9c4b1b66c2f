/** Shared pieces of the syncer's tests: a fake API server with the recorded cluster, Redis, logs. */
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { pino, type Logger } from 'pino'
import { after, afterEach, before, beforeEach } from 'node:test'
import { connectRedis, FlatnetStore } from '@flatnet/store'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { K8sSyncer, type SyncerOptions } from '../src/syncer.js'
import { loadKubeConfig } from '../src/kube-config.js'
import { kubeConfigTransport, type KubeTransport } from '../src/kube-transport.js'
import { FakeApiServer, fixture } from './fake-api-server.js'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** A fake API server holding the recorded cluster of test/fixtures. */
export async function recordedCluster(tokens: readonly string[] = ['token-a']): Promise<FakeApiServer> {
  const server = new FakeApiServer()
  for (const t of tokens) server.tokens.add(t)
  for (const name of ['namespaces', 'pods', 'networkpolicies', 'clusternetworkpolicies']) server.load(name, fixture(name))
  await server.start()
  return server
}

/** A transport to the fake server through a real kubeconfig file (KubeConfig reads it). */
export function transportFor(server: FakeApiServer, token: string): KubeTransport {
  const dir = mkdtempSync(join(tmpdir(), 'fn-kubeconfig-'))
  try {
    const file = join(dir, 'config')
    writeFileSync(file, server.kubeconfig(token))
    const loaded = loadKubeConfig({ kubeconfig: file })
    return kubeConfigTransport(loaded.kubeConfig, loaded.server)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

let clusters = 0

/** A store on `url` in a flatnet cluster of its own (same Redis, nothing shared between tests). */
export function freshStore(url: string): FlatnetStore {
  const cluster = `k8s-${process.pid}-${++clusters}`
  return new FlatnetStore({ redis: connectRedis(url, { connectTimeoutMs: 2_000, commandTimeoutMs: 4_000 }), where: url }, { cluster, commandTimeoutMs: 4_000 })
}

/** A pino logger whose lines the test can read. */
export function memoryLog(): { log: Logger; lines: () => Record<string, unknown>[] } {
  const lines: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString('utf8').split('\n').filter((l) => l !== ''))
      done()
    },
  })
  const log = pino({ level: 'debug' }, sink)
  return { log, lines: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) }
}

export async function until(what: string, timeoutMs: number, check: () => boolean | Promise<boolean>): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** Fast settings for tests: short batches, quick retries, no periodic resync. */
export const FAST = Object.freeze({
  reflector: { retryMinMs: 50, retryMaxMs: 400, absentRetryMs: 300, requestTimeoutMs: 5_000 },
  mirror: { batchIntervalMs: 50, retryMinMs: 50, retryMaxMs: 400, resyncIntervalMs: 0 },
})

/**
 * What a syncer test file runs against: one redis-server for the file and, for each test, a
 * recorded cluster and a fresh store. Syncers made by `start` are stopped after each test.
 * Construct it at the top of a test file (it registers the hooks).
 */
export class SyncerWorld {
  redis!: RedisServer
  server!: FakeApiServer
  store!: FlatnetStore
  private running: K8sSyncer[] = []

  constructor() {
    before(async () => {
      this.redis = await startRedis()
    })
    after(async () => {
      await this.redis.stop()
    })
    beforeEach(async () => {
      this.server = await recordedCluster(['token-a'])
      this.store = freshStore(this.redis.url)
    })
    afterEach(async () => {
      await Promise.all(this.running.map((s) => s.stop()))
      this.running = []
      await this.store.close()
      await this.server.stop()
    })
  }

  /** A syncer (no lease, FAST settings, token-a; `options` over those) started on this test's cluster and store. */
  start(opts: { log?: Logger; pageSize?: number; options?: Partial<SyncerOptions> } = {}): K8sSyncer {
    const s = new K8sSyncer(
      { transport: transportFor(this.server, 'token-a'), store: this.store, log: opts.log ?? memoryLog().log },
      { lease: false, reflector: { ...FAST.reflector, ...(opts.pageSize ? { pageSize: opts.pageSize } : {}) }, mirror: FAST.mirror, ...opts.options },
    )
    this.running.push(s)
    s.start()
    return s
  }

  /**
   * Makes a Pod change in the API (`change`) that must write nothing: waits until the syncer
   * has seen `modifiedEvents` Pod MODIFIED events in all and is in sync, then asserts the
   * store's revision did not move.
   */
  async assertPodChangeWritesNothing(s: K8sSyncer, modifiedEvents: number, change: () => void): Promise<void> {
    const revision = await this.store.revision()
    change()
    await until('the Pod event is seen', 5_000, async () => (await s.metrics.value('flatnet_k8s_events_total', { resource: 'pods', type: 'MODIFIED' })) >= modifiedEvents)
    await s.whenSynced(5_000)
    assert.equal(await this.store.revision(), revision, 'the change wrote nothing')
  }

  async stop(s: K8sSyncer): Promise<void> {
    await s.stop()
    this.running = this.running.filter((x) => x !== s)
  }
}
