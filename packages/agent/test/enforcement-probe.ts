/**
 * Runs inside one test network namespace (`ip netns exec NS node enforcement-probe.js PORT...`):
 * TCP and UDP echo servers on the given ports (IPv4 and IPv6), and a client driven by one JSON
 * request per stdin line, answering one JSON line each:
 *
 *   {"id":1,"op":"probe","proto":"tcp"|"udp","host":"10.0.0.1","port":80,"timeoutMs":800}   -> {"id":1,"ok":true}
 *   {"id":2,"op":"open","host":"10.0.0.1","port":80}                                          -> {"id":2,"ok":true,"conn":1,"localPort":40000}
 *   {"id":3,"op":"echo","conn":1,"timeoutMs":800}                                             -> {"id":3,"ok":false}
 *   {"id":4,"op":"spoof","from":"10.9.9.9","host":"10.0.0.2","port":80,"token":"t1"}          -> {"id":4,"ok":true}
 *   {"id":5,"op":"received","token":"t1"}                                                     -> {"id":5,"ok":true}
 *
 * A probe succeeds when a TCP connection is established, or when a UDP datagram comes back.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { connect, createServer, isIPv4, type Socket } from 'node:net'
import { createInterface } from 'node:readline'

interface Request {
  readonly id: number
  readonly op: 'probe' | 'open' | 'echo' | 'spoof' | 'received'
  readonly proto?: 'tcp' | 'udp'
  readonly host?: string
  readonly port?: number
  readonly timeoutMs?: number
  readonly localAddress?: string
  readonly conn?: number
  readonly from?: string
  readonly token?: string
}

const ports = process.argv.slice(2).map(Number)
const received = new Set<string>()
const connections = new Map<number, Socket>()
let nextConn = 1

function reply(id: number, fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ id, ...fields })}\n`)
}

async function listen(): Promise<void> {
  for (const port of ports) {
    const tcp = createServer((s) => {
      s.on('error', () => undefined)
      s.on('data', (d) => s.write(d))
    })
    await new Promise<void>((resolve, reject) => {
      tcp.once('error', reject)
      tcp.listen({ port, host: '::', ipv6Only: false }, resolve)
    })
    const udp = createSocket({ type: 'udp6', ipv6Only: false })
    udp.on('message', (msg, rinfo) => {
      received.add(msg.toString())
      udp.send(msg, rinfo.port, rinfo.address)
    })
    await new Promise<void>((resolve, reject) => {
      udp.once('error', reject)
      udp.bind({ port, address: '::' }, resolve)
    })
  }
}

function tcpProbe(r: Request): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: r.host!, port: r.port!, localAddress: r.localAddress })
    const timer = setTimeout(() => done(false), r.timeoutMs ?? 800)
    function done(ok: boolean): void {
      clearTimeout(timer)
      s.destroy()
      resolve(ok)
    }
    s.once('connect', () => done(true))
    s.once('error', () => done(false))
  })
}

function udpSocket(host: string, bindAddress?: string): Promise<UdpSocket> {
  const sock = createSocket(isIPv4(host) ? 'udp4' : 'udp6')
  return new Promise((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ port: 0, address: bindAddress }, () => resolve(sock))
  })
}

async function udpProbe(r: Request): Promise<boolean> {
  const sock = await udpSocket(r.host!, r.localAddress)
  const token = `probe-${r.id}`
  return new Promise((resolve) => {
    const timer = setTimeout(() => done(false), r.timeoutMs ?? 800)
    function done(ok: boolean): void {
      clearTimeout(timer)
      sock.close()
      resolve(ok)
    }
    sock.on('error', () => done(false))
    sock.on('message', (m) => m.toString() === token && done(true))
    sock.send(token, r.port!, r.host!, (err) => err && done(false))
  })
}

function open(r: Request): Promise<Socket | undefined> {
  return new Promise((resolve) => {
    const s = connect({ host: r.host!, port: r.port!, localAddress: r.localAddress })
    const timer = setTimeout(() => {
      s.destroy()
      resolve(undefined)
    }, r.timeoutMs ?? 2000)
    s.on('error', () => undefined)
    s.once('connect', () => {
      clearTimeout(timer)
      resolve(s)
    })
  })
}

function echo(r: Request): Promise<boolean> {
  const s = connections.get(r.conn!)
  if (!s || s.destroyed) return Promise.resolve(false)
  const token = `echo-${r.id}\n`
  return new Promise((resolve) => {
    let got = ''
    const onData = (d: Buffer): void => {
      got += d.toString()
      if (got.includes(token)) done(true)
    }
    const timer = setTimeout(() => done(false), r.timeoutMs ?? 800)
    function done(ok: boolean): void {
      clearTimeout(timer)
      s!.off('data', onData)
      resolve(ok)
    }
    s.on('data', onData)
    s.write(token)
  })
}

async function spoof(r: Request): Promise<void> {
  const sock = await udpSocket(r.host!, r.from)
  return new Promise((resolve, reject) => {
    sock.send(r.token!, r.port!, r.host!, (err) => {
      sock.close()
      if (err) reject(err)
      else resolve()
    })
  })
}

async function handle(r: Request): Promise<void> {
  try {
    switch (r.op) {
      case 'probe':
        return reply(r.id, { ok: await (r.proto === 'udp' ? udpProbe(r) : tcpProbe(r)) })
      case 'open': {
        const s = await open(r)
        if (!s) return reply(r.id, { ok: false })
        const conn = nextConn++
        connections.set(conn, s)
        return reply(r.id, { ok: true, conn, localPort: s.localPort })
      }
      case 'echo':
        return reply(r.id, { ok: await echo(r) })
      case 'spoof':
        await spoof(r)
        return reply(r.id, { ok: true })
      case 'received':
        return reply(r.id, { ok: received.has(r.token!) })
    }
  } catch (err) {
    reply(r.id, { ok: false, error: (err as Error).message })
  }
}

await listen()
process.stdout.write(`${JSON.stringify({ ready: true })}\n`)
createInterface({ input: process.stdin }).on('line', (line) => void handle(JSON.parse(line) as Request))
// The test ends this process by closing stdin or by its PID.
process.stdin.on('end', () => process.exit(0))
