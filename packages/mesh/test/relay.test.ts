import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import type { PacketChannel } from '../src/index.js'
import { identity, node, stopAll, tcpAddr, waitFor } from './helpers.js'

after(stopAll)

/** Datagram i: its index in the first 4 bytes, then a size and filler that vary with i. */
function datagram(i: number): Uint8Array {
  const d = Buffer.alloc(60 + ((i * 137) % 1380))
  d.writeUInt32BE(i, 0)
  d.fill(i & 0xff, 4)
  return d
}

describe('relay fallback', () => {
  it('carries datagrams A->B through R when A and B cannot connect, in order, then moves to direct without loss', async () => {
    const [ir, ia, ib] = await Promise.all([identity(), identity(), identity()])
    const all = [ir.peerId, ia.peerId, ib.peerId]
    // A and B refuse direct connections with each other while `blocked` holds: two nodes with
    // no direct path, both reaching R.
    let blocked = true
    const denyFor = (other: string) => (peer: string) => blocked && peer === other
    const r = await node(ir, all, { relayServer: true })
    const a = await node(ia, all, { denyDirect: denyFor(ib.peerId), directRetryMs: 200 })
    const b = await node(ib, all, { denyDirect: denyFor(ia.peerId), directRetryMs: 200 })

    await a.mesh.dial(tcpAddr(r.mesh))
    await b.mesh.dial(tcpAddr(r.mesh))
    // B must hold a reservation on R before anyone can come in through it.
    await waitFor(() => b.mesh.multiaddrs.some((m) => m.includes(`/p2p/${ir.peerId}/p2p-circuit`)), 5_000, 'B to reserve a slot on R')

    const received: number[] = []
    let corrupt = 0
    let inbound: PacketChannel | undefined
    b.mesh.onPacketChannel((ch) => {
      inbound = ch
      ch.onDatagram((d) => {
        const i = Buffer.from(d.buffer, d.byteOffset, d.byteLength).readUInt32BE(0)
        if (d.byteLength !== datagram(i).byteLength || d[d.byteLength - 1] !== (i & 0xff)) corrupt++
        received.push(i)
      })
    })

    // A knows only B's PeerId: the direct attempt fails (no address, or refused), R carries it.
    const channel = await a.mesh.openPacketChannel(ib.peerId)
    assert.equal(channel.viaRelay, true)
    // Dialling B's own address now fails directly and lands on the relayed connection too.
    assert.equal(await a.mesh.dial(tcpAddr(b.mesh)), ib.peerId)
    assert.equal(channel.viaRelay, true)
    // Records went end to end over the relayed connection: R cannot forge B's signature.
    await waitFor(() => a.mesh.confirmedWireguardKey(ib.peerId) === ib.wireguardPublicKey, 3_000, 'B’s record over the relay')
    assert.equal(b.mesh.confirmedWireguardKey(ia.peerId), ia.wireguardPublicKey)

    const RELAYED = 10_000
    let next = 0
    const sendUpTo = async (n: number): Promise<void> => {
      while (next < n) {
        const burstEnd = Math.min(n, next + 500)
        for (; next < burstEnd; next++) assert.ok(channel.send(datagram(next)), `send ${next} refused`)
        await channel.drain()
      }
    }
    await sendUpTo(RELAYED)
    await waitFor(() => received.length >= RELAYED, 10_000, `${RELAYED} datagrams through the relay (got ${received.length})`)
    assert.equal(channel.viaRelay, true)
    assert.equal(inbound?.viaRelay, true)
    assert.deepEqual(received, Array.from({ length: RELAYED }, (_, i) => i))

    // Open the direct path; the channel finds it on its own (directRetryMs) and moves over,
    // while datagrams keep coming.
    blocked = false
    const deadline = Date.now() + 8_000
    while (channel.viaRelay) {
      assert.ok(Date.now() < deadline, 'the channel did not move to the direct connection within 8 s')
      for (let k = 0; k < 20; k++, next++) assert.ok(channel.send(datagram(next)), `send ${next} refused`)
      await new Promise((res) => setTimeout(res, 5))
    }
    const switchedAt = next
    await sendUpTo(switchedAt + 2_000)
    const total = next
    await waitFor(() => received.length >= total, 10_000, `all ${total} datagrams (got ${received.length})`)
    assert.equal(channel.viaRelay, false)
    assert.deepEqual(received, Array.from({ length: total }, (_, i) => i), 'every datagram, once, in order, across the switch')
    assert.equal(corrupt, 0)
    assert.equal(channel.stats.dropped, 0)
    assert.equal(channel.stats.sent, total)
    assert.equal(inbound?.stats.received, total)
    assert.ok(channel.stats.streamsOpened >= 2)
    await waitFor(() => inbound?.viaRelay === false, 3_000, 'B to see the direct stream')
  })
})
