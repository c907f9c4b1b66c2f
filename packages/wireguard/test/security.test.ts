/**
 * The flatnet userspace interface under attack. The victim (wg-node.js, so its drop counters
 * and memory can be read) runs in one network namespace; the attacker's namespace holds a
 * hand-driven peer (wg-peer-worker.js: the package's own handshake and session code over a raw
 * UDP socket, so every byte the victim sees is chosen) and a wireguard-go peer as a stock
 * bystander. What reaches the victim's TUN is read from the kernel's side: the link's RX
 * counter and ICMP InEchos of the victim's namespace.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generatePrivateKeyBase64, publicKeyFromPrivateKey } from '../src/index.js'
import { Namespaces, Processes, run, snmpCounter, uniqueName } from './native-harness.js'
import type { RpcClient } from './rpc.js'
import { countLog, linkPackets, ping, startFlatnetNode, startPeerWorker, startWireguardGo, uapi, vethPair, wgSkipReason, type DropStats, type WgNode } from './wg-harness.js'

const UNDERLAY = { victim: '10.78.1.1', attacker: '10.78.1.2' }
const TUNNEL = { victim: '10.78.0.1', worker: '10.78.0.2', wgGo: '10.78.0.3', nobody: '10.78.0.99' }
/** Extra addresses on the attacker's link: handshake floods come from all of them. */
const FLOOD_SOURCES = Array.from({ length: 8 }, (_, i) => `10.78.1.${100 + i}`)
const VICTIM_PORT = 51820
const WG_GO_PORT = 51821
const FUZZ_COUNT = 100_000
const RSS_GROWTH_LIMIT = 20 * 1024 * 1024

type Victim = WgNode & { rpc: RpcClient; stats: () => Promise<DropStats> }

/**
 * The counters of the outside path, one of which every received datagram that is not delivered
 * moves. The inside ones are left out: the victim's own kernel sends IPv6 housekeeping into the
 * TUN that no peer routes (noRoute), whatever the attacker does.
 */
const OUTSIDE = ['malformed', 'badMac1', 'cookieSent', 'rateLimited', 'handshakeRejected', 'unknownIndex', 'expiredSession', 'authFailed', 'replayed', 'sourceNotAllowed']

/** Outside-path counters that moved between two snapshots. */
function delta(after: DropStats, before: DropStats): Record<string, number> {
  const out: Record<string, number> = {}
  for (const k of OUTSIDE) if (after.drops[k] !== before.drops[k]) out[k] = after.drops[k]! - (before.drops[k] ?? 0)
  return out
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

describe('security: a flatnet userspace interface under attack', { skip: wgSkipReason(), timeout: 120_000 }, () => {
  const namespaces = new Namespaces()
  const procs = new Processes()
  const dir = mkdtempSync(join(tmpdir(), 'flatnet-security-'))
  const key = { victim: generatePrivateKeyBase64(), worker: generatePrivateKeyBase64(), wgGo: generatePrivateKeyBase64() }
  const pub = { victim: publicKeyFromPrivateKey(key.victim), worker: publicKeyFromPrivateKey(key.worker), wgGo: publicKeyFromPrivateKey(key.wgGo) }
  const name = { victim: uniqueName('fnt'), wgGo: uniqueName('fng') }
  let ns = { victim: '', attacker: '' }
  let victim: Victim
  let wgGo: WgNode
  let worker: RpcClient
  let seq = 0

  /** Kernel-side view of what came out of the victim's TUN device. */
  const tunSeen = async (): Promise<{ rx: number; echos: number }> => ({
    rx: (await linkPackets(ns.victim, name.victim)).rx,
    echos: await snmpCounter(ns.victim, 'Icmp', 'InEchos'),
  })
  const workerPing = (src: string, timeoutMs = 2000): Promise<{ replied: boolean; ms: number; datagram: string }> =>
    worker.call('ping', { src, dst: TUNNEL.victim, id: 0x4242, seq: ++seq, timeoutMs }, timeoutMs + 5000)

  before(async () => {
    ns = { victim: await namespaces.create(), attacker: await namespaces.create() }
    await vethPair(ns.victim, `${UNDERLAY.victim}/24`, ns.attacker, `${UNDERLAY.attacker}/24`)
    const veth = JSON.parse((await run('ip', ['-n', ns.attacker, '-j', 'address', 'show', 'to', `${UNDERLAY.attacker}/32`])).stdout) as { ifname: string }[]
    for (const a of FLOOD_SOURCES) await run('ip', ['-n', ns.attacker, 'address', 'add', `${a}/32`, 'dev', veth[0]!.ifname])
    victim = await startFlatnetNode(procs, ns.victim, {
      name: name.victim,
      privateKey: key.victim,
      listenPort: VICTIM_PORT,
      address: `${TUNNEL.victim}/24`,
      peers: [
        { publicKey: pub.worker, allowedIps: [`${TUNNEL.worker}/32`] },
        { publicKey: pub.wgGo, allowedIps: [`${TUNNEL.wgGo}/32`], endpoint: `${UNDERLAY.attacker}:${WG_GO_PORT}` },
      ],
    })
    wgGo = await startWireguardGo(procs, ns.attacker, {
      name: name.wgGo,
      privateKey: key.wgGo,
      listenPort: WG_GO_PORT,
      address: `${TUNNEL.wgGo}/24`,
      peers: [{ publicKey: pub.victim, allowedIps: [`${TUNNEL.victim}/32`], endpoint: `${UNDERLAY.victim}:${VICTIM_PORT}` }],
    }, dir)
    worker = startPeerWorker(procs, ns.attacker).rpc
    await worker.call('setup', { privateKey: key.worker, victimPublicKey: pub.victim, victimHost: UNDERLAY.victim, victimPort: VICTIM_PORT, bindHost: UNDERLAY.attacker })
  })

  after(async () => {
    for (const n of [victim, wgGo]) await n?.stop().catch((e: unknown) => console.error(e))
    await procs.stopAll()
    await namespaces.cleanup()
    for (const n of Object.values(name)) rmSync(`/var/run/wireguard/${n}.sock`, { force: true })
    rmSync(dir, { recursive: true, force: true })
  })

  it('the test-side peer completes a handshake and its packet reaches the TUN (the baseline)', async (t) => {
    const hs = await worker.call<{ ms: number; cookieReplies: number }>('handshake', { timeoutMs: 5000 })
    const before = await tunSeen()
    const p = await workerPing(TUNNEL.worker)
    assert.ok(p.replied, 'echo reply through the tunnel')
    const seen = await tunSeen()
    assert.deepEqual([seen.rx - before.rx, seen.echos - before.echos], [1, 1])
    t.diagnostic(`handshake in ${hs.ms} ms, echo round trip ${p.ms} ms`)
  })

  it('drops a replayed data packet: counted as replayed, nothing reaches the TUN', async (t) => {
    const p = await workerPing(TUNNEL.worker)
    assert.ok(p.replied)
    const s0 = await victim.stats()
    const tun0 = await tunSeen()
    await worker.call('resend', { datagram: p.datagram, times: 5 })
    const again = await worker.call<boolean>('awaitEchoReply', { from: TUNNEL.victim, id: 0x4242, seq, timeoutMs: 500 })
    const s1 = await victim.stats()
    const tun1 = await tunSeen()
    assert.equal(again, false, 'no second echo reply')
    assert.deepEqual(delta(s1, s0), { replayed: 5 })
    assert.deepEqual([tun1.rx - tun0.rx, tun1.echos - tun0.echos], [0, 0])
    assert.ok((await workerPing(TUNNEL.worker)).replied, 'the session itself is unharmed')
    t.diagnostic(`5 replays of a captured ${Buffer.from(p.datagram, 'base64').length}-byte transport message: drops ${JSON.stringify(delta(s1, s0))}, TUN rx +0`)
  })

  it("drops packets from a legitimate peer whose inner source is outside that peer's AllowedIPs", async (t) => {
    const s0 = await victim.stats()
    const tun0 = await tunSeen()
    // Another peer's address (wireguard-go's), then an address no peer has.
    const spoofed = [await workerPing(TUNNEL.wgGo, 500), await workerPing(TUNNEL.nobody, 500)]
    const s1 = await victim.stats()
    const tun1 = await tunSeen()
    assert.deepEqual(spoofed.map((p) => p.replied), [false, false])
    assert.deepEqual(delta(s1, s0), { sourceNotAllowed: 2 })
    assert.deepEqual([tun1.rx - tun0.rx, tun1.echos - tun0.echos], [0, 0])
    assert.ok((await workerPing(TUNNEL.worker)).replied, 'its own address still gets through')
    t.diagnostic(`inner sources ${TUNNEL.wgGo} and ${TUNNEL.nobody} from the peer owning ${TUNNEL.worker}/32: drops ${JSON.stringify(delta(s1, s0))}, TUN rx +0`)
  })

  it('answers nothing to an initiation from an unknown key, nor to one with a bad mac1', async (t) => {
    const s0 = await victim.stats()
    const r = await worker.call<Record<string, { mac1Valid: boolean; answers: number }>>('strangers', { waitMs: 1000 }, 10_000)
    const s1 = await victim.stats()
    assert.deepEqual(r, { unknownKey: { mac1Valid: true, answers: 0 }, badMac1: { mac1Valid: false, answers: 0 } })
    assert.deepEqual(delta(s1, s0), { handshakeRejected: 1, badMac1: 1 })
    t.diagnostic(`no datagram back within 1 s for either; drops ${JSON.stringify(delta(s1, s0))}`)
  })

  it(`survives ${FUZZ_COUNT.toLocaleString('en')} random, truncated and bit-flipped datagrams: no crash, no answer, no leak, tunnel intact`, async (t) => {
    const endpointBefore = (await uapi(name.victim)).peers.find((p) => p.publicKey === pub.worker)!.endpoint
    const s0 = await victim.stats()
    const rcvbuf0 = await snmpCounter(ns.victim, 'Udp', 'RcvbufErrors')
    const seed = Math.floor(Math.random() * 2 ** 31)
    const f = await worker.call<{
      sent: number
      sendMs: number
      kinds: Record<string, number>
      validMac1: number
      initiationSender: number
      replies: { type: number; length: number; receiver: number }[]
    }>('fuzz', { count: FUZZ_COUNT, seed, ratePerSec: 50_000, graceMs: 500 }, 60_000)
    const s1 = await victim.stats()
    const rcvbuf1 = await snmpCounter(ns.victim, 'Udp', 'RcvbufErrors')
    assert.equal(victim.child.exitCode, null, 'the victim is still running')
    const d = delta(s1, s0)
    const counted = Object.values(d).reduce((a, b) => a + b, 0)
    const kernelDropped = rcvbuf1 - rcvbuf0
    // Every datagram is either dropped by the kernel (socket buffer full) or counted exactly once.
    assert.equal(counted + kernelDropped, f.sent, `seed ${seed}: drops ${JSON.stringify(d)}, kernel ${kernelDropped}`)
    // The only answers allowed are cookie replies to the copies of the captured initiation whose
    // flips left mac1 intact, when they came fast enough to put the victim under load.
    const bad = f.replies.filter((r) => !(r.type === 3 && r.length === 64 && r.receiver === f.initiationSender))
    assert.deepEqual(bad, [], `seed ${seed}: answers to garbage`)
    assert.ok(f.replies.length <= f.validMac1 && f.replies.length === (d.cookieSent ?? 0), `seed ${seed}: ${f.replies.length} cookie replies, ${f.validMac1} valid mac1`)
    const growth = s1.rss - s0.rss
    assert.ok(growth < RSS_GROWTH_LIMIT, `RSS grew by ${(growth / 1048576).toFixed(1)} MiB`)
    // Garbage from another socket must not have moved the peer's endpoint.
    assert.equal((await uapi(name.victim)).peers.find((p) => p.publicKey === pub.worker)!.endpoint, endpointBefore)
    assert.ok((await workerPing(TUNNEL.worker)).replied, 'the test-side peer still gets through')
    const viaWgGo = await ping(ns.attacker, TUNNEL.victim, 3, 5)
    assert.equal(viaWgGo.received, 3, `wireguard-go still gets through: ${viaWgGo.text}`)
    t.diagnostic(
      `seed ${seed}: sent ${f.sent} in ${f.sendMs} ms (${JSON.stringify(f.kinds)}, ${f.validMac1} with a valid mac1); ` +
        `victim counted ${counted} ${JSON.stringify(d)}, kernel dropped ${kernelDropped}; answers ${f.replies.length} (cookie replies); ` +
        `RSS ${(s0.rss / 1048576).toFixed(1)} -> ${(s1.rss / 1048576).toFixed(1)} MiB, heap ${(s0.heapUsed / 1048576).toFixed(1)} -> ${(s1.heapUsed / 1048576).toFixed(1)} MiB`,
    )
  })

  it('under a handshake flood sends cookie replies, and peers that answer them with mac2 (test-side and wireguard-go) still complete handshakes', async (t) => {
    // Let any load state from earlier tests lapse, so the flood is what engages cookies.
    await sleep(1100)
    const s0 = await victim.stats()
    // Long enough for wireguard-go, which answers a cookie only with its next retry (REKEY_TIMEOUT, 5 s, later).
    const flood = worker
      .call<{ sent: number; sockets: number; startedAt: number; endedAt: number; cookieReplies: number; otherReplies: number }>(
        'flood',
        { count: 48_000, durationMs: 8000, sources: FLOOD_SOURCES, socketsPerSource: 4 },
        30_000,
      )
      .then((r) => ({ ...r, resolvedAt: Date.now() }))
    await sleep(600)
    const log0 = { cookies: countLog(wgGo, /Receiving cookie response/), initiations: countLog(wgGo, /Sending handshake initiation/) }
    // wireguard-go starts afresh with the victim: its next packet needs a new handshake.
    await run('ip', ['netns', 'exec', ns.attacker, 'wg', 'set', name.wgGo, 'peer', pub.victim, 'remove'])
    await run('ip', ['netns', 'exec', ns.attacker, 'wg', 'set', name.wgGo, 'peer', pub.victim, 'endpoint', `${UNDERLAY.victim}:${VICTIM_PORT}`, 'allowed-ips', `${TUNNEL.victim}/32`])
    const [hs, viaWgGo] = await Promise.all([
      worker.call<{ ms: number; at: number; attempts: number; cookieReplies: number; usedMac2: boolean }>('handshake', { timeoutMs: 3000, retryMs: 1000 }),
      ping(ns.attacker, TUNNEL.victim, 1, 9).then((r) => ({ ...r, at: Date.now() })),
    ])
    const f = await flood
    const s1 = await victim.stats()
    const d = delta(s1, s0)
    const log1 = { cookies: countLog(wgGo, /Receiving cookie response/), initiations: countLog(wgGo, /Sending handshake initiation/) }
    assert.ok(hs.cookieReplies >= 1 && hs.usedMac2, `the test-side handshake had to answer a cookie: ${JSON.stringify(hs)}`)
    assert.ok(hs.at < f.endedAt, 'the test-side handshake completed while the flood went on')
    assert.equal(viaWgGo.received, 1, `wireguard-go got through: ${viaWgGo.text}\n${wgGo.child.output().slice(-3000)}`)
    assert.ok(log1.cookies > log0.cookies && log1.initiations - log0.initiations >= 2, `wireguard-go took a cookie and retried: ${JSON.stringify([log0, log1])}`)
    // The worker resolves the flood 300 ms after its last datagram.
    assert.ok(viaWgGo.at < f.resolvedAt - 300, 'wireguard-go got through while the flood went on')
    assert.ok((d.cookieSent ?? 0) > 0 && f.cookieReplies > 0, JSON.stringify(d))
    assert.equal(f.otherReplies, 0, 'the flood got nothing but cookie replies')
    assert.ok((await workerPing(TUNNEL.worker)).replied, 'data flows on the session made during the flood')
    t.diagnostic(
      `flood: ${f.sent} initiations with valid mac1 from ${f.sockets} sockets on ${FLOOD_SOURCES.length} addresses in ${Math.round(f.endedAt - f.startedAt)} ms; ` +
        `${f.cookieReplies} cookie replies received; victim drops ${JSON.stringify(d)}, RSS ${(s0.rss / 1048576).toFixed(1)} -> ${(s1.rss / 1048576).toFixed(1)} MiB; ` +
        `test-side handshake in ${hs.ms} ms (${hs.attempts} initiations, ${hs.cookieReplies} cookie reply); ` +
        `wireguard-go: ${log1.initiations - log0.initiations} initiations, ${log1.cookies - log0.cookies} cookie reply taken, ping answered ${f.resolvedAt - 300 - viaWgGo.at} ms before the flood ended`,
    )
  })
})
