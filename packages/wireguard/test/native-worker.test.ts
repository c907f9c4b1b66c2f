/**
 * Lifetimes the addon must get right outside a single test process: a worker terminated while
 * its devices are being read (the addon's cleanup hooks close them; a live poll handle would
 * abort the process), and a process whose only socket is unref()ed exiting by itself.
 */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { Worker } from 'node:worker_threads'
import { UdpSocket } from '../src/index.js'
import { kernelSkipReason, run, uniqueName, waitFor, within } from './native-harness.js'

const fixture = new URL('./native-worker-fixture.js', import.meta.url)
const indexUrl = new URL('../src/index.js', import.meta.url).href

describe('native handles and process lifetime', () => {
  for (const withTun of [false, true]) {
    it(`a worker terminated while reading UDP${withTun ? ' and a TUN device' : ''} leaves nothing open`, { skip: withTun ? kernelSkipReason() : false }, async () => {
      const tunName = withTun ? uniqueName('fn-w') : undefined
      const worker = new Worker(fixture, { workerData: { tunName } })
      try {
        const messages: { type: string; port?: number; tun?: string; count?: number }[] = []
        worker.on('message', (m) => messages.push(m))
        await waitFor(() => messages.some((m) => m.type === 'ready'), 10_000, 'the worker to open its devices')
        const ready = messages.find((m) => m.type === 'ready')!
        if (withTun) assert.equal((await run('ip', ['link', 'show', 'dev', tunName!], { allowFail: true })).code, 0)
        const tx = UdpSocket.bind({ address: '127.0.0.1' })
        tx.sendTo(Buffer.from('ping'), '127.0.0.1', ready.port!)
        await waitFor(() => messages.some((m) => m.type === 'datagrams'), 5000, 'the worker to receive')
        tx.close()
        const exited = once(worker, 'exit')
        await worker.terminate()
        await within(exited, 10_000, 'the worker to exit')
        if (withTun) assert.notEqual((await run('ip', ['link', 'show', 'dev', tunName!], { allowFail: true })).code, 0, 'the TUN device is gone')
        // the same port can be bound again: the worker's socket was closed
        const again = UdpSocket.bind({ address: '127.0.0.1', port: ready.port! })
        again.close()
      } finally {
        await worker.terminate()
      }
    })
  }

  it("a handler's exception reaches process 'uncaughtException', and reading goes on", async () => {
    const script = `
      const { UdpSocket } = await import(${JSON.stringify(indexUrl)})
      const rx = UdpSocket.bind({ address: '127.0.0.1', slotSize: 2048, batchSize: 1 })
      const tx = UdpSocket.bind({ address: '127.0.0.1' })
      const caught = []
      let calls = 0
      process.on('uncaughtException', (e) => caught.push(e.message))
      rx.onDatagrams(() => {
        calls++
        if (calls === 1) throw new Error('boom')
        if (calls === 2) {
          console.log(JSON.stringify({ calls, caught }))
          rx.close()
          tx.close()
        }
      })
      tx.sendTo(Buffer.from('a'), '127.0.0.1', rx.localPort)
      tx.sendTo(Buffer.from('b'), '127.0.0.1', rx.localPort)
    `
    const r = await run(process.execPath, ['--input-type=module', '-e', script], { timeoutMs: 10_000 })
    assert.deepEqual(JSON.parse(r.stdout.trim()), { calls: 2, caught: ['boom'] })
  })

  it('a process whose socket is unref()ed exits while reading; a ref()ed one keeps it alive', async () => {
    const script = (unref: boolean): string => `
      const { UdpSocket } = await import(${JSON.stringify(indexUrl)})
      const s = UdpSocket.bind({ address: '127.0.0.1', slotSize: 2048 })
      s.onDatagrams(() => {})
      ${unref ? 's.unref()' : 'setTimeout(() => { console.log("still alive"); process.exit(0) }, 300)'}
    `
    const quiet = await run(process.execPath, ['--input-type=module', '-e', script(true)], { timeoutMs: 10_000 })
    assert.equal(quiet.code, 0)
    const kept = await run(process.execPath, ['--input-type=module', '-e', script(false)], { timeoutMs: 10_000 })
    assert.match(kept.stdout, /still alive/)
  })
})
