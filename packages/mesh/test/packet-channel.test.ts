import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Connection, Stream } from '@libp2p/interface'
import { encodeStreamHeader, FrameReader, FrameWriter } from '../src/framing.js'
import { silentLog } from '../src/log.js'
import { MeshPacketChannel, PACKET_CHANNEL_DEFAULTS } from '../src/packet-channel.js'
import type { PacketChannelHost } from '../src/packet-channel.js'
import { MAX_DATAGRAM_BYTES } from '../src/protocols.js'

const dg = (i: number, size = 10 + (i % 50)): Uint8Array => {
  const d = Buffer.alloc(size)
  d.writeUInt32BE(i, 0)
  return d
}
const idx = (d: Uint8Array): number => Buffer.from(d.buffer, d.byteOffset, d.byteLength).readUInt32BE(0)

function encode(epoch: number, datagrams: Uint8Array[]): Buffer {
  const w = new FrameWriter()
  for (const d of datagrams) w.add(d)
  const parts: Uint8Array[] = [encodeStreamHeader(epoch)]
  for (let c = w.take(); c !== undefined; c = w.take()) parts.push(c.bytes)
  return Buffer.concat(parts)
}

function decode(bytes: Uint8Array): { epoch: number | undefined; frames: Uint8Array[] } {
  const frames: Uint8Array[] = []
  const r = new FrameReader(
    () => {},
    (d) => frames.push(Uint8Array.prototype.slice.call(d)),
  )
  r.push(bytes)
  return { epoch: r.epoch, frames }
}

/** Just enough of a libp2p Stream for the channel: events in, writes recorded. */
class FakeStream extends EventTarget {
  written: Uint8Array[] = []
  status = 'open'
  failNextSend = false
  send(data: Uint8Array): boolean {
    if (this.failNextSend || this.status !== 'open') {
      this.failNextSend = false
      throw new Error('stream closed')
    }
    this.written.push(Uint8Array.prototype.slice.call(data))
    return true
  }
  async close(): Promise<void> {
    this.status = 'closed'
  }
  abort(): void {
    this.status = 'aborted'
    this.dispatchEvent(new Event('close'))
  }
  async onDrain(): Promise<void> {}
  deliver(bytes: Uint8Array): void {
    this.dispatchEvent(Object.assign(new Event('message'), { data: bytes }))
  }
  end(): void {
    this.dispatchEvent(new Event('end'))
  }
}

const asStream = (s: FakeStream): Stream => s as unknown as Stream

function fakeHost(open: () => { stream: FakeStream; viaRelay: boolean }): PacketChannelHost & { opened: FakeStream[] } {
  const opened: FakeStream[] = []
  return {
    opened,
    log: silentLog,
    async openStream() {
      const o = open()
      opened.push(o.stream)
      return { stream: asStream(o.stream), viaRelay: o.viaRelay }
    },
    channelClosed() {},
    relayRetired() {},
  }
}

describe('framing', () => {
  it('decodes frames split at every possible byte boundary', () => {
    const datagrams = [dg(0, 4), dg(1, 1400), dg(2, 4), Buffer.alloc(0), dg(3, 300)]
    const bytes = encode(7, datagrams)
    for (let cut = 0; cut <= bytes.length; cut++) {
      const frames: number[] = []
      let epoch: number | undefined
      const r = new FrameReader(
        (e) => (epoch = e),
        (d) => frames.push(d.byteLength),
      )
      r.push(bytes.subarray(0, cut))
      r.push(bytes.subarray(cut))
      assert.equal(epoch, 7)
      assert.deepEqual(frames, [4, 1400, 4, 0, 300], `cut at ${cut}`)
      assert.equal(r.pendingBytes, 0)
    }
  })

  it('packs a burst into few 64 KiB-bounded chunks and refuses an unknown version', () => {
    const w = new FrameWriter()
    for (let i = 0; i < 1000; i++) w.add(dg(i, 1400))
    const chunks: number[] = []
    for (let c = w.take(); c !== undefined; c = w.take()) chunks.push(c.bytes.byteLength)
    assert.ok(chunks.length < 40, `${chunks.length} chunks`)
    assert.ok(chunks.every((n) => n <= 64 * 1024))
    assert.equal(chunks.reduce((a, b) => a + b, 0), 1000 * 1402)
    assert.throws(() => new FrameReader(() => {}, () => {}).push(Buffer.from([9, 0, 0, 0, 1])), /version 9/)
  })
})

describe('packet channel', () => {
  it('copies on send, packs one tick’s datagrams into few writes, and drops what it cannot carry', async () => {
    const host = fakeHost(() => ({ stream: new FakeStream(), viaRelay: true }))
    const ch = new MeshPacketChannel('peer', host, { ...PACKET_CHANNEL_DEFAULTS, maxQueuedBytes: 20_000 })
    const reused = Buffer.alloc(100)
    for (let i = 0; i < 50; i++) {
      reused.writeUInt32BE(i, 0)
      assert.equal(ch.send(reused), true)
    }
    assert.equal(ch.send(new Uint8Array(MAX_DATAGRAM_BYTES + 1)), false, 'too large')
    assert.equal(ch.send(new Uint8Array(20_000)), false, 'over the queue bound')
    await ch.drain()
    const s = host.opened[0]!
    assert.ok(s.written.length <= 3, `the header, then the burst in at most two writes (${s.written.length})`)
    const { epoch, frames } = decode(Buffer.concat(s.written))
    assert.equal(epoch, 1)
    assert.deepEqual(frames.map(idx), Array.from({ length: 50 }, (_, i) => i))
    assert.equal(ch.viaRelay, true)
    assert.deepEqual({ sent: ch.stats.sent, dropped: ch.stats.dropped }, { sent: 50, dropped: 2 })
  })

  it('re-sends a chunk the stream refused on a new stream, with a higher epoch', async () => {
    const host = fakeHost(() => ({ stream: new FakeStream(), viaRelay: false }))
    const ch = new MeshPacketChannel('peer', host)
    await ch.ready()
    host.opened[0]!.failNextSend = true
    for (let i = 0; i < 5; i++) ch.send(dg(i))
    await ch.drain()
    assert.equal(host.opened.length, 2)
    const { epoch, frames } = decode(Buffer.concat(host.opened[1]!.written))
    assert.equal(epoch, 2)
    assert.deepEqual(frames.map(idx), [0, 1, 2, 3, 4])
    assert.equal(ch.stats.dropped, 0)
  })

  it('moves to a direct stream on upgrade and closes the relayed one after its queue', async () => {
    let n = 0
    const host = fakeHost(() => ({ stream: new FakeStream(), viaRelay: n++ === 0 }))
    const ch = new MeshPacketChannel('peer', host)
    const paths: boolean[] = []
    ch.onPathChange((v) => paths.push(v))
    ch.send(dg(0))
    await ch.drain()
    ch.upgrade({} as Connection)
    await new Promise((r) => setTimeout(r, 10))
    ch.send(dg(1))
    await ch.drain()
    assert.equal(ch.viaRelay, false)
    assert.deepEqual(paths, [true, false])
    assert.equal(host.opened[0]!.status, 'closed')
    assert.deepEqual(decode(Buffer.concat(host.opened[0]!.written)).frames.map(idx), [0])
    assert.deepEqual(decode(Buffer.concat(host.opened[1]!.written)).frames.map(idx), [1])
  })

  it('delivers an older stream to its end before a newer one, whatever order the bytes arrive in', () => {
    const ch = new MeshPacketChannel(
      'peer',
      fakeHost(() => {
        throw new Error('unused')
      }),
    )
    const got: number[] = []
    ch.onDatagram((d) => got.push(idx(d)))
    const old = new FakeStream()
    const neu = new FakeStream()
    ch.attachInbound(asStream(old), true)
    old.deliver(encode(4, [dg(0), dg(1)]))
    ch.attachInbound(asStream(neu), false)
    // The newer stream's data arrives while the old one still has datagrams in flight.
    neu.deliver(encode(5, [dg(4), dg(5)]))
    old.deliver(encode(4, [dg(2), dg(3)]).subarray(5))
    assert.deepEqual(got, [0, 1, 2, 3])
    old.end()
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5])
    neu.deliver(encode(5, [dg(6)]).subarray(5))
    assert.deepEqual(got, [0, 1, 2, 3, 4, 5, 6])
    assert.equal(ch.viaRelay, false)
  })

  it('gives up order (not datagrams) when an older stream stalls', async () => {
    const ch = new MeshPacketChannel(
      'peer',
      fakeHost(() => {
        throw new Error('unused')
      }),
      { ...PACKET_CHANNEL_DEFAULTS, reorderTimeoutMs: 30 },
    )
    const got: number[] = []
    ch.onDatagram((d) => got.push(idx(d)))
    const old = new FakeStream()
    const neu = new FakeStream()
    ch.attachInbound(asStream(old), true)
    old.deliver(encode(1, [dg(0)]))
    ch.attachInbound(asStream(neu), false)
    neu.deliver(encode(2, [dg(2)]))
    assert.deepEqual(got, [0])
    await new Promise((r) => setTimeout(r, 60))
    assert.deepEqual(got, [0, 2])
    old.deliver(encode(1, [dg(1)]).subarray(5))
    assert.deepEqual(got, [0, 2, 1])
  })
})
