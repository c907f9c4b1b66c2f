/** Worker side of native-worker.test: opens devices, reads them, and is then terminated. */
import { parentPort, workerData } from 'node:worker_threads'
import { TunDevice, UdpSocket } from '../src/index.js'

const { tunName } = workerData as { tunName?: string }
const sock = UdpSocket.bind({ address: '127.0.0.1', slotSize: 2048 })
sock.onDatagrams((_buf, _offsets, _lengths, _addrs, count) => parentPort?.postMessage({ type: 'datagrams', count }))
let name: string | undefined
if (tunName) {
  const tun = TunDevice.open({ name: tunName })
  tun.onPackets(() => {})
  name = tun.name
}
parentPort?.postMessage({ type: 'ready', port: sock.localPort, tun: name })
