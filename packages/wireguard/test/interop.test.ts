/**
 * The flatnet userspace interface (`flatnet wg up`, a child process in its own network
 * namespace) against a stock WireGuard peer — wireguard-go configured with `wg` — and against
 * another flatnet interface. Two namespaces per suite joined by a veth; everything is measured
 * through the UAPI sockets (`wg show` reads them), wireguard-go's verbose log, and a TCP
 * transfer that hashes both ends.
 *
 * Who initiates is forced, not guessed: the side that must not initiate has no endpoint for its
 * peer, so it can only answer, and the endpoint it then shows was learnt from the initiation.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generatePrivateKeyBase64, publicKeyFromPrivateKey } from '../src/index.js'
import { Namespaces, Processes, run, uniqueName } from './native-harness.js'
import {
  countLog,
  ping,
  poll,
  startFlatnetCli,
  startWireguardGo,
  tcpTransfer,
  uapi,
  vethPair,
  wgDump,
  wgSkipReason,
  type NodeConfig,
  type WgNode,
} from './wg-harness.js'

const TRANSFER_BYTES = 100 * 1000 * 1000
// Low enough that the receiving side, which sends little more than TCP ACKs (fewer still
// since offloads coalesce segments), also reaches it during a sub-second transfer.
const REKEY_AFTER_MESSAGES = 200
// Handshakes are at least REKEY_TIMEOUT apart (5 s by the protocol), so the message limit alone
// would give one rekey per transfer at most; 50 ms lets several happen while it runs, even when
// flatnet to flatnet moves the 100 MB in a few hundred milliseconds.
const REKEY_ENV = { FLATNET_WG_TEST_REKEY_AFTER_MESSAGES: String(REKEY_AFTER_MESSAGES), FLATNET_WG_TEST_REKEY_TIMEOUT_MS: '50' }
const UNDERLAY = { f: '10.77.1.1', p: '10.77.1.2' }
const TUNNEL = { f: '10.77.0.1', p: '10.77.0.2' }
const PORT = 51820

const mbitPerS = (bytes: number, ms: number): number => Math.round((bytes * 8) / ms / 1000)

for (const peerKind of ['wireguard-go', 'flatnet'] as const) {
  describe(`interop: flatnet userspace <-> ${peerKind}`, { skip: wgSkipReason({ cli: true }), timeout: 120_000 }, () => {
    const namespaces = new Namespaces()
    const procs = new Processes()
    const dir = mkdtempSync(join(tmpdir(), 'flatnet-interop-'))
    const names: string[] = []
    const key = { f: generatePrivateKeyBase64(), p: generatePrivateKeyBase64() }
    const pub = { f: publicKeyFromPrivateKey(key.f), p: publicKeyFromPrivateKey(key.p) }
    let ns = { f: '', p: '' }
    const nodes: WgNode[] = []

    async function stopPair(): Promise<void> {
      for (const n of nodes.splice(0)) await n.stop()
    }

    /** Fresh processes on both sides; only `initiator` knows where its peer is. */
    async function startPair(initiator: 'flatnet' | 'peer', env: Record<string, string> = {}, presharedKey?: string): Promise<{ f: WgNode; p: WgNode }> {
      await stopPair()
      const name = { f: uniqueName('fnf'), p: uniqueName('fnp') }
      names.push(name.f, name.p)
      const cfgF: NodeConfig = {
        name: name.f,
        privateKey: key.f,
        listenPort: PORT,
        address: `${TUNNEL.f}/24`,
        peers: [{ publicKey: pub.p, presharedKey, allowedIps: [`${TUNNEL.p}/32`], endpoint: initiator === 'flatnet' ? `${UNDERLAY.p}:${PORT}` : undefined }],
      }
      const cfgP: NodeConfig = {
        name: name.p,
        privateKey: key.p,
        listenPort: PORT,
        address: `${TUNNEL.p}/24`,
        peers: [{ publicKey: pub.f, presharedKey, allowedIps: [`${TUNNEL.f}/32`], endpoint: initiator === 'peer' ? `${UNDERLAY.f}:${PORT}` : undefined }],
      }
      const f = await startFlatnetCli(procs, ns.f, cfgF, dir, env)
      nodes.push(f)
      const p = peerKind === 'wireguard-go' ? await startWireguardGo(procs, ns.p, cfgP, dir) : await startFlatnetCli(procs, ns.p, cfgP, dir)
      nodes.push(p)
      return { f, p }
    }

    async function assertPingsBothWays(): Promise<void> {
      const there = await ping(ns.f, TUNNEL.p, 5)
      const back = await ping(ns.p, TUNNEL.f, 5)
      assert.deepEqual([there.received, back.received], [5, 5], `${there.text}\n${back.text}`)
    }

    before(async () => {
      ns = { f: await namespaces.create(), p: await namespaces.create() }
      await vethPair(ns.f, `${UNDERLAY.f}/24`, ns.p, `${UNDERLAY.p}/24`)
    })

    after(async () => {
      await stopPair().catch((e: unknown) => console.error(e))
      await procs.stopAll()
      await namespaces.cleanup()
      for (const n of names) rmSync(`/var/run/wireguard/${n}.sock`, { force: true })
      rmSync(dir, { recursive: true, force: true })
    })

    it('completes a handshake initiated by flatnet (the peer has no endpoint), then pings both ways', async (t) => {
      const { f, p } = await startPair('flatnet')
      assert.equal((await uapi(p.name)).peers[0]!.latestHandshake, undefined)
      const first = await ping(ns.f, TUNNEL.p, 1, 5)
      assert.equal(first.received, 1, first.text)
      const [sf, sp] = [(await uapi(f.name)).peers[0]!, (await uapi(p.name)).peers[0]!]
      assert.ok(sf.latestHandshake && sp.latestHandshake, 'both sides show the handshake')
      assert.equal(sp.endpoint, `${UNDERLAY.f}:${PORT}`, 'the responder learnt the initiator from its initiation')
      if (p.kind === 'wireguard-go') {
        assert.ok(countLog(p, /Received handshake initiation/) >= 1, p.child.output())
        assert.equal(countLog(p, /Sending handshake initiation/), 0)
      }
      await assertPingsBothWays()
      // The stock tool reads flatnet's UAPI socket.
      const dump = await wgDump(ns.f, f.name)
      assert.equal(dump.publicKey, pub.f)
      assert.equal(dump.listenPort, PORT)
      assert.equal(dump.peers[0]!.publicKey, pub.p)
      assert.equal(dump.peers[0]!.endpoint, `${UNDERLAY.p}:${PORT}`)
      assert.ok(dump.peers[0]!.latestHandshake > 0 && dump.peers[0]!.rx > 0 && dump.peers[0]!.tx > 0, JSON.stringify(dump))
      t.diagnostic(`flatnet -> ${peerKind}: handshake and 1 + 2x5 pings, flatnet rx ${dump.peers[0]!.rx} B tx ${dump.peers[0]!.tx} B`)
    })

    it(`completes a handshake initiated by the peer (${peerKind}), then pings both ways`, async (t) => {
      const { f, p } = await startPair('peer')
      assert.equal((await uapi(f.name)).peers[0]!.latestHandshake, undefined)
      const first = await ping(ns.p, TUNNEL.f, 1, 5)
      assert.equal(first.received, 1, first.text)
      const [sf, sp] = [(await uapi(f.name)).peers[0]!, (await uapi(p.name)).peers[0]!]
      assert.ok(sf.latestHandshake && sp.latestHandshake, 'both sides show the handshake')
      assert.equal(sf.endpoint, `${UNDERLAY.p}:${PORT}`, 'flatnet learnt the initiator from its initiation')
      if (p.kind === 'wireguard-go') {
        assert.ok(countLog(p, /Sending handshake initiation/) >= 1, p.child.output())
        assert.equal(countLog(p, /Received handshake initiation/), 0)
      }
      await assertPingsBothWays()
      t.diagnostic(`${peerKind} -> flatnet: handshake and 1 + 2x5 pings`)
    })

    it(`moves 100 MB over TCP intact while flatnet (initiator) rekeys every ${REKEY_AFTER_MESSAGES} messages, with a preshared key`, async (t) => {
      const psk = generatePrivateKeyBase64()
      const { f, p } = await startPair('flatnet', REKEY_ENV, psk)
      assert.equal((await ping(ns.f, TUNNEL.p, 1, 5)).received, 1)
      const directions = peerKind === 'wireguard-go' ? (['f->p', 'p->f'] as const) : (['f->p'] as const)
      let port = 5201
      for (const dir of directions) {
        const logBefore = countLog(p, /Received handshake initiation/)
        // Each side dates a handshake its own way (initiator: response; responder: first data).
        const initial = { f: (await uapi(f.name)).peers[0]!.latestHandshake!.getTime(), p: (await uapi(p.name)).peers[0]!.latestHandshake!.getTime() }
        const watch = poll(async () => {
          const [a, b] = await Promise.all([uapi(f.name), uapi(p.name)])
          return { f: a.peers[0]?.latestHandshake?.getTime(), p: b.peers[0]?.latestHandshake?.getTime() }
        }, 50)
        const [from, to, host] = dir === 'f->p' ? [ns.f, ns.p, TUNNEL.p] : [ns.p, ns.f, TUNNEL.f]
        const r = await tcpTransfer(procs, from, to, host, port++, TRANSFER_BYTES, 60_000)
        const samples = await watch.stop()
        const seenF = new Set(samples.map((s) => s.f).filter((v): v is number => v !== undefined && v > initial.f))
        const seenP = new Set(samples.map((s) => s.p).filter((v): v is number => v !== undefined && v > initial.p))
        assert.equal(r.sender.bytes, TRANSFER_BYTES)
        assert.equal(r.receiver.bytes, TRANSFER_BYTES)
        assert.equal(r.receiver.sha256, r.sender.sha256)
        // Sending the data, flatnet reaches the message limit every few milliseconds and rekeys as
        // often as the rekey timeout allows. Receiving it, flatnet sends only TCP ACKs, a few
        // thousand per second, so one rekey during the transfer is what can be counted on.
        const least = dir === 'f->p' ? 3 : 1
        assert.ok(seenF.size >= least, `flatnet showed ${seenF.size} new handshakes during the transfer`)
        assert.ok(seenP.size >= least, `${peerKind} showed ${seenP.size} new handshakes during the transfer`)
        const logged = countLog(p, /Received handshake initiation/) - logBefore
        if (p.kind === 'wireguard-go') assert.ok(logged >= least, `wireguard-go logged ${logged} initiations`)
        t.diagnostic(
          `${dir === 'f->p' ? `flatnet -> ${peerKind}` : `${peerKind} -> flatnet`}: ${TRANSFER_BYTES} B in ${r.receiver.ms} ms ` +
            `(${mbitPerS(TRANSFER_BYTES, r.receiver.ms)} Mbit/s), sha256 ${r.receiver.sha256.slice(0, 16)}… on both ends; ` +
            `new handshakes seen via UAPI: flatnet ${seenF.size}, ${peerKind} ${seenP.size}` +
            (p.kind === 'wireguard-go' ? `; initiations in wireguard-go's log: ${logged}` : ''),
        )
      }
      const dump = await wgDump(ns.f, f.name)
      assert.equal(dump.peers[0]!.presharedKey, psk, 'wg show reports the preshared key, as for wireguard-go')
      t.diagnostic(`flatnet after the transfers (wg show dump): rx ${dump.peers[0]!.rx} B, tx ${dump.peers[0]!.tx} B`)
      // A stock `wg set` names one setting; UAPI leaves every other one (key, endpoint) as it was.
      await run('ip', ['netns', 'exec', ns.f, 'wg', 'set', f.name, 'peer', pub.p, 'persistent-keepalive', '25'])
      const changed = (await wgDump(ns.f, f.name)).peers[0]!
      assert.deepEqual([changed.presharedKey, changed.endpoint, changed.keepalive], [psk, `${UNDERLAY.p}:${PORT}`, '25'])
      assert.equal((await ping(ns.f, TUNNEL.p, 3)).received, 3, 'the tunnel still works after wg set')
    })
  })
}
