/**
 * Batched transport AEAD (transport-aead.ts): the addon's sealBatch/openBatch against the
 * node:crypto path message for message (same bytes, same verdicts), RFC 8439 A.5 (whose nonce
 * is WireGuard's counter nonce), and transport messages recorded from wireguard-go. Also the
 * Keypair calls a batch needs: counter reservation and the replay check after authentication.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  aeadOpenWords,
  aeadSealWords,
  beginSymmetricSession,
  consumeInitiation,
  createResponse,
  HandshakeState,
  IndexTable,
  Keypair,
  NATIVE_ADDON_PATH,
  nativeBinding,
  openBatchFallback,
  REJECT_AFTER_MESSAGES,
  readTransportCounter,
  readTransportReceiver,
  sealBatchFallback,
  StaticIdentity,
  transportAead,
  type OpenBatch,
  type SealBatch,
} from '../src/index.js'
import { fixedSequence, ipv4Udp, VECTOR_KEYS as K } from './fixtures/vector-keys.js'

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

const binding = ((): ReturnType<typeof nativeBinding> | undefined => {
  try {
    return nativeBinding()
  } catch {
    return undefined
  }
})()
const nativeSeal = binding?.sealBatch
const nativeOpen = binding?.openBatch
const noNative = nativeSeal && nativeOpen ? false : 'the addon is not built, or was built without OpenSSL headers'

interface Impl {
  readonly name: string
  readonly seal: SealBatch
  readonly open: OpenBatch
  readonly skip: string | false
}
const impls: Impl[] = [
  { name: 'node:crypto fallback', seal: sealBatchFallback, open: openBatchFallback, skip: false },
  { name: 'addon', seal: nativeSeal ?? sealBatchFallback, open: nativeOpen ?? openBatchFallback, skip: noNative },
]

/** Messages laid out as a batch: slot i at i * slot, plaintext after a 16-byte header gap. */
function layout(plains: readonly Buffer[], slot = 2048): { buf: Buffer; offsets: Uint32Array; lengths: Uint32Array } {
  const buf = Buffer.alloc(plains.length * slot)
  const offsets = new Uint32Array(plains.length)
  const lengths = new Uint32Array(plains.length)
  plains.forEach((p, i) => {
    offsets[i] = i * slot
    lengths[i] = p.length
    p.copy(buf, i * slot + 16)
  })
  return { buf, offsets, lengths }
}

// RFC 8439 Appendix A.5. Its AD only changes the tag, so the ciphertext must match as is.
const a5 = {
  key: h('1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0'),
  ciphertext: h(`64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2
    4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf
    332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855
    9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4
    b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e
    af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a
    0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10
    49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29
    a6ad5cb4022b02709b`),
  plain: Buffer.from(
    'Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, or obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts as reference material or to cite them other than as /\u201cwork in progress./\u201d',
  ),
}

for (const impl of impls) {
  describe(`batched transport AEAD: ${impl.name}`, { skip: impl.skip }, () => {
    it('reproduces the RFC 8439 A.5 ciphertext under WireGuard\'s counter nonce', () => {
      const { buf, offsets, lengths } = layout([a5.plain])
      assert.equal(impl.seal(a5.key, 0x04030201, 0x08070605, 0xdeadbeef, buf, offsets, lengths, 1), 1)
      const body = buf.subarray(16, 16 + a5.plain.length)
      assert.equal(hex(body), hex(a5.ciphertext))
      const tag = Buffer.alloc(a5.plain.length + 16)
      aeadSealWords(a5.key, 0x04030201, 0x08070605, a5.plain, 0, a5.plain.length, tag, 0)
      assert.equal(hex(buf.subarray(16, 32 + a5.plain.length)), hex(tag), 'tag without AD as node:crypto makes it')
      assert.equal(hex(buf.subarray(0, 16)), '04000000efbeadde0102030405060708', 'type, receiver and counter little-endian')
      const out = Buffer.alloc(a5.plain.length)
      const results = new Int32Array(1)
      assert.equal(impl.open(a5.key, null, buf, offsets, new Uint32Array([32 + a5.plain.length]), 1, out, new Uint32Array([0]), results), 1)
      assert.equal(results[0], a5.plain.length)
      assert.deepEqual(out, a5.plain)
    })

    it('opens wireguard-go\'s transport message and rebuilds ours byte for byte', () => {
      const T = JSON.parse(readFileSync(new URL('../../test/fixtures/wireguard-go-transcript.json', import.meta.url), 'utf8')) as {
        a: Record<'initiation2' | 'transportFromWg' | 'transportToWg', string>
      }
      const us = new StaticIdentity(K.ourPrivate)
      const wg = new StaticIdentity(K.wgPrivate)
      const table = new IndexTable<string>(fixedSequence([K.indexA]))
      const hs = new HandshakeState('wg', wg.publicKey, K.psk)
      assert.ok(consumeInitiation(us, h(T.a.initiation2), () => hs, 0).ok)
      createResponse(hs, table, 0, { ephemeralPrivateKey: K.ephemeralA })
      const kp = beginSymmetricSession(hs, table, 0)!

      const fromWg = h(T.a.transportFromWg)
      const out = Buffer.alloc(fromWg.length + 7)
      const results = new Int32Array(1)
      assert.equal(impl.open(kp.receiveKey, null, fromWg, new Uint32Array([0]), new Uint32Array([fromWg.length]), 1, out, new Uint32Array([7]), results), 1)
      const expected = Buffer.alloc(fromWg.length)
      assert.equal(kp.openTransport(fromWg, 0, fromWg.length, expected, 0), results[0])
      assert.deepEqual(out.subarray(7, 7 + results[0]!), expected.subarray(0, results[0]))

      const packet = ipv4Udp('10.99.0.2', 9000, '10.99.0.1', 7000, Buffer.from(K.payloadToWgA))
      const { buf, offsets, lengths } = layout([packet])
      assert.equal(impl.seal(kp.sendKey, 0, 0, kp.remoteIndex, buf, offsets, lengths, 1), 1)
      assert.equal(hex(buf.subarray(0, 32 + packet.length)), T.a.transportToWg)
    })

    it('gives the same bytes as one node:crypto call per message, across keys, sizes and a counter carry', () => {
      const keys = randomBytes(32 * 3)
      const key = (k: number): Buffer => keys.subarray(k * 32, k * 32 + 32)
      const sizes = [0, 1, 15, 16, 17, 64, 1280, 1420, 1424, 8000, 65535 - 32]
      const plains = Array.from({ length: 40 }, (_, i) => randomBytes(sizes[i % sizes.length]!))
      const { buf, offsets, lengths } = layout(plains, 65536)
      // A run that wraps the low half: ..., 0xffffffff, then 2^32 + 0, ...
      const startLo = 0xffffffff - 5
      const startHi = 7
      assert.equal(impl.seal(key(1), startLo, startHi, 0x01020304, buf, offsets, lengths, plains.length), plains.length)
      plains.forEach((p, i) => {
        const at = offsets[i]!
        const counter = (BigInt(startHi) << 32n) + BigInt(startLo) + BigInt(i)
        assert.equal(readTransportCounter(buf, at), counter)
        assert.equal(readTransportReceiver(buf, at), 0x01020304)
        const want = Buffer.alloc(p.length + 16)
        aeadSealWords(key(1), Number(counter & 0xffffffffn), Number(counter >> 32n), p, 0, p.length, want, 0)
        assert.equal(hex(buf.subarray(at + 16, at + 32 + p.length)), hex(want), `message ${i} (${p.length} bytes)`)
      })

      // Open them all with a key table, some under the wrong key, one tampered, one too short.
      const n = plains.length
      const keyIndex = new Uint8Array(n).fill(1)
      keyIndex[3] = 0
      keyIndex[4] = 2
      const msgLengths = new Uint32Array(n)
      for (let i = 0; i < n; i++) msgLengths[i] = lengths[i]! + 32
      buf[offsets[5]! + 16 + 2]! ^= 1
      msgLengths[6] = 31
      const out = Buffer.alloc(n * 65536, 0xaa)
      const outOffsets = new Uint32Array(n)
      for (let i = 0; i < n; i++) outOffsets[i] = i * 65536
      const results = new Int32Array(n).fill(99)
      const ok = impl.open(keys, keyIndex, buf, offsets, msgLengths, n, out, outOffsets, results)
      const bad = new Set([3, 4, 5, 6])
      assert.equal(ok, n - bad.size)
      plains.forEach((p, i) => {
        if (bad.has(i)) {
          assert.equal(results[i], -1, `message ${i} must not authenticate`)
          const region = out.subarray(outOffsets[i]!, outOffsets[i]! + p.length)
          assert.ok(!region.equals(p) || p.length === 0, `no plaintext of message ${i} is left`)
          return
        }
        assert.equal(results[i], p.length)
        assert.deepEqual(out.subarray(outOffsets[i]!, outOffsets[i]! + p.length), p, `message ${i}`)
        const viaOne = Buffer.alloc(p.length)
        const counterLo = buf.readUInt32LE(offsets[i]! + 8)
        const counterHi = buf.readUInt32LE(offsets[i]! + 12)
        assert.equal(aeadOpenWords(key(1), counterLo, counterHi, buf, offsets[i]! + 16, msgLengths[i]! - 16, viaOne, 0), p.length)
      })
    })

    it('opens in place, over the message itself', () => {
      const k = randomBytes(32)
      const plains = [randomBytes(1400), randomBytes(0), randomBytes(100)]
      const { buf, offsets, lengths } = layout(plains)
      impl.seal(k, 42, 0, 9, buf, offsets, lengths, plains.length)
      const msgLengths = lengths.map((l) => l + 32)
      const outOffsets = offsets.map((o) => o + 16)
      const results = new Int32Array(plains.length)
      assert.equal(impl.open(k, null, buf, offsets, msgLengths, plains.length, buf, outOffsets, results), plains.length)
      plains.forEach((p, i) => assert.deepEqual(buf.subarray(outOffsets[i]!, outOffsets[i]! + p.length), p))
    })
  })
}

describe('the addon\'s batched AEAD', { skip: noNative }, () => {
  it('is what the data path uses', () => {
    assert.equal(transportAead().native, true)
  })

  it('zeroes what it decrypted from a message that did not authenticate', () => {
    const k = randomBytes(32)
    const { buf, offsets, lengths } = layout([randomBytes(256)])
    nativeSeal!(k, 0, 0, 1, buf, offsets, lengths, 1)
    buf[16 + 256 + 3]! ^= 0x80 // the tag
    const out = Buffer.alloc(256, 0xaa)
    const results = new Int32Array(1)
    assert.equal(nativeOpen!(k, null, buf, offsets, new Uint32Array([288]), 1, out, new Uint32Array([0]), results), 0)
    assert.equal(results[0], -1)
    assert.deepEqual(out, Buffer.alloc(256))
  })

  it('refuses arguments that would reach outside the buffers', () => {
    const k = randomBytes(32)
    const buf = Buffer.alloc(100)
    assert.throws(() => nativeSeal!(randomBytes(16), 0, 0, 1, buf, new Uint32Array([0]), new Uint32Array([10]), 1), /key must be 32 bytes/)
    assert.throws(() => nativeSeal!(k, 0, 0, 1, buf, new Uint32Array([0]), new Uint32Array([69]), 1), /does not fit/)
    assert.throws(() => nativeSeal!(k, 2 ** 32, 0, 1, buf, new Uint32Array([0]), new Uint32Array([1]), 1), /counterLo/)
    assert.throws(() => nativeSeal!(k, 0, 0, 1, buf, new Uint32Array([0]), new Uint32Array([1]), 2), /count exceeds/)
    const res = new Int32Array(1)
    assert.throws(() => nativeOpen!(k, null, buf, new Uint32Array([90]), new Uint32Array([20]), 1, buf, new Uint32Array([0]), res), /out of the buffer/)
    assert.throws(() => nativeOpen!(k, null, buf, new Uint32Array([0]), new Uint32Array([100]), 1, Buffer.alloc(67), new Uint32Array([0]), res), /does not fit out/)
    assert.throws(() => nativeOpen!(k, new Uint8Array([1]), buf, new Uint32Array([0]), new Uint32Array([40]), 1, buf, new Uint32Array([0]), res), /past the last key/)
    assert.throws(() => nativeOpen!(Buffer.alloc(40), null, buf, new Uint32Array([0]), new Uint32Array([40]), 1, buf, new Uint32Array([0]), res), /32-byte keys/)
  })

  it('works from worker threads too (a context per thread)', async () => {
    const { Worker } = await import('node:worker_threads')
    const src = `
      const { parentPort, workerData } = require('node:worker_threads')
      const b = require(workerData)
      const buf = Buffer.alloc(64)
      const n = b.sealBatch(Buffer.alloc(32, 1), 0, 0, 1, buf, new Uint32Array([0]), new Uint32Array([8]), 1)
      parentPort.postMessage(n === 1 ? buf.toString('hex') : 'failed')`
    const worker = new Worker(src, { eval: true, workerData: process.env.FLATNET_NATIVE_ADDON || NATIVE_ADDON_PATH })
    const msg = await new Promise<string>((resolve, reject) => {
      worker.once('message', resolve)
      worker.once('error', reject)
    })
    await worker.terminate()
    const { buf, offsets, lengths } = layout([Buffer.alloc(8)], 64)
    nativeSeal!(Buffer.alloc(32, 1), 0, 0, 1, buf, offsets, lengths, 1)
    assert.equal(msg, buf.toString('hex'))
  })
})

describe('Keypair counters for batches', () => {
  const kp = (): Keypair => new Keypair({ sendKey: randomBytes(32), receiveKey: randomBytes(32), localIndex: 1, remoteIndex: 2, created: 0, isInitiator: true })

  it('reserves consecutive counters and carries into the high half', () => {
    const k = kp()
    assert.equal(k.reserveCounters(3), 3)
    assert.deepEqual([k.reservedLo, k.reservedHi], [0, 0])
    assert.equal(k.sendCounter, 3n)
    k.setSendCounter(0xfffffffen)
    assert.equal(k.reserveCounters(5), 5)
    assert.deepEqual([k.reservedLo, k.reservedHi], [0xfffffffe, 0])
    assert.equal(k.sendCounter, 0x100000003n)
    assert.equal(k.reserveCounters(0), 0)
    assert.equal(k.sendCounter, 0x100000003n)
  })

  it('grants no counter at or past REJECT_AFTER_MESSAGES, and only what is left before it', () => {
    const k = kp()
    k.setSendCounter(REJECT_AFTER_MESSAGES - 2n)
    assert.equal(k.reserveCounters(64), 2)
    assert.equal(k.sendCounter, REJECT_AFTER_MESSAGES)
    assert.equal(k.canSend, false)
    assert.equal(k.reserveCounters(1), 0)
    const out = Buffer.alloc(32)
    assert.equal(k.sealTransport(out, 16, 0, out, 0), -1, 'sealTransport sees the same limit')
  })

  it('interleaves with sealTransport without reusing a counter', () => {
    const k = kp()
    const out = Buffer.alloc(32)
    k.sealTransport(out, 16, 0, out, 0)
    assert.equal(k.reserveCounters(10), 10)
    assert.equal(k.reservedLo, 1)
    k.sealTransport(out, 16, 0, out, 0)
    assert.equal(readTransportCounter(out), 11n)
  })

  it('checks the replay window after authentication, once per counter', () => {
    const k = kp()
    const msg = Buffer.alloc(32)
    msg.writeUInt32LE(5, 8)
    assert.equal(k.acceptCounter(msg, 0), true)
    assert.equal(k.acceptCounter(msg, 0), false, 'a replay')
    msg.writeUInt32LE(9000, 8)
    assert.equal(k.acceptCounter(msg, 0), true)
    msg.writeUInt32LE(6, 8)
    assert.equal(k.acceptCounter(msg, 0), false, 'behind the window')
    msg.writeUInt32LE(0, 8)
    msg.writeUInt32LE(1, 12)
    assert.equal(k.acceptCounter(msg, 0), true, 'the high half counts')
  })
})
