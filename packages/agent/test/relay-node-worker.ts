/**
 * One node of the relay-fallback test, run inside its own network namespace: a mesh node and,
 * unless it is the relay, a userspace WireGuard interface whose peers get relay links through
 * createRelayBinding. Driven by one JSON request per stdin line, one answer per stdout line.
 */
import '@flatnet/mesh'
import { createMeshNode, type MeshNode } from '@flatnet/mesh'
import { signNodeRecord } from '@flatnet/store'
import { UserspaceBackend } from '@flatnet/wireguard'
import { privateKeyFromProtobuf } from '@libp2p/crypto/keys'
import { serveRpc, type Handlers } from '@flatnet/wireguard/testing'
import { createRelayBinding, type RelayBinding } from '../src/index.js'

interface StartArgs {
  readonly nodeKey: string
  readonly admitted: string[]
  readonly listen: string
  readonly relayServer: boolean
  readonly wg?: { privateKey: string; publicKey: string; interfaceName: string; address: string; listenPort: number; endpoint: string }
}

let mesh: MeshNode | undefined
let wg: UserspaceBackend | undefined
let binding: RelayBinding | undefined

// Shortened protocol timers and probe interval: the test must see a fallback and a return
// within seconds, where the protocol's own durations would take tens of seconds.
const TEST_TIMERS = { rekeyTimeoutMs: 1_000, keepaliveTimeoutMs: 1_000 }

const handlers: Handlers = {
  async start(args: StartArgs) {
    const privateKey = privateKeyFromProtobuf(Buffer.from(args.nodeKey, 'base64'))
    if (args.wg) {
      wg = new UserspaceBackend({ uapi: false, timers: TEST_TIMERS, relayProbeIntervalMs: 1_000 })
      await wg.up({ interfaceName: args.wg.interfaceName, privateKey: args.wg.privateKey, listenPort: args.wg.listenPort, mtu: 1420, addresses: [args.wg.address] })
    }
    const signed = await signNodeRecord(privateKey, {
      wireguardPublicKey: args.wg?.publicKey ?? Buffer.alloc(32, 7).toString('base64'),
      endpoints: args.wg ? [args.wg.endpoint] : [],
      blocks: [],
      labels: {},
      sequence: 1,
    })
    const admitted = new Set(args.admitted)
    mesh = await createMeshNode(
      { privateKey, listen: [args.listen], isAdmitted: (p) => admitted.has(p), localRecord: () => signed },
      {
        relayServer: args.relayServer,
        pingIntervalMs: 1_000,
        pingTimeoutMs: 800,
        directRetryMs: 1_000,
        dialTimeoutMs: 2_000,
        exchangeTimeoutMs: 3_000,
        channel: { writeStallMs: 1_500 },
      },
    )
    await mesh.start()
    if (wg) binding = createRelayBinding({ mesh, device: wg })
    return { peerId: mesh.peerId, multiaddrs: mesh.multiaddrs }
  },
  async setPeer(args: { publicKey: string; endpoint: string; allowedIps: string[] }) {
    await wg!.setPeer(args)
    binding?.refresh()
  },
  async dial(args: { addr: string }) {
    return mesh!.dial(args.addr)
  },
  multiaddrs() {
    return mesh!.multiaddrs
  },
  async status(args: { peerId: string; publicKey: string }) {
    const peer = (await wg!.peers()).find((p) => p.publicKey === args.publicKey)
    return {
      peer,
      relay: wg!.relayStats(args.publicKey) ?? null,
      bound: binding!.boundKeys(),
      drops: wg!.running?.drops.snapshot(),
      connected: mesh!.connectedPeers(),
    }
  },
  async channelViaRelay(args: { peerId: string }) {
    const ch = await mesh!.openPacketChannel(args.peerId)
    return ch.viaRelay
  },
}

async function stop(): Promise<void> {
  binding?.stop()
  await mesh?.stop().catch(() => undefined)
  await wg?.down().catch(() => undefined)
}

serveRpc(handlers, () => void stop().finally(() => process.exit(0)))
process.on('SIGTERM', () => void stop().finally(() => process.exit(0)))
