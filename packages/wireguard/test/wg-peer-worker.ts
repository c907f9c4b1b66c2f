/**
 * A hand-driven WireGuard peer and attacker for security.test.ts, run inside the attacker's
 * network namespace. It speaks the protocol with the package's own handshake and session code
 * over a plain UDP socket, so the test decides byte by byte what the victim receives: a
 * legitimate session, then replays, forged inner sources, strangers' handshakes, garbage and
 * floods. Driven over the line protocol of rpc.ts; all times are this process's
 * performance.now(), so results of concurrent calls can be ordered.
 */
import { randomFillSync } from 'node:crypto'
import { createSocket, type Socket } from 'node:dgram'
import {
  beginSymmetricSession,
  constantTimeEqual,
  consumeResponse,
  createInitiation,
  HandshakeState,
  IndexTable,
  isZero,
  keyFromBase64,
  Keypairs,
  mac,
  mac1Key,
  macInto,
  MESSAGE_COOKIE_REPLY_SIZE,
  MESSAGE_COOKIE_REPLY_TYPE,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_TYPE,
  MESSAGE_TRANSPORT_TYPE,
  messageType,
  readTransportReceiver,
  StaticIdentity,
  transportPaddingSize,
} from '../src/index.js'
import { seededRandom } from '@flatnet/core'
import { inetChecksum } from './native-harness.js'
import { serveRpc } from './rpc.js'

const MAC1_AT = 116
const MAC2_AT = 132

interface Victim {
  readonly host: string
  readonly port: number
  readonly publicKey: Buffer
  readonly mac1Key: Buffer
}

let victim: Victim
let identity: StaticIdentity
let hs: HandshakeState<string>
let bindHost = '0.0.0.0'
let sock: Socket
const table = new IndexTable<string>()
const keypairs = new Keypairs((kp) => {
  table.delete(kp.localIndex)
  kp.wipe()
})

/** What went over the wire, kept as sent or received: replay material and fuzz seeds. */
const captured = { initiation: null as Buffer | null, response: null as Buffer | null, transports: [] as Buffer[], inbound: [] as Buffer[] }
const keepLast = (list: Buffer[], b: Buffer, n = 8): void => {
  list.push(Buffer.from(b))
  if (list.length > n) list.shift()
}

/** Decrypted inner packets from the victim, and who waits for them. */
const inbox: Buffer[] = []
const inboxWaiters = new Set<() => void>()
let handshakeEvent: ((ev: 'response' | 'cookie') => void) | undefined

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

function bind(host: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    s.once('error', reject)
    s.bind(0, host, () => {
      s.removeListener('error', reject)
      s.on('error', () => undefined)
      resolve(s)
    })
  })
}

function sendOn(s: Socket, msg: Uint8Array): Promise<void> {
  return new Promise((resolve) => s.send(msg, victim.port, victim.host, () => resolve()))
}

function onMessage(msg: Buffer): void {
  const now = performance.now()
  const type = messageType(msg)
  if (type === MESSAGE_RESPONSE_TYPE) {
    const r = consumeResponse(identity, msg, table)
    if (!r.ok) return
    const kp = beginSymmetricSession(r.handshake, table, now)
    if (kp === null) return
    keypairs.insert(kp)
    captured.response = Buffer.from(msg)
    handshakeEvent?.('response')
  } else if (type === MESSAGE_COOKIE_REPLY_TYPE) {
    const entry = table.lookup(readTransportReceiver(msg))
    if (entry?.handshake?.cookieGenerator.consumeReply(msg, now)) handshakeEvent?.('cookie')
  } else if (type === MESSAGE_TRANSPORT_TYPE) {
    const kp = table.lookup(readTransportReceiver(msg))?.keypair
    if (!kp) return
    const out = Buffer.alloc(msg.length)
    const n = kp.openTransport(msg, 0, msg.length, out, 0)
    if (n < 0) return
    keypairs.receivedWith(kp)
    keepLast(captured.inbound, msg)
    if (n === 0) return
    inbox.push(out.subarray(0, n))
    for (const w of inboxWaiters) w()
  }
}

/** Seals `inner` on the current session and sends it; returns the datagram as sent. */
async function sendTransport(inner: Buffer): Promise<Buffer> {
  const kp = keypairs.current
  if (!kp) throw new Error('no session with the victim')
  const pad = inner.length === 0 ? 0 : transportPaddingSize(inner.length, 1420)
  const plain = Buffer.alloc(inner.length + pad)
  inner.copy(plain)
  const out = Buffer.alloc(16 + plain.length + 16)
  const size = kp.sealTransport(plain, 0, plain.length, out, 0)
  const msg = out.subarray(0, size)
  keepLast(captured.transports, msg)
  await sendOn(sock, msg)
  return msg
}

function ipBytes(text: string): number[] {
  return text.split('.').map(Number)
}

/** An IPv4 ICMP echo request with correct checksums. */
function echoRequest(src: string, dst: string, id: number, seq: number): Buffer {
  const p = Buffer.alloc(20 + 8 + 56)
  p[0] = 0x45
  p.writeUInt16BE(p.length, 2)
  p.writeUInt16BE(seq, 4)
  p[8] = 64
  p[9] = 1
  p.set(ipBytes(src), 12)
  p.set(ipBytes(dst), 16)
  p.writeUInt16BE(inetChecksum(p, 0, 20), 10)
  p[20] = 8
  p.writeUInt16BE(id, 24)
  p.writeUInt16BE(seq, 26)
  for (let i = 28; i < p.length; i++) p[i] = i & 0xff
  p.writeUInt16BE(inetChecksum(p, 20, p.length), 22)
  return p
}

function isEchoReply(pkt: Buffer, from: string, id: number, seq: number): boolean {
  if (pkt.length < 28 || pkt[0]! >> 4 !== 4 || pkt[9] !== 1) return false
  const ihl = (pkt[0]! & 15) * 4
  return pkt[ihl] === 0 && pkt.readUInt16BE(ihl + 4) === id && pkt.readUInt16BE(ihl + 6) === seq && pkt.subarray(12, 16).join('.') === from
}

/** Resolves true when an inner packet matching `pred` arrives within `ms` (and takes it). */
function awaitInner(pred: (p: Buffer) => boolean, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const check = (): boolean => {
      const i = inbox.findIndex(pred)
      if (i === -1) return false
      inbox.splice(i, 1)
      finish(true)
      return true
    }
    const finish = (v: boolean): void => {
      clearTimeout(timer)
      inboxWaiters.delete(waiter)
      resolve(v)
    }
    const waiter = (): void => void check()
    const timer = setTimeout(() => finish(false), ms)
    inboxWaiters.add(waiter)
    check()
  })
}

function mac1Valid(msg: Uint8Array): boolean {
  if (msg.length !== MESSAGE_INITIATION_SIZE || msg[0] !== 1 || msg[1] !== 0 || msg[2] !== 0 || msg[3] !== 0) return false
  return constantTimeEqual(mac(victim.mac1Key, msg.subarray(0, MAC1_AT)), msg.subarray(MAC1_AT, MAC2_AT))
}


serveRpc(
  {
    async setup(a: { privateKey: string; victimPublicKey: string; victimHost: string; victimPort: number; bindHost: string }) {
      const pub = keyFromBase64(a.victimPublicKey)
      victim = { host: a.victimHost, port: a.victimPort, publicKey: pub, mac1Key: mac1Key(pub) }
      identity = new StaticIdentity(keyFromBase64(a.privateKey))
      hs = new HandshakeState('victim', pub)
      bindHost = a.bindHost
      sock = await bind(bindHost)
      sock.on('message', onMessage)
      return { port: sock.address().port }
    },

    /**
     * A full handshake as initiator. A cookie reply is answered at once with a new initiation,
     * which then carries mac2 (wireguard-go would wait for its next retry).
     */
    handshake(a: { timeoutMs?: number; retryMs?: number }) {
      const start = performance.now()
      let attempts = 0
      let cookieReplies = 0
      let lastHadMac2 = false
      return new Promise((resolve, reject) => {
        const send = (): void => {
          attempts++
          const msg = createInitiation(identity, hs, table, performance.now())
          if (msg === null) throw new Error('createInitiation refused the victim key')
          lastHadMac2 = !isZero(msg.subarray(MAC2_AT, MAC2_AT + 16))
          captured.initiation = Buffer.from(msg)
          void sendOn(sock, msg)
        }
        const retry = setInterval(send, a.retryMs ?? 1000)
        const overall = setTimeout(() => {
          cleanup()
          reject(new Error(`no handshake within ${a.timeoutMs ?? 5000} ms (${attempts} initiations, ${cookieReplies} cookie replies)`))
        }, a.timeoutMs ?? 5000)
        const cleanup = (): void => {
          clearInterval(retry)
          clearTimeout(overall)
          handshakeEvent = undefined
        }
        handshakeEvent = (ev) => {
          if (ev === 'cookie') {
            cookieReplies++
            send()
            return
          }
          cleanup()
          const at = performance.now()
          // The first transport message confirms the session to the responder.
          void sendTransport(Buffer.alloc(0)).then(() => resolve({ ms: Math.round(at - start), at, attempts, cookieReplies, usedMac2: lastHadMac2 }))
        }
        send()
      })
    },

    /** An echo request from `src` to `dst` through the tunnel; `replied` when the answer came back. */
    async ping(a: { src: string; dst: string; id: number; seq: number; timeoutMs?: number }) {
      const start = performance.now()
      const datagram = await sendTransport(echoRequest(a.src, a.dst, a.id, a.seq))
      const replied = await awaitInner((p) => isEchoReply(p, a.dst, a.id, a.seq), a.timeoutMs ?? 2000)
      return { replied, ms: Math.round(performance.now() - start), datagram: datagram.toString('base64') }
    },

    /** Waits for (another) echo reply with this id and sequence number. */
    awaitEchoReply(a: { from: string; id: number; seq: number; timeoutMs: number }) {
      return awaitInner((p) => isEchoReply(p, a.from, a.id, a.seq), a.timeoutMs)
    },

    /** Sends bytes exactly as given, from the session's own socket (a replay looks like the peer). */
    async resend(a: { datagram: string; times: number }) {
      const msg = Buffer.from(a.datagram, 'base64')
      for (let i = 0; i < a.times; i++) await sendOn(sock, msg)
    },

    /**
     * Initiations the victim must not answer, each from a fresh socket that then listens for
     * `waitMs`: one from a key the victim does not know (valid mac1), one with a broken mac1.
     */
    async strangers(a: { waitMs: number }) {
      const stranger = StaticIdentity.generate()
      const unknown = createInitiation(stranger, new HandshakeState('stranger', victim.publicKey), new IndexTable<string>(), performance.now())!
      const badMac1 = Buffer.from(unknown)
      badMac1[MAC1_AT] = badMac1[MAC1_AT]! ^ 1
      const results: Record<string, { mac1Valid: boolean; answers: number }> = {}
      await Promise.all(
        Object.entries({ unknownKey: unknown, badMac1 }).map(async ([name, msg]) => {
          const s = await bind(bindHost)
          let answers = 0
          s.on('message', () => answers++)
          await sendOn(s, msg)
          await sleep(a.waitMs)
          s.close()
          results[name] = { mac1Valid: mac1Valid(msg), answers }
        }),
      )
      return results
    },

    /**
     * `count` datagrams of garbage, from a socket of their own, paced at `ratePerSec`: random
     * bytes; random bodies behind valid headers (transport ones with the victim's real session
     * index); truncations and bit flips of captured initiation, response and transport messages.
     * Returns what was sent and every datagram that came back.
     */
    async fuzz(a: { count: number; seed: number; ratePerSec: number; graceMs: number }) {
      const rand = seededRandom(a.seed)
      const int = (n: number): number => Math.floor(rand() * n)
      const pool = [captured.initiation, captured.response, ...captured.transports, ...captured.inbound].filter((b): b is Buffer => b !== null)
      const victimIndex = keypairs.current?.remoteIndex
      if (!captured.initiation || victimIndex === undefined || pool.length < 3) throw new Error('fuzz needs a completed handshake and some traffic first')
      const initiationSender = captured.initiation.readUInt32LE(4)
      const s = await bind(bindHost)
      const replies: { type: number; length: number; receiver: number }[] = []
      s.on('message', (m: Buffer) => replies.push({ type: m.length >= 4 ? m.readUInt32LE(0) : -1, length: m.length, receiver: m.length >= 8 ? m.readUInt32LE(4) : -1 }))
      const kinds = { random: 0, large: 0, typed: 0, truncated: 0, flipped: 0 }
      let validMac1 = 0
      const make = (): Buffer => {
        const r = rand()
        if (r < 0.24) {
          kinds.random++
          return randomFillSync(Buffer.allocUnsafe(int(1501)))
        }
        if (r < 0.25) {
          kinds.large++
          const m = randomFillSync(Buffer.allocUnsafe(1501 + int(7500)))
          if (rand() < 0.5) {
            m.writeUInt32LE(MESSAGE_TRANSPORT_TYPE, 0)
            m.writeUInt32LE(victimIndex, 4)
          }
          return m
        }
        if (r < 0.4) {
          kinds.typed++
          const type = 1 + int(4)
          const size = type === 1 ? 148 : type === 2 ? 92 : type === 3 ? MESSAGE_COOKIE_REPLY_SIZE : 32 + 16 * int(90)
          const m = randomFillSync(Buffer.allocUnsafe(size))
          m.writeUInt32LE(type, 0)
          if (type === 4 && rand() < 0.5) m.writeUInt32LE(victimIndex, 4)
          return m
        }
        const src = pool[int(pool.length)]!
        if (r < 0.65) {
          kinds.truncated++
          return Buffer.from(src.subarray(0, int(src.length)))
        }
        kinds.flipped++
        const m = Buffer.from(src)
        // Distinct bits, so that no two flips cancel out into a plain replay.
        const bits = new Set<number>()
        while (bits.size < Math.min(1 + int(3), m.length * 8)) bits.add(int(m.length * 8))
        for (const bit of bits) m[bit >>> 3] = m[bit >>> 3]! ^ (1 << (bit & 7))
        return m
      }
      const start = performance.now()
      const chunk = 256
      for (let sent = 0; sent < a.count; ) {
        const n = Math.min(chunk, a.count - sent)
        const batch: Promise<void>[] = []
        for (let i = 0; i < n; i++) {
          const m = make()
          if (mac1Valid(m)) validMac1++
          batch.push(sendOn(s, m))
        }
        await Promise.all(batch)
        sent += n
        const ahead = start + (sent / a.ratePerSec) * 1000 - performance.now()
        if (ahead > 0) await sleep(ahead)
      }
      const sendMs = performance.now() - start
      await sleep(a.graceMs)
      s.close()
      return { sent: a.count, sendMs: Math.round(sendMs), kinds, validMac1, initiationSender, replies }
    },

    /**
     * Initiation-shaped messages with a valid mac1 for the victim (random everything else, no
     * mac2), from `socketsPerSource` sockets on each of `sources`, spread over `durationMs`.
     * Counts what comes back; a cookie reply is 64 bytes of type 3.
     */
    async flood(a: { count: number; durationMs: number; sources: string[]; socketsPerSource: number }) {
      const sockets: Socket[] = []
      for (const host of a.sources) for (let i = 0; i < a.socketsPerSource; i++) sockets.push(await bind(host))
      let cookieReplies = 0
      let otherReplies = 0
      for (const s of sockets) s.on('message', (m: Buffer) => (m.length === MESSAGE_COOKIE_REPLY_SIZE && messageType(m) === MESSAGE_COOKIE_REPLY_TYPE ? cookieReplies++ : otherReplies++))
      const startedAt = performance.now()
      const tickMs = 10
      let sent = 0
      while (sent < a.count) {
        const due = Math.min(a.count, Math.ceil(((performance.now() - startedAt + tickMs) / a.durationMs) * a.count))
        const batch: Promise<void>[] = []
        for (; sent < due; sent++) {
          const m = randomFillSync(Buffer.allocUnsafe(MESSAGE_INITIATION_SIZE))
          m.writeUInt32LE(1, 0)
          macInto(victim.mac1Key, m, 0, MAC1_AT, m, MAC1_AT)
          m.fill(0, MAC2_AT)
          batch.push(sendOn(sockets[sent % sockets.length]!, m))
        }
        await Promise.all(batch)
        await sleep(tickMs)
      }
      const endedAt = performance.now()
      await sleep(300)
      for (const s of sockets) s.close()
      return { sent, sockets: sockets.length, startedAt, endedAt, cookieReplies, otherReplies }
    },
  },
  () => process.exit(0),
)
