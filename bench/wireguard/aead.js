#!/usr/bin/env node
// Transport AEAD cost per message: node:crypto one call per message (Keypair.sealTransport /
// openTransport) against the addon's sealBatch/openBatch over batches of 64 (one OpenSSL context
// for all of them). One core, no I/O: the figure is crypto plus per-call overhead.
//
//   node bench/wireguard/aead.js [--size 1400] [--seconds 1]
//
// Needs the addon: run npm run setup first.
import { Keypair, transportAead, sealBatchFallback, openBatchFallback } from '../../packages/wireguard/dist/src/index.js'

const arg = (name, dflt) => {
  const i = process.argv.indexOf(name)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const SIZE = arg('--size', 1400)
const SECONDS = arg('--seconds', 1)
const BATCH = 64
const SLOT = SIZE + 64

const key = Buffer.alloc(32, 7)
const buf = Buffer.alloc(BATCH * SLOT)
const out = Buffer.alloc(BATCH * SLOT)
const offsets = new Uint32Array(BATCH).map((_, i) => i * SLOT)
const lengths = new Uint32Array(BATCH).fill(SIZE)
const msgLengths = new Uint32Array(BATCH).fill(SIZE + 32)
const outOffsets = offsets.slice()
const results = new Int32Array(BATCH)

function measure(name, perCall, fn) {
  const warm = performance.now() + 200
  while (performance.now() < warm) fn()
  let calls = 0
  const start = performance.now()
  const end = start + SECONDS * 1000
  while (performance.now() < end) {
    for (let i = 0; i < 16; i++) fn()
    calls += 16
  }
  const ns = ((performance.now() - start) * 1e6) / (calls * perCall)
  console.log(`${name.padEnd(48)} ${ns.toFixed(0).padStart(6)} ns/message  ${((SIZE * 8) / ns).toFixed(2).padStart(6)} Gbit/s`)
}

const aead = transportAead()
const send = new Keypair({ sendKey: key, receiveKey: key, localIndex: 1, remoteIndex: 2, created: 0, isInitiator: true })
const recv = new Keypair({ sendKey: key, receiveKey: key, localIndex: 2, remoteIndex: 1, created: 0, isInitiator: false })
console.log(`${SIZE}-byte messages, batches of ${BATCH}; addon AEAD: ${aead.native ? 'yes' : 'NO (fallback measured twice)'}`)

measure('seal: node:crypto, one call per message', 1, () => {
  send.sealTransport(buf, 16, SIZE, buf, 0)
})
measure('seal: fallback batch (node:crypto per message)', BATCH, () => {
  sealBatchFallback(key, 0, 0, 2, buf, offsets, lengths, BATCH)
})
measure('seal: addon sealBatch', BATCH, () => {
  aead.seal(key, 0, 0, 2, buf, offsets, lengths, BATCH)
})

// Valid messages to open (the replay window is left out: it is the same work either way).
aead.seal(key, 0, 0, 1, buf, offsets, lengths, BATCH)
measure('open: node:crypto, one call per message', 1, () => {
  recv.replay.reset()
  recv.openTransport(buf, 0, SIZE + 32, out, 0)
})
measure('open: fallback batch (node:crypto per message)', BATCH, () => {
  openBatchFallback(key, null, buf, offsets, msgLengths, BATCH, out, outOffsets, results)
})
measure('open: addon openBatch', BATCH, () => {
  aead.open(key, null, buf, offsets, msgLengths, BATCH, out, outOffsets, results)
})
if (results.some((r) => r !== SIZE)) throw new Error('a message did not authenticate')
