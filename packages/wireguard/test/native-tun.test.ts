/**
 * TunDevice against real TUN devices. Each device is opened here (in this process's namespace,
 * under a name unique to the run), moved into a namespace made for the test, and configured
 * there; the descriptor stays valid across the move, so this process reads and writes packets
 * while `ping` runs inside the namespace.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { DataPlaneIoError, TunDevice } from '../src/index.js'
import { kernelSkipReason, Namespaces, Processes, run, snmpCounter, uniqueName, waitFor, within, writeEchoReply } from './native-harness.js'

const PEER = '10.77.0.2'

describe('TunDevice', { skip: kernelSkipReason() }, () => {
  const namespaces = new Namespaces()
  const processes = new Processes()
  const devices: TunDevice[] = []
  after(async () => {
    for (const d of devices) d.close()
    await processes.stopAll()
    await namespaces.cleanup()
  })

  function open(opts: Parameters<typeof TunDevice.open>[0] = {}): TunDevice {
    const dev = TunDevice.open({ name: uniqueName('fn-t'), ...opts })
    devices.push(dev)
    return dev
  }

  async function openInNetns(): Promise<{ tun: TunDevice; netns: string }> {
    const netns = await namespaces.create()
    const tun = open({ mtu: 1420 })
    await run('ip', ['link', 'set', 'dev', tun.name, 'netns', netns])
    await tun.configure({ netns, addresses: ['10.77.0.1/24'], mtu: 1420 })
    return { tun, netns }
  }

  async function linkExists(name: string, netns?: string): Promise<boolean> {
    const args = netns ? ['-n', netns, 'link', 'show', 'dev', name] : ['link', 'show', 'dev', name]
    return (await run('ip', args, { allowFail: true })).code === 0
  }

  it('reads the echo requests of a ping from the device and writes replies that ping accepts', async () => {
    const { tun, netns } = await openInNetns()
    const reply = Buffer.alloc(tun.slotSize)
    let answered = 0
    let batches = 0
    tun.onPackets((buf, lengths, count) => {
      batches++
      for (let i = 0; i < count; i++) {
        const off = i * tun.slotSize
        const n = writeEchoReply(buf.subarray(off, off + (lengths[i] as number)), PEER, reply, 0)
        if (n > 0 && tun.write(reply, 0, n)) answered++
      }
    })
    const ping = await run('ip', ['netns', 'exec', netns, 'ping', '-n', '-c', '3', '-i', '0.2', '-W', '2', PEER], { allowFail: true, timeoutMs: 15_000 })
    assert.equal(ping.code, 0, ping.stdout + ping.stderr)
    assert.match(ping.stdout, /3 packets transmitted, 3 received/)
    assert.equal(answered, 3)
    assert.ok(batches >= 3)
    const stats = tun.stats()
    assert.ok(stats.rxPackets >= 3 && stats.txPackets === 3 && stats.txErrors === 0, JSON.stringify(stats))
  })

  it('drains a backlog 64 packets per call and answers each batch with one writeBatch', async () => {
    const { tun, netns } = await openInNetns()
    // ping -l sends its preload back to back; the device queues them (txqueuelen 500) until read.
    // Not more: the replies go back as one burst, and ping's socket buffer (rmem_default) holds
    // only about 160 of them.
    const total = 128
    const ping = processes.spawn('ip', ['netns', 'exec', netns, 'ping', '-n', '-q', '-l', String(total), '-c', String(total), '-w', '10', PEER])
    let sent = 0
    const deadline = Date.now() + 5000
    while ((sent = await snmpCounter(netns, 'Icmp', 'OutEchos')) < total && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
    assert.ok(sent >= total, `ping sent ${sent} of ${total} echo requests`)

    const out = Buffer.alloc(tun.batchSize * tun.slotSize)
    const offsets = new Uint32Array(tun.batchSize)
    const lengths = new Uint32Array(tun.batchSize)
    const batchSizes: number[] = []
    let written = 0
    tun.onPackets((buf, lens, count) => {
      batchSizes.push(count)
      let n = 0
      for (let i = 0; i < count; i++) {
        const off = i * tun.slotSize
        const len = writeEchoReply(buf.subarray(off, off + (lens[i] as number)), PEER, out, n * tun.slotSize)
        if (len > 0) {
          offsets[n] = n * tun.slotSize
          lengths[n] = len
          n++
        }
      }
      written += tun.writeBatch(out, offsets, lengths, n)
    })
    const code = await within(ping.exited, 15_000, 'ping to finish')
    assert.equal(code, 0, ping.output())
    // ping keeps sending one a second while it waits, so it may transmit a few more than total
    assert.match(ping.output(), new RegExp(` transmitted, ${total} received`))
    assert.ok(written >= total, `${written} replies written`)
    assert.equal(Math.max(...batchSizes), 64, `batch sizes: ${batchSizes.join(',')}`)
    assert.ok(batchSizes.filter((n) => n === 64).length >= 2, `batch sizes: ${batchSizes.join(',')}`)
  })

  it('sets MTU and up by ioctl, and the interface goes away with its descriptor', async () => {
    const tun = open()
    tun.setLink({ mtu: 1300, up: true })
    const shown = JSON.parse((await run('ip', ['-j', 'link', 'show', 'dev', tun.name])).stdout) as { mtu: number; flags: string[] }[]
    assert.equal(shown[0]?.mtu, 1300)
    assert.ok(shown[0]?.flags.includes('UP'))
    assert.ok(tun.fd >= 0)
    tun.close()
    assert.equal(tun.fd, -1)
    assert.equal(await linkExists(tun.name), false)
    tun.close()
  })

  it('opens one interface as several queues with multiQueue, and refuses sharing without it', async () => {
    const name = uniqueName('fn-q')
    const a = open({ name, multiQueue: true })
    const b = open({ name, multiQueue: true })
    assert.equal(a.name, name)
    assert.equal(b.name, name)
    assert.notEqual(a.fd, b.fd)
    assert.throws(() => open({ name }), (e: unknown) => e instanceof DataPlaneIoError && e.sysCode === 'EINVAL' && /multiQueue and vnetHdr must match/.test(e.message))
    a.close()
    assert.equal(await linkExists(name), true)
    b.close()
    assert.equal(await linkExists(name), false)

    const single = open({ name: uniqueName('fn-s') })
    assert.throws(
      () => open({ name: single.name }),
      (e: unknown) => e instanceof DataPlaneIoError && e.sysCode === 'EBUSY' && /already attached to another file descriptor/.test(e.message),
    )
    single.close()
  })

  it('lets the kernel choose the name, and accepts a %d template', () => {
    const chosen = TunDevice.open()
    devices.push(chosen)
    assert.match(chosen.name, /^tun[0-9]+$/)
    const templ = TunDevice.open({ name: 'fn%d' })
    devices.push(templ)
    assert.match(templ.name, /^fn[0-9]+$/)
    templ.close()
    chosen.close()
  })

  it('with vnetHdr, accepts offload flags and prefixes packets with a virtio_net_hdr', async () => {
    const netns = await namespaces.create()
    const tun = open({ vnetHdr: true })
    assert.equal(tun.slotSize, 65535 + 10)
    tun.setOffload(1 | 2 | 4) // CSUM | TSO4 | TSO6
    await run('ip', ['link', 'set', 'dev', tun.name, 'netns', netns])
    await tun.configure({ netns, addresses: ['10.77.0.1/24'], mtu: 1420 })
    let headerAndIp: { hdrLen: number; version: number } | undefined
    tun.onPackets((buf, lengths, count) => {
      for (let i = 0; i < count && !headerAndIp; i++) {
        const off = i * tun.slotSize
        // 10 bytes of virtio_net_hdr, then the IP packet
        if ((lengths[i] as number) > 10 + 20 && (buf[off + 10] as number) >> 4 === 4 && buf[off + 10 + 9] === 1) headerAndIp = { hdrLen: 10, version: 4 }
      }
    })
    await run('ip', ['netns', 'exec', netns, 'ping', '-n', '-c', '1', '-W', '1', PEER], { allowFail: true })
    await waitFor(() => headerAndIp !== undefined, 3000, 'an ICMP packet behind the virtio_net_hdr')
    assert.deepEqual(headerAndIp, { hdrLen: 10, version: 4 })
    assert.throws(() => open().setOffload(1), /vnetHdr/)
  })

  it('reports a deleted interface to onError and stops reading', async () => {
    const { tun, netns } = await openInNetns()
    let error: DataPlaneIoError | undefined
    tun.onError((e) => (error = e))
    tun.onPackets(() => {})
    await run('ip', ['-n', netns, 'link', 'del', 'dev', tun.name])
    await waitFor(() => error !== undefined, 3000, 'the reader to stop')
    assert.ok(error instanceof DataPlaneIoError)
    assert.equal(error.code, 'ERR_DATAPLANE_IO')
    assert.match(error.message, /deleted or detached/)
    assert.equal(tun.write(Buffer.alloc(28)), false)
    tun.close()
  })

  it('rejects an MTU that does not fit the slot, and bad configure input', async () => {
    const tun = open({ mtu: 1420 })
    assert.equal(tun.slotSize, 1536)
    assert.throws(() => tun.setLink({ mtu: 9000 }), /does not fit/)
    await assert.rejects(tun.configure({ addresses: ['10.0.0.300/24'] }), /invalid interface address/)
    await assert.rejects(tun.configure({ mtu: 20 }), /68\.\.65535/)
    tun.close()
    assert.throws(() => tun.onPackets(() => {}), /closed/)
  })
})
