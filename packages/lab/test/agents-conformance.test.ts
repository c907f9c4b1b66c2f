/**
 * The 42 upstream NetworkPolicy cases with real packets: the netpol-3x3 lab (nine workloads on
 * three hosts, six of every nine pairs across the encrypted overlay), one agent per host
 * enforcing with nftables. For every step of every case the policies and labels go into the
 * store, every agent reports the new revision applied, and the probed TCP and UDP matrix
 * (9 x 9 x 2 ports x 2 protocols) must equal the case's truth table. SCTP stays engine-only:
 * this kernel has no SCTP sockets. Loopback cells (a workload to itself) are probed but not
 * judged: upstream leaves them undefined (ignoreLoopback), a pod cannot block access to itself,
 * and such packets never leave the workload's namespace.
 */
import assert from 'node:assert/strict'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AgentClient } from '@flatnet/agent/client'
import { loadObjects } from '@flatnet/policy'
import { expectedVerdict, fillPlaceholders, loadConformanceCases, stepsOf, type ConformanceAction } from '@flatnet/policy/testing'
import { applyObjects, connectRedis, FlatnetStore, type StoredObject } from '@flatnet/store'
import { labDown, labUp, loadTopology, probeLab, type LabUpResult } from '../src/index.js'
import { repoRoot, skipReason, tempStateDir, uniqueLabId } from './helpers.js'

const data = loadConformanceCases()
const FLATNET = join(repoRoot(), 'packages', 'cli', 'bin', 'flatnet.js')
const PROBE_TIMEOUT_MS = 300

describe('NetworkPolicy conformance through the lab, with real packets', { skip: skipReason, timeout: 600_000 }, () => {
  let lab: LabUpResult
  let stateDir: string
  let store: FlatnetStore
  const ipOf = new Map<string, string>()
  const original = new Map<string, StoredObject>()

  before(async () => {
    stateDir = await tempStateDir()
    lab = await labUp({
      topology: await loadTopology(join(repoRoot(), 'examples', 'lab', 'netpol-3x3.yaml')),
      stateDir,
      id: uniqueLabId(),
      agentArgv: [process.execPath, FLATNET, 'agent', 'run'],
      logLevel: 'warn',
    })
    for (const e of lab.info.endpoints) ipOf.set(e.key, e.addresses[0] as string)
    store = new FlatnetStore({ redis: connectRedis(lab.redisUrl), where: 'lab' }, { cluster: 'default' })
    for (const o of await store.list('Endpoint')) original.set(o.key, o)
    for (const o of await store.list('Namespace')) original.set(`ns:${o.key}`, o)
  })

  after(async () => {
    await store?.close()
    if (stateDir) {
      await labDown({ stateDir })
      await rm(stateDir, { recursive: true, force: true })
    }
  })

  /** Writes, then waits until every agent enforces what was written. */
  async function commit(ops: Parameters<FlatnetStore['write']>[0]): Promise<void> {
    const outcome = ops.length > 0 ? await store.write(ops) : { revision: await store.revision() }
    await Promise.all(
      Object.values(lab.agentSockets).map(async (socketPath) => {
        const client = new AgentClient({ socketPath, timeoutMs: 2000 })
        const deadline = Date.now() + 10_000
        for (;;) {
          const s = await client.get<{ applied?: { revision: number } }>('/v1/status')
          if ((s.applied?.revision ?? 0) >= outcome.revision) return
          if (Date.now() > deadline) throw new Error(`${socketPath}: revision ${outcome.revision} not applied within 10 s`)
          await new Promise((r) => setTimeout(r, 20))
        }
      }),
    )
  }

  async function reset(): Promise<void> {
    const ops: Parameters<FlatnetStore['write']>[0][number][] = (await store.list('NetworkPolicy')).map((p) => ({ op: 'delete' as const, kind: 'NetworkPolicy' as const, key: p.key }))
    for (const [key, o] of original) ops.push({ op: 'put', kind: o.kind, key: key.replace(/^ns:/, ''), value: o.value })
    await commit(ops)
  }

  async function act(action: ConformanceAction, file: string): Promise<Parameters<FlatnetStore['write']>[0]> {
    const [verb, arg] = Object.entries(action)[0] as [string, Record<string, unknown>]
    if (verb === 'create' || verb === 'update') {
      const policy = fillPlaceholders(arg, (ns, pod) => ipOf.get(`${ns}/${pod}`) as string)
      await applyObjects(store, loadObjects([{ file, text: JSON.stringify(policy) }]))
      return []
    }
    if (verb === 'delete') return [{ op: 'delete', kind: 'NetworkPolicy', key: `${arg.namespace as string}/${arg.name as string}` }]
    if (verb === 'setNamespaceLabels') {
      const ns = arg.namespace as string
      return [{ op: 'put', kind: 'Namespace', key: ns, value: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: arg.labels } } }]
    }
    if (verb === 'setPodLabels') {
      const key = arg.pod as string
      const current = (await store.get('Endpoint', key))?.value as { metadata: Record<string, unknown> }
      return [{ op: 'put', kind: 'Endpoint', key, value: { ...current, metadata: { ...current.metadata, labels: arg.labels } } }]
    }
    throw new Error(`unknown action ${verb}`)
  }

  it('has all 42 cases and a lab of nine workloads', () => {
    assert.equal(data.cases.length, 42)
    assert.equal(lab.info.endpoints.filter((e) => e.role === 'workload').length, 9)
  })

  for (const c of data.cases) {
    it(`${c.id} ${c.name}`, async () => {
      await reset()
      let stepIndex = 0
      for (const step of stepsOf(c)) {
        const ops: Parameters<FlatnetStore['write']>[0][number][] = []
        for (const action of step.actions) ops.push(...(await act(action, `${c.id}.yaml`)))
        await commit(ops)
        const results = await probeLab({ stateDir, timeoutMs: PROBE_TIMEOUT_MS, concurrency: 128 })
        assert.equal(results.length, 324)
        const wrong: string[] = []
        for (const r of results) {
          if (r.from === r.to) continue
          const [sns, spod] = r.from.split('/') as [string, string]
          const [dns, dpod] = r.to.split('/') as [string, string]
          const want = expectedVerdict(data, step.expect, [sns, spod], [dns, dpod], r.port, r.protocol)
          if (want !== r.allowed) wrong.push(`${r.from}->${r.to}:${r.port}/${r.protocol} want ${want ? 'allow' : 'deny'}, measured ${r.probe.result}`)
        }
        assert.deepEqual(wrong.slice(0, 12), [], `step ${stepIndex}: ${wrong.length} of 324 flows differ`)
        stepIndex++
      }
    })
  }
})
