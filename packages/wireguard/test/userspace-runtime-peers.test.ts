/**
 * Peers of a running userspace interface (`flatnet wg up`) added, changed and removed with the
 * stock `wg set` over its UAPI socket, while a ping to another peer runs: the other peer's
 * session, endpoint and traffic must not notice. F talks to two wireguard-go peers, B and C,
 * each over its own veth.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { generatePrivateKeyBase64, publicKeyFromPrivateKey } from '../src/index.js'
import { Namespaces, Processes, run, uniqueName } from './native-harness.js'
import { ping, startFlatnetCli, startWireguardGo, vethPair, wgDump, wgSkipReason, type WgNode } from './wg-harness.js'

const PORT = 51820
const UNDERLAY = { fb: '10.78.1.1', b: '10.78.1.2', fc: '10.78.2.1', c: '10.78.2.2' }
const TUNNEL = { f: '10.78.0.1', b: '10.78.0.2', c: '10.78.0.3', c2: '10.78.0.33' }

describe('userspace interface: peers changed at runtime', { skip: wgSkipReason({ cli: true }), timeout: 120_000 }, () => {
  const namespaces = new Namespaces()
  const procs = new Processes()
  const dir = mkdtempSync(join(tmpdir(), 'flatnet-runtime-peers-'))
  const key = { f: generatePrivateKeyBase64(), b: generatePrivateKeyBase64(), c: generatePrivateKeyBase64() }
  const pub = { f: publicKeyFromPrivateKey(key.f), b: publicKeyFromPrivateKey(key.b), c: publicKeyFromPrivateKey(key.c) }
  const name = { f: uniqueName('fnf'), b: uniqueName('fnb'), c: uniqueName('fnc') }
  let ns = { f: '', b: '', c: '' }
  const nodes: WgNode[] = []

  /** `wg set` on F's interface, through the same UAPI socket the stock tool uses everywhere. */
  const wgSet = (...args: string[]): Promise<unknown> => run('ip', ['netns', 'exec', ns.f, 'wg', 'set', name.f, ...args])
  const peerOnF = async (publicKey: string) => (await wgDump(ns.f, name.f)).peers.find((p) => p.publicKey === publicKey)

  before(async () => {
    ns = { f: await namespaces.create(), b: await namespaces.create(), c: await namespaces.create() }
    await vethPair(ns.f, `${UNDERLAY.fb}/24`, ns.b, `${UNDERLAY.b}/24`)
    await vethPair(ns.f, `${UNDERLAY.fc}/24`, ns.c, `${UNDERLAY.c}/24`)
    nodes.push(
      await startFlatnetCli(procs, ns.f, {
        name: name.f,
        privateKey: key.f,
        listenPort: PORT,
        address: `${TUNNEL.f}/24`,
        peers: [
          { publicKey: pub.b, allowedIps: [`${TUNNEL.b}/32`], endpoint: `${UNDERLAY.b}:${PORT}` },
          { publicKey: pub.c, allowedIps: [`${TUNNEL.c}/32`], endpoint: `${UNDERLAY.c}:${PORT}` },
        ],
      }, dir),
    )
    for (const p of ['b', 'c'] as const) {
      nodes.push(
        await startWireguardGo(procs, ns[p], {
          name: name[p],
          privateKey: key[p],
          listenPort: PORT,
          address: `${TUNNEL[p]}/24`,
          peers: [{ publicKey: pub.f, allowedIps: [`${TUNNEL.f}/32`, ...(p === 'c' ? [`${TUNNEL.c2}/32`] : [])] }],
        }, dir),
      )
    }
    // C answers on a second tunnel address too, which F routes to it only once told to.
    await run('ip', ['-n', ns.c, 'address', 'add', `${TUNNEL.c2}/32`, 'dev', name.c])
  })

  after(async () => {
    for (const n of nodes.splice(0)) await n.stop().catch(() => undefined)
    await procs.stopAll()
    await namespaces.cleanup()
    rmSync(dir, { recursive: true, force: true })
  })

  it('adds, changes and removes peer C while a ping to peer B loses nothing and B keeps its session', async () => {
    assert.equal((await ping(ns.f, TUNNEL.b, 3)).received, 3, 'F -> B')
    assert.equal((await ping(ns.f, TUNNEL.c, 3)).received, 3, 'F -> C')
    const bBefore = await peerOnF(pub.b)
    assert.ok(bBefore && bBefore.latestHandshake > 0)

    // 40 pings to B, 200 ms apart (8 s), across every change below.
    const steady = ping(ns.f, TUNNEL.b, 40, 1)

    // Change: C gets a second address; F routes it to C from now on.
    assert.equal((await ping(ns.f, TUNNEL.c2, 1, 1)).received, 0, 'no route to C\'s second address yet')
    await wgSet('peer', pub.c, 'allowed-ips', `${TUNNEL.c}/32,${TUNNEL.c2}/32`)
    assert.equal((await ping(ns.f, TUNNEL.c2, 3)).received, 3, 'F -> C\'s second address after the change')
    assert.equal((await peerOnF(pub.c))?.allowedIps, `${TUNNEL.c}/32,${TUNNEL.c2}/32`)

    // Remove: F forgets C; traffic to C has nowhere to go.
    await wgSet('peer', pub.c, 'remove')
    assert.equal(await peerOnF(pub.c), undefined)
    assert.equal((await ping(ns.f, TUNNEL.c, 2, 1)).received, 0, 'F -> C after removal')

    // Add again: a fresh peer, a fresh handshake.
    await wgSet('peer', pub.c, 'allowed-ips', `${TUNNEL.c}/32`, 'endpoint', `${UNDERLAY.c}:${PORT}`)
    assert.equal((await ping(ns.f, TUNNEL.c, 3)).received, 3, 'F -> C after adding it back')

    const result = await steady
    assert.equal(result.received, 40, `the ping to B lost packets while C changed:\n${result.text}`)
    const bAfter = await peerOnF(pub.b)
    assert.equal(bAfter?.endpoint, bBefore.endpoint)
    assert.equal(bAfter?.allowedIps, bBefore.allowedIps)
    assert.equal(bAfter?.latestHandshake, bBefore.latestHandshake, 'B\'s session was not renegotiated')
    assert.ok((bAfter?.tx ?? 0) > bBefore.tx && (bAfter?.rx ?? 0) > bBefore.rx)
  })
})
