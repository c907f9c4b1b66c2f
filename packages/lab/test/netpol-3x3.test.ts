/**
 * The conformance model in the lab: examples/lab/netpol-3x3.yaml built over three hosts, its
 * full 9 x 9 x 2 ports x 2 protocols matrix probed in seconds, and a drop rule on one workload
 * costing one timeout in all, not one per denied flow.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { after, before, describe, it } from 'node:test'
import { buildLab, labDown, loadTopology, perHostAllocator, probeLab, type LabInfo } from '../src/index.js'
import { skipReason, sweep, tempStateDir, uniqueLabId } from './helpers.js'

const root = new URL('../../../../', import.meta.url).pathname

function nft(netns: string, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', netns, 'nft', '-f', '-'], { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`nft in ${netns}: ${err}`))))
    child.stdin.end(text)
  })
}

describe('netpol-3x3 in the lab', { skip: skipReason }, () => {
  const id = uniqueLabId()
  let stateDir: string
  let info: LabInfo

  before(async () => {
    stateDir = await tempStateDir()
    const topology = await loadTopology(`${root}examples/lab/netpol-3x3.yaml`)
    const alloc = perHostAllocator(topology)
    info = await buildLab({ topology, stateDir, id, allocate: alloc.allocate, hostPrefixes: alloc.prefixesOf })
  })

  after(async () => {
    await labDown({ stateDir }).catch(() => undefined)
    await sweep(id, stateDir)
  })

  it('probes all 324 flows, every one answered, in a few seconds', async () => {
    const started = Date.now()
    const results = await probeLab({ stateDir })
    const elapsed = Date.now() - started
    assert.equal(results.length, 9 * 9 * 2 * 2)
    assert.deepEqual(results.filter((r) => !r.allowed).map((r) => `${r.from} -> ${r.to}:${r.port}/${r.protocol} ${r.probe.result}`), [])
    assert.ok(elapsed < 5000, `324 flows took ${elapsed} ms`)
  })

  it('dropping every new connection into y/b denies exactly the 32 flows into it from the other eight, within about one timeout', async () => {
    const yb = info.endpoints.find((e) => e.key === 'y/b')!
    await nft(yb.netns, 'table inet fn_lab_test {\n chain input {\n  type filter hook input priority 0; policy accept;\n  iifname "eth0" ct state new drop\n }\n}\n')
    const started = Date.now()
    const results = await probeLab({ stateDir })
    const elapsed = Date.now() - started
    const denied = results.filter((r) => !r.allowed)
    // From every other workload to y/b, on both ports and protocols; y/b to itself stays on lo.
    assert.deepEqual(
      denied.map((r) => `${r.from} -> ${r.to}:${r.port}/${r.protocol}`),
      results.filter((r) => r.to === 'y/b' && r.from !== 'y/b').map((r) => `${r.from} -> ${r.to}:${r.port}/${r.protocol}`),
    )
    assert.equal(denied.length, 8 * 4)
    assert.ok(denied.every((r) => r.probe.result === 'timeout'))
    assert.ok(elapsed < 4000, `probing with ${denied.length} dropped flows took ${elapsed} ms`)
  })
})
