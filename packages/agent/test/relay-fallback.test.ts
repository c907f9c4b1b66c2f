/**
 * Relay fallback end to end, in network namespaces: nodes A and B run a userspace WireGuard
 * interface and a mesh node each, R runs a circuit relay; all three share an underlay bridge.
 * nftables in A's namespace then drops every packet between A and B (UDP, and TCP too, so the
 * mesh cannot use a direct connection either): WireGuard must carry on through R, and move back
 * to direct UDP once the rule is gone.
 */
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { generateKeyPair, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { generatePrivateKeyBase64, publicKeyFromPrivateKey } from '@flatnet/wireguard'
import { kernelSkipReason, Namespaces, Processes, RpcClient, run, uniqueName } from '@flatnet/wireguard/testing'

const WORKER = fileURLToPath(new URL('./relay-node-worker.js', import.meta.url))
const skip = kernelSkipReason()

interface PeerStatusView {
  peer: { viaRelay?: boolean; latestHandshake?: string } | undefined
  relay: { sent: number; received: number; dropped: number } | null
  bound: string[]
}

async function pingOnce(ns: string, target: string): Promise<boolean> {
  const r = await run('ip', ['netns', 'exec', ns, 'ping', '-n', '-q', '-c', '1', '-W', '1', target], { allowFail: true, timeoutMs: 5_000 })
  return r.code === 0
}

/** Pings once every ~200 ms until `cond` holds after a successful ping; fails after `ms`. */
async function pingUntil(ns: string, target: string, cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  for (;;) {
    if ((await pingOnce(ns, target)) && (await cond())) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

describe('relay fallback of the WireGuard data plane', { skip }, () => {
  const spaces = new Namespaces()
  const procs = new Processes()
  const nodes: Record<'a' | 'b' | 'r', { ns: string; worker: RpcClient; peerId: string; underlay: string }> = {} as never
  const wgKeys = { a: generatePrivateKeyBase64(), b: generatePrivateKeyBase64() }
  const wgPub = { a: publicKeyFromPrivateKey(wgKeys.a), b: publicKeyFromPrivateKey(wgKeys.b) }
  const overlay = { a: '10.200.0.1', b: '10.200.0.2' }

  before(async () => {
    const ul = await spaces.create()
    await run('ip', ['-n', ul, 'link', 'add', 'br0', 'type', 'bridge'])
    await run('ip', ['-n', ul, 'link', 'set', 'br0', 'up'])
    const keys = await Promise.all([generateKeyPair('Ed25519'), generateKeyPair('Ed25519'), generateKeyPair('Ed25519')])
    const admitted = keys.map((k) => peerIdFromPrivateKey(k).toString())
    const names = ['a', 'b', 'r'] as const
    for (const [i, name] of names.entries()) {
      const ns = await spaces.create()
      const host = uniqueName('fnh')
      const port = uniqueName('fnp')
      const underlay = `10.77.0.${i + 1}`
      await run('ip', ['link', 'add', 'name', host, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', ul])
      await run('ip', ['-n', ul, 'link', 'set', port, 'master', 'br0', 'up'])
      await run('ip', ['-n', ns, 'address', 'add', `${underlay}/24`, 'dev', host])
      await run('ip', ['-n', ns, 'link', 'set', host, 'up'])
      const child = procs.spawn('ip', ['netns', 'exec', ns, process.execPath, WORKER], { stdin: true })
      const worker = new RpcClient(child, child.output)
      const wg =
        name === 'r'
          ? undefined
          : { privateKey: wgKeys[name], publicKey: wgPub[name], interfaceName: uniqueName('fnw'), address: `${overlay[name]}/24`, listenPort: 51820, endpoint: `${underlay}:51820` }
      const started = await worker.call<{ peerId: string }>('start', {
        nodeKey: Buffer.from(privateKeyToProtobuf(keys[i]!)).toString('base64'),
        admitted,
        listen: `/ip4/${underlay}/tcp/7946`,
        relayServer: name === 'r',
        wg,
      })
      nodes[name] = { ns, worker, peerId: started.peerId, underlay }
    }
    await nodes.a.worker.call('setPeer', { publicKey: wgPub.b, endpoint: `${nodes.b.underlay}:51820`, allowedIps: [`${overlay.b}/32`] })
    await nodes.b.worker.call('setPeer', { publicKey: wgPub.a, endpoint: `${nodes.a.underlay}:51820`, allowedIps: [`${overlay.a}/32`] })
    const rAddr = `/ip4/${nodes.r.underlay}/tcp/7946/p2p/${nodes.r.peerId}`
    await nodes.a.worker.call('dial', { addr: rAddr })
    await nodes.b.worker.call('dial', { addr: rAddr })
    await nodes.a.worker.call('dial', { addr: `/ip4/${nodes.b.underlay}/tcp/7946/p2p/${nodes.b.peerId}` })
  })

  after(async () => {
    await procs.stopAll()
    await spaces.cleanup()
  })

  const statusOf = (from: 'a' | 'b', to: 'a' | 'b'): Promise<PeerStatusView> => nodes[from].worker.call<PeerStatusView>('status', { peerId: nodes[to].peerId, publicKey: wgPub[to] })

  it('binds each peer to its relay link and starts on direct UDP', async () => {
    await pingUntil(
      nodes.a.ns,
      overlay.b,
      async () => (await statusOf('a', 'b')).bound.includes(wgPub.b) && (await statusOf('b', 'a')).bound.includes(wgPub.a),
      15_000,
      'both peers to have relay links',
    )
    const a = await statusOf('a', 'b')
    assert.equal(a.peer?.viaRelay, false)
    assert.equal(a.relay?.sent, 0, 'nothing went over the relay link while UDP worked')
  })

  it('moves to the relay when nftables drops all traffic between A and B, and pings still pass', async () => {
    const ruleset = [
      'table inet fn_relay_test {',
      '  chain in { type filter hook input priority -10; policy accept; ip saddr ' + nodes.b.underlay + ' drop; }',
      '  chain out { type filter hook output priority -10; policy accept; ip daddr ' + nodes.b.underlay + ' drop; }',
      '}',
    ].join('\n')
    await runWithStdin(['ip', 'netns', 'exec', nodes.a.ns, 'nft', '-f', '-'], ruleset)
    assert.equal(await pingOnce(nodes.a.ns, nodes.b.underlay), false, 'the underlay between A and B is cut')
    await pingUntil(
      nodes.a.ns,
      overlay.b,
      async () => (await statusOf('a', 'b')).peer?.viaRelay === true && (await statusOf('b', 'a')).peer?.viaRelay === true,
      45_000,
      'A and B to send to each other over the relay',
    )
    // Several pings in a row, all through R.
    for (let i = 0; i < 5; i++) assert.ok(await pingOnce(nodes.a.ns, overlay.b), `ping ${i} over the relay`)
    const a = await statusOf('a', 'b')
    const b = await statusOf('b', 'a')
    assert.equal(b.peer?.viaRelay, true, 'B answers over the relay too')
    assert.ok((a.relay?.sent ?? 0) > 0 && (a.relay?.received ?? 0) > 0, `A's relay link carried traffic both ways: ${JSON.stringify(a.relay)}`)
    assert.equal(await nodes.a.worker.call<boolean>('channelViaRelay', { peerId: nodes.b.peerId }), true, 'the mesh channel runs through R')
  })

  it('moves back to direct UDP once the rule is gone', async () => {
    await run('ip', ['netns', 'exec', nodes.a.ns, 'nft', 'delete', 'table', 'inet', 'fn_relay_test'])
    await pingUntil(
      nodes.a.ns,
      overlay.b,
      async () => (await statusOf('a', 'b')).peer?.viaRelay === false && (await statusOf('b', 'a')).peer?.viaRelay === false,
      30_000,
      'both sides to return to direct UDP',
    )
    const before = (await statusOf('a', 'b')).relay
    for (let i = 0; i < 5; i++) assert.ok(await pingOnce(nodes.a.ns, overlay.b), `ping ${i} after the return`)
    const afterReturn = (await statusOf('a', 'b')).relay
    assert.equal(afterReturn?.sent, before?.sent, 'no more traffic on the relay link once direct works')
  })
})

async function runWithStdin(argv: string[], input: string): Promise<void> {
  const { spawn } = await import('node:child_process')
  await new Promise<void>((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'] })
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
    child.once('close', (code) => {
      clearTimeout(timer)
      if (code === 0) resolve()
      else reject(new Error(`${argv.join(' ')} failed (${code}): ${err}`))
    })
    child.stdin.end(input)
  })
}
