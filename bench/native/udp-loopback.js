#!/usr/bin/env node
// UDP on loopback, 1420-byte datagrams (a WireGuard packet at MTU 1380 + overhead, roughly), one
// process doing both ends on one event loop, as the data plane does: the addon's
// sendmmsg/recvmmsg, the same with UDP GSO/GRO, and node:dgram. Both ends share one core, so the
// figure is the per-datagram cost of send + receive together, not link speed.
//
//   node bench/native/udp-loopback.js [--seconds 1.5]   (per variant; ~5 s in all)
//
// Needs the addon: run npm run setup first.
import dgram from 'node:dgram'
import { once } from 'node:events'
import { ADDR_BYTES, encodeAddr, UdpSocket } from '../../packages/wireguard/dist/src/index.js'

const SIZE = 1420
const BATCH = 64
/** Datagrams in flight at most: keeps the receive buffer from overflowing, so every variant
 * counts delivered datagrams, not drops. */
const WINDOW = 1024
const argSeconds = process.argv.indexOf('--seconds')
const SECONDS = argSeconds > 0 ? Number(process.argv[argSeconds + 1]) : 1.5
const WARMUP_MS = 200

const tick = () => new Promise((resolve) => setImmediate(resolve))

/** Drives `sendSome()` while fewer than WINDOW datagrams are in flight, for warmup + SECONDS. */
async function drive(name, counters, sendSome) {
  const start = performance.now()
  let measureFrom = 0
  let measured = 0
  for (;;) {
    const now = performance.now()
    if (!measureFrom && now - start >= WARMUP_MS) {
      measureFrom = now
      measured = counters.received
    }
    if (measureFrom && now - measureFrom >= SECONDS * 1000) {
      const n = counters.received - measured
      const secs = (now - measureFrom) / 1000
      return { name, dps: n / secs, gbps: (n * SIZE * 8) / secs / 1e9 }
    }
    if (counters.sent - counters.received < WINDOW) sendSome()
    await tick()
  }
}

async function nativeVariant(name, txOpts, rxOpts) {
  const rx = UdpSocket.bind({ address: '127.0.0.1', batchSize: BATCH, ...rxOpts })
  const tx = UdpSocket.bind({ address: '127.0.0.1', ...txOpts })
  const counters = { sent: 0, received: 0 }
  rx.onDatagrams((_buf, _offsets, _lengths, _addrs, count) => {
    counters.received += count
  })
  const buf = Buffer.alloc(BATCH * SIZE, 0x5a)
  const offsets = Uint32Array.from({ length: BATCH }, (_, i) => i * SIZE)
  const lengths = new Uint32Array(BATCH).fill(SIZE)
  const dest = new Uint8Array(ADDR_BYTES)
  encodeAddr(dest, 0, '127.0.0.1', rx.localPort)
  try {
    const result = await drive(name, counters, () => {
      counters.sent += tx.sendBatch(buf, offsets, lengths, dest, BATCH)
    })
    result.gsoSends = tx.stats().txGsoSends
    return result
  } finally {
    rx.close()
    tx.close()
  }
}

async function dgramVariant() {
  const rx = dgram.createSocket({ type: 'udp4', recvBufferSize: 7 << 20 })
  const tx = dgram.createSocket({ type: 'udp4', sendBufferSize: 7 << 20 })
  rx.bind(0, '127.0.0.1')
  await once(rx, 'listening')
  const port = rx.address().port
  const counters = { sent: 0, received: 0 }
  rx.on('message', () => {
    counters.received++
  })
  const payload = Buffer.alloc(SIZE, 0x5a)
  try {
    return await drive('node:dgram', counters, () => {
      for (let i = 0; i < BATCH; i++) tx.send(payload, port, '127.0.0.1')
      counters.sent += BATCH
    })
  } finally {
    rx.close()
    tx.close()
  }
}

const deadline = setTimeout(() => {
  console.error('benchmark did not finish in time')
  process.exit(1)
}, (SECONDS * 3 + 10) * 1000)

const results = []
results.push(await nativeVariant('addon sendmmsg/recvmmsg', {}, { slotSize: 2048 }))
results.push(await nativeVariant('addon + UDP GSO/GRO', { gso: true }, { gro: true }))
results.push(await dgramVariant())
clearTimeout(deadline)

console.log(`UDP loopback, ${SIZE}-byte datagrams, both ends in one process, ${SECONDS} s per variant`)
for (const r of results) {
  const extra = r.gsoSends ? `  (${r.gsoSends} GSO sends)` : ''
  console.log(`${r.name.padEnd(26)} ${Math.round(r.dps).toLocaleString('en-US').padStart(11)} datagrams/s ${r.gbps.toFixed(2).padStart(6)} Gbit/s${extra}`)
}
