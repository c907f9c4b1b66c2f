/**
 * UdpSocket on loopback: batched send/receive of many datagrams with their sources, IPv4, IPv6
 * and dual-stack, GSO/GRO trains, and reading on after ICMP errors.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { ADDR_BYTES, decodeAddr, encodeAddr, formatAddr, UdpSocket } from '../src/index.js'
import { waitFor } from './native-harness.js'

const SIZE = 200
const WINDOW = 2048

interface Received {
  count: number
  /** next expected sequence number per sender port */
  next: Map<number, number>
  errors: string[]
  batches: number[]
}

/** Reads datagrams stamped by blast(): [seq u32][sender port u16], checks order and source. */
function collect(sock: UdpSocket, family: 4 | 6, address: string): Received {
  const r: Received = { count: 0, next: new Map(), errors: [], batches: [] }
  sock.onDatagrams((buf, offsets, lengths, addrs, count) => {
    r.batches.push(count)
    for (let i = 0; i < count; i++) {
      const off = offsets[i] as number
      const seq = buf.readUInt32BE(off)
      const port = buf.readUInt16BE(off + 4)
      const a = i * ADDR_BYTES
      const srcPort = ((addrs[a + 16] as number) << 8) | (addrs[a + 17] as number)
      if (lengths[i] !== SIZE) r.errors.push(`datagram ${seq}: length ${lengths[i]}`)
      if (addrs[a + 18] !== family || srcPort !== port) r.errors.push(`datagram ${seq}: source ${formatAddr(addrs, i)}, sender port ${port}`)
      if (r.errors.length === 0 && decodeAddr(addrs, i)?.address !== address) r.errors.push(`datagram ${seq}: source ${formatAddr(addrs, i)}`)
      const want = r.next.get(port) ?? 0
      if (seq !== want) r.errors.push(`from ${port}: got ${seq}, expected ${want}`)
      r.next.set(port, seq + 1)
      r.count++
    }
  })
  return r
}

/**
 * Sends stamped datagrams `first`..`first + total - 1` with sendBatch, 64 at a time, never more
 * than WINDOW ahead of the receiver (`flow.sent` counts every sender's datagrams).
 */
async function blast(sender: UdpSocket, dest: Uint8Array, first: number, total: number, flow: { sent: number; received: () => number }): Promise<void> {
  const buf = Buffer.alloc(64 * SIZE)
  const offsets = new Uint32Array(64)
  const lengths = new Uint32Array(64)
  for (let k = 0; k < total; ) {
    const n = Math.min(64, total - k)
    for (let i = 0; i < n; i++) {
      buf.writeUInt32BE(first + k + i, i * SIZE)
      buf.writeUInt16BE(sender.localPort, i * SIZE + 4)
      offsets[i] = i * SIZE
      lengths[i] = SIZE
    }
    let done = 0
    while (done < n) {
      done += sender.sendBatch(buf, offsets.subarray(done), lengths.subarray(done), dest, n - done)
      if (done < n) await new Promise((r) => setImmediate(r))
    }
    k += n
    flow.sent += n
    if (flow.sent - flow.received() > WINDOW) await waitFor(() => flow.sent - flow.received() <= WINDOW / 4, 10_000, 'the receiver to catch up')
  }
}

describe('UdpSocket', () => {
  const sockets: UdpSocket[] = []
  after(() => {
    for (const s of sockets) s.close()
  })
  function bind(opts: Parameters<typeof UdpSocket.bind>[0]): UdpSocket {
    const s = UdpSocket.bind(opts)
    sockets.push(s)
    return s
  }

  for (const [family, address] of [
    [4, '127.0.0.1'],
    [6, '::1'],
  ] as const) {
    it(`moves 10,000 datagrams over IPv${family} loopback with sendmmsg/recvmmsg, each with its source`, async () => {
      const rx = bind({ address, slotSize: 2048 })
      const a = bind({ address })
      const b = bind({ address })
      assert.equal(rx.family, family)
      assert.ok(rx.localPort > 0)
      const got = collect(rx, family, address)
      const dest = new Uint8Array(ADDR_BYTES)
      encodeAddr(dest, 0, address, rx.localPort)
      // two senders in alternating chunks, so that sources must be told apart within batches
      const flow = { sent: 0, received: () => got.count }
      for (let chunk = 0; chunk < 10; chunk++) {
        await blast(a, dest, chunk * 500, 500, flow)
        await blast(b, dest, chunk * 500, 500, flow)
      }
      await waitFor(() => got.count >= 10_000 || got.errors.length > 0, 10_000, 'all 10,000 datagrams')
      assert.deepEqual(got.errors.slice(0, 5), [])
      assert.equal(got.count, 10_000)
      assert.equal(got.next.get(a.localPort), 5000)
      assert.equal(got.next.get(b.localPort), 5000)
      assert.ok(Math.max(...got.batches) > 1, 'some wakeups drained more than one datagram')
      const s = rx.stats()
      assert.equal(s.rxPackets, 10_000)
      assert.equal(s.rxTruncated, 0)
      assert.equal(a.stats().txPackets, 5000)
      rx.onDatagrams(null)
    })
  }

  it('on a dual-stack socket, reports IPv4 peers as IPv4 and answers them through IPv4 records', async () => {
    const rx = bind({ address: '::', slotSize: 2048 })
    const tx = bind({ address: '127.0.0.1' })
    const from: string[] = []
    rx.onDatagrams((buf, offsets, lengths, addrs, count) => {
      for (let i = 0; i < count; i++) {
        from.push(formatAddr(addrs, i))
        rx.send(buf, offsets[i] as number, lengths[i] as number, addrs, i)
      }
    })
    const echoed: string[] = []
    tx.onDatagrams((buf, offsets, lengths, addrs, count) => {
      for (let i = 0; i < count; i++) echoed.push(buf.toString('utf8', offsets[i], (offsets[i] as number) + (lengths[i] as number)))
    })
    assert.ok(tx.sendTo(Buffer.from('hello'), '127.0.0.1', rx.localPort))
    await waitFor(() => echoed.length === 1, 5000, 'the echo')
    assert.deepEqual(from, [`127.0.0.1:${tx.localPort}`])
    assert.deepEqual(echoed, ['hello'])
  })

  it('sends GSO trains and splits GRO trains back into the same datagrams', async () => {
    const tx = bind({ address: '127.0.0.1', gso: true })
    const rxGro = bind({ address: '127.0.0.1', gro: true })
    const rxPlain = bind({ address: '127.0.0.1', slotSize: 2048 })
    assert.equal(tx.info().gso, true)
    assert.equal(rxGro.info().gro, true)
    const n = 100
    const size = 1420
    const buf = Buffer.alloc(n * size)
    const offsets = new Uint32Array(n)
    const lengths = new Uint32Array(n)
    for (let i = 0; i < n; i++) {
      offsets[i] = i * size
      lengths[i] = i === n - 1 ? 700 : size // a train may end with a shorter datagram
      buf.fill(i & 255, i * size, i * size + (lengths[i] as number))
      buf.writeUInt32BE(i, i * size)
    }
    const results = new Map<UdpSocket, string[]>()
    let insideSlots = 0
    for (const rx of [rxGro, rxPlain]) {
      const seen: string[] = []
      results.set(rx, seen)
      rx.onDatagrams((b, offs, lens, addrs, count) => {
        for (let i = 0; i < count; i++) {
          const off = offs[i] as number
          // a datagram that does not start a slot was cut out of a GRO train
          if (off % rx.slotSize !== 0) insideSlots++
          const seq = b.readUInt32BE(off)
          const len = lens[i] as number
          const intact = len === lengths[seq] && b[off + len - 1] === (seq & 255)
          seen.push(`${seq}:${intact ? 'ok' : `bad(${len})`}:${formatAddr(addrs, i) === `127.0.0.1:${tx.localPort}`}`)
        }
      })
      const dest = new Uint8Array(ADDR_BYTES)
      encodeAddr(dest, 0, '127.0.0.1', rx.localPort)
      assert.equal(tx.sendBatch(buf, offsets, lengths, dest, n), n)
    }
    await waitFor(() => [...results.values()].every((s) => s.length >= n), 5000, 'both receivers')
    const want = Array.from({ length: n }, (_, i) => `${i}:ok:true`)
    assert.deepEqual(results.get(rxGro), want)
    assert.deepEqual(results.get(rxPlain), want)
    const txs = tx.stats()
    assert.equal(txs.txPackets, 2 * n)
    // 100 datagrams of 1420 bytes fit in 3 trains (at most 64 segments and 65507 bytes each)
    assert.ok(txs.txGsoSends >= 2 && txs.txGsoSends <= 6, JSON.stringify(txs))
    assert.ok(insideSlots > 0, 'the GRO receiver got trains')
  })

  it('a batch to many destinations goes to each, with one record per datagram', async () => {
    const tx = bind({ address: '127.0.0.1', gso: true })
    const rxs = [bind({ address: '127.0.0.1', slotSize: 2048 }), bind({ address: '127.0.0.1', slotSize: 2048 })]
    const counts = [0, 0]
    rxs.forEach((rx, k) => rx.onDatagrams((_b, _o, _l, _a, count) => (counts[k] = (counts[k] as number) + count)))
    const n = 64
    const buf = Buffer.alloc(n * 100)
    const offsets = Uint32Array.from({ length: n }, (_, i) => i * 100)
    const lengths = new Uint32Array(n).fill(100)
    const addrs = new Uint8Array(n * ADDR_BYTES)
    for (let i = 0; i < n; i++) encodeAddr(addrs, i, '127.0.0.1', (rxs[i % 2] as UdpSocket).localPort)
    assert.equal(tx.sendBatch(buf, offsets, lengths, addrs, n), n)
    await waitFor(() => counts[0] === 32 && counts[1] === 32, 5000, '32 datagrams at each receiver')
  })

  for (const recvErr of [true, false]) {
    it(`keeps receiving after ICMP port-unreachable errors (recvErr ${recvErr})`, async () => {
      const rx = bind({ address: '127.0.0.1', recvErr, slotSize: 2048 })
      const tx = bind({ address: '127.0.0.1' })
      const closed = UdpSocket.bind({ address: '127.0.0.1' })
      const closedPort = closed.localPort
      closed.close()
      let received = 0
      rx.onDatagrams((_b, _o, _l, _a, count) => (received += count))
      const probe = Buffer.from('nobody listens')
      const data = Buffer.alloc(100)
      const rxDest = new Uint8Array(ADDR_BYTES)
      encodeAddr(rxDest, 0, '127.0.0.1', rx.localPort)
      for (let round = 0; round < 20; round++) {
        assert.ok(rx.sendTo(probe, '127.0.0.1', closedPort))
        await new Promise((r) => setTimeout(r, 2))
        for (let i = 0; i < 50; i++) tx.send(data, 0, data.length, rxDest, 0)
        await waitFor(() => received === (round + 1) * 50, 5000, `round ${round} of datagrams after an ICMP error`)
      }
      const s = rx.stats()
      if (recvErr) {
        assert.ok(s.icmpErrors >= 1, JSON.stringify(s))
        assert.ok(s.pollRestarts >= 1, JSON.stringify(s))
        assert.equal(s.lastIcmpErrno, 111) // ECONNREFUSED
      }
      assert.equal(s.rxPackets, 1000)
    })
  }

  it('lets a handler replace itself, or close the socket, from inside a batch', async () => {
    const rx = bind({ address: '127.0.0.1', slotSize: 2048, batchSize: 4 })
    const tx = bind({ address: '127.0.0.1' })
    const seen: string[] = []
    rx.onDatagrams((_b, _o, _l, _a, count) => {
      seen.push(`first:${count}`)
      rx.onDatagrams((_b2, _o2, _l2, _a2, c) => {
        seen.push(`second:${c}`)
        if (seen.length === 3) rx.close()
      })
    })
    const dest = new Uint8Array(ADDR_BYTES)
    encodeAddr(dest, 0, '127.0.0.1', rx.localPort)
    const n = 14
    assert.equal(tx.sendBatch(Buffer.alloc(n * 10), Uint32Array.from({ length: n }, (_, i) => i * 10), new Uint32Array(n).fill(10), dest, n), n)
    await waitFor(() => rx.closed, 5000, 'the handler to close the socket')
    await new Promise((r) => setTimeout(r, 20))
    assert.deepEqual(seen, ['first:4', 'second:4', 'second:4'])
  })

  it('counts, rather than throws, datagrams it cannot send', () => {
    const v4 = bind({ address: '127.0.0.1' })
    const rec = new Uint8Array(ADDR_BYTES)
    encodeAddr(rec, 0, '::1', 9)
    assert.equal(v4.send(Buffer.alloc(10), 0, 10, rec, 0), false)
    assert.equal(v4.sendBatch(Buffer.alloc(10), Uint32Array.of(0), Uint32Array.of(10), new Uint8Array(ADDR_BYTES), 1), 1)
    const s = v4.stats()
    assert.equal(s.txErrors, 2)
    assert.equal(s.txPackets, 0)
    assert.throws(() => v4.sendBatch(Buffer.alloc(10), Uint32Array.of(5), Uint32Array.of(10), rec, 1), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => v4.sendBatch(Buffer.alloc(10), Uint32Array.of(0), Uint32Array.of(10), new Uint8Array(ADDR_BYTES * 2), 3), { code: 'ERR_INVALID_ARGUMENT' })
  })

  it('encodes and decodes address records', () => {
    const recs = new Uint8Array(3 * ADDR_BYTES)
    encodeAddr(recs, 0, '192.0.2.7', 51820)
    encodeAddr(recs, 1, 'fd00::1:2', 1)
    encodeAddr(recs, 2, 'fe80::1%3', 65535)
    assert.deepEqual([...recs.subarray(0, ADDR_BYTES)], [192, 0, 2, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xca, 0x6c, 4, 0, 0, 0, 0, 0])
    assert.equal(formatAddr(recs, 0), '192.0.2.7:51820')
    assert.equal(formatAddr(recs, 1), '[fd00::1:2]:1')
    assert.equal(formatAddr(recs, 2), '[fe80::1%3]:65535')
    assert.deepEqual(decodeAddr(recs, 1), { address: 'fd00::1:2', port: 1, family: 6, scopeId: 0 })
    assert.equal(decodeAddr(new Uint8Array(ADDR_BYTES), 0), undefined)
    assert.throws(() => encodeAddr(recs, 0, '192.0.2.300', 1), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => encodeAddr(recs, 0, '192.0.2.1', 70000), { code: 'ERR_INVALID_ARGUMENT' })
    assert.throws(() => encodeAddr(recs, 3, '192.0.2.1', 1), { code: 'ERR_INVALID_ARGUMENT' })
  })

  it('stops reading on close and when the handler is removed; delivers while unref()ed', async () => {
    const rx = bind({ address: '127.0.0.1', slotSize: 2048 })
    const tx = bind({ address: '127.0.0.1' })
    let n = 0
    rx.onDatagrams((_b, _o, _l, _a, count) => (n += count))
    rx.unref()
    tx.sendTo(Buffer.from('1'), '127.0.0.1', rx.localPort)
    await waitFor(() => n === 1, 5000, 'a datagram on an unref()ed socket')
    rx.ref()
    rx.onDatagrams(null)
    tx.sendTo(Buffer.from('2'), '127.0.0.1', rx.localPort)
    await new Promise((r) => setTimeout(r, 50))
    assert.equal(n, 1)
    rx.close()
    rx.close()
    assert.equal(rx.fd, -1)
    assert.equal(rx.send(Buffer.from('x'), 0, 1, new Uint8Array(ADDR_BYTES), 0), false)
    assert.throws(() => rx.stats(), /closed/)
  })
})
