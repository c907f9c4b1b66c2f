/**
 * TUN offloads (TunOpenOptions.offloads): two offloading TUN devices in two namespaces, joined by
 * a forwarder in this process that copies every packet read from one into the other. The
 * namespaces' own TCP and UDP then run across it, so the kernels on both ends judge what the
 * addon made of TSO super-packets and partial checksums on read, and of the segments it
 * coalesces on write: a bad checksum, length or sequence number shows up as a stalled or
 * corrupted transfer, or a datagram that never arrives.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { InvalidArgumentError } from '@flatnet/core'
import { TunDevice } from '../src/index.js'
import { kernelSkipReason, Namespaces, Processes, run, uniqueName, waitFor } from './native-harness.js'
import { tcpTransfer } from './wg-harness.js'

const MTU = 1420
const A = { v4: '10.78.0.1', v6: 'fd78::1' }
const B = { v4: '10.78.0.2', v6: 'fd78::2' }

describe('TunDevice with offloads', { skip: kernelSkipReason() }, () => {
  const namespaces = new Namespaces()
  const processes = new Processes()
  const devices: TunDevice[] = []
  const ns = { a: '', b: '' }
  let a: TunDevice
  let b: TunDevice

  /** Copies every packet read from `from` into `to`, one writeBatch per batch read. */
  function forward(from: TunDevice, to: TunDevice): void {
    const offsets = new Uint32Array(from.batchSize).map((_, i) => i * from.slotSize)
    from.onPackets((buf, lengths, count) => {
      to.writeBatch(buf, offsets, lengths, count)
    })
  }

  async function place(dev: TunDevice, netns: string, addr: { v4: string; v6: string }): Promise<void> {
    await run('ip', ['link', 'set', 'dev', dev.name, 'netns', netns])
    await dev.configure({ netns, addresses: [`${addr.v4}/24`], mtu: MTU })
    // nodad: the address is usable at once instead of after duplicate address detection.
    await run('ip', ['-n', netns, 'addr', 'add', `${addr.v6}/64`, 'dev', dev.name, 'nodad'])
  }

  before(async () => {
    ns.a = await namespaces.create()
    ns.b = await namespaces.create()
    a = TunDevice.open({ name: uniqueName('fn-o'), mtu: MTU, offloads: true })
    devices.push(a)
    b = TunDevice.open({ name: uniqueName('fn-o'), mtu: MTU, offloads: true })
    devices.push(b)
    await place(a, ns.a, A)
    await place(b, ns.b, B)
    forward(a, b)
    forward(b, a)
  })

  after(async () => {
    for (const d of devices) d.close()
    await processes.stopAll()
    await namespaces.cleanup()
  })

  it('refuses to be combined with a caller-visible vnetHdr', () => {
    assert.throws(() => TunDevice.open({ name: uniqueName('fn-o'), offloads: true, vnetHdr: true }), InvalidArgumentError)
  })

  for (const family of ['v4', 'v6'] as const) {
    it(`carries TCP intact over IP${family}: super-packets split on read, segments coalesced again on write`, async () => {
      const before = a.stats().rxTsoPackets
      const coalescedBefore = b.stats().txGsoSends
      const bytes = 64 * 1024 * 1024
      const r = await tcpTransfer(processes, ns.a, ns.b, B[family], family === 'v4' ? 5401 : 5402, bytes, 60_000)
      assert.equal(r.receiver.bytes, bytes)
      assert.equal(r.receiver.sha256, r.sender.sha256)
      assert.ok(a.stats().rxTsoPackets > before, 'the kernel handed over TSO super-packets')
      assert.ok(b.stats().txGsoSends > coalescedBefore, 'segments were written as GSO super-packets')
      assert.equal(a.stats().rxErrors, 0)
      assert.equal(a.stats().rxTruncated, 0)
    })
  }

  for (const family of ['v4', 'v6'] as const) {
    it(`completes the partial checksums of UDP datagrams over IP${family}, which the receiving kernel then accepts`, async () => {
      // Datagram i is 1000 + i % 7 bytes of the value i, so any change to it shows.
      const type = family === 'v4' ? 'udp4' : 'udp6'
      const recvScript = `const s = require('node:dgram').createSocket('${type}'); const seen = new Set();
        s.on('message', (m) => { if (m.length === 1000 + (m[0] % 7) && m.every((x) => x === m[0])) seen.add(m[0]); if (seen.size === 20) { console.log('got 20'); process.exit(0) } });
        s.bind(5403, '${B[family]}', () => console.log('listening'))`
      const sendScript = `const s = require('node:dgram').createSocket('${type}'); let i = 0;
        const t = setInterval(() => { s.send(Buffer.alloc(1000 + (i % 7), i), 5403, '${B[family]}'); if (++i === 20) { clearInterval(t); setTimeout(() => s.close(), 100) } }, 5)`
      const recv = processes.spawn('ip', ['netns', 'exec', ns.b, process.execPath, '-e', recvScript])
      await waitFor(() => recv.output().includes('listening'), 10_000, 'the UDP receiver')
      const send = processes.spawn('ip', ['netns', 'exec', ns.a, process.execPath, '-e', sendScript])
      await waitFor(() => recv.output().includes('got 20') || recv.exitCode !== null, 10_000, `20 datagrams (receiver: ${recv.output()}, sender: ${send.output()})`)
      assert.match(recv.output(), /got 20/)
    })
  }
})
