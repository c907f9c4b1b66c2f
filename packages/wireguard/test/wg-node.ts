/**
 * A flatnet userspace WireGuard interface for tests, run inside a network namespace
 * (`ip netns exec NS node --expose-gc wg-node.js`): what `flatnet wg up` runs, plus what a test
 * needs to look inside without changing the UAPI replies that stock `wg` parses — the drop
 * counters and the process's memory, over the line protocol of rpc.ts.
 *
 *   up {name, privateKey, listenPort, mtu, addresses, peers, options}  -> {publicKey, listenPort}
 *   stats {}                                                          -> {drops, rss, heapUsed}
 *
 * Goes down on SIGTERM or when stdin closes (the test process is gone).
 */
import { UserspaceBackend, type DevicePeerSettings, type UserspaceBackendOptions } from '../src/index.js'
import { serveRpc } from './rpc.js'

interface UpArgs {
  name: string
  privateKey: string
  listenPort: number
  mtu?: number
  addresses: string[]
  peers: DevicePeerSettings[]
  options?: UserspaceBackendOptions
}

let backend: UserspaceBackend | undefined
let stopping = false

async function shutdown(): Promise<void> {
  if (stopping) return
  stopping = true
  await backend?.down()
  process.exit(0)
}

const gc = (globalThis as { gc?: () => void }).gc

serveRpc(
  {
    async up(a: UpArgs) {
      if (backend) throw new Error('already up')
      const b = new UserspaceBackend(a.options ?? {})
      backend = b
      await b.up({ interfaceName: a.name, privateKey: a.privateKey, listenPort: a.listenPort, mtu: a.mtu ?? 1420, addresses: a.addresses })
      for (const p of a.peers) await b.setPeer(p)
      return { publicKey: b.running!.publicKey, listenPort: b.listenPort }
    },
    stats() {
      const device = backend?.running
      if (!device) throw new Error('not up')
      // Two collections: the first may only queue finalizers that free native memory.
      gc?.()
      gc?.()
      const mem = process.memoryUsage()
      return { drops: device.drops.snapshot(), rss: mem.rss, heapUsed: mem.heapUsed }
    },
  },
  () => void shutdown(),
)
process.once('SIGTERM', () => void shutdown())
process.once('SIGINT', () => void shutdown())
