/**
 * The endpoint daemon: one process per lab endpoint, started inside the endpoint's network
 * namespace (`ip netns exec <ns> node endpoint-daemon.js <config.json>`). It
 *
 *  - serves every declared port on each of the endpoint's addresses: a TCP connection gets one
 *    line `<namespace/name> <port>/TCP` and is closed; a UDP datagram is answered with
 *    `<namespace/name> <port>/UDP`, from the address it was sent to (one socket per address,
 *    so a host with several addresses answers from the right one);
 *  - answers probe requests from the lab on a unix socket in the lab's state directory (unix
 *    sockets are reachable from every network namespace): one JSON object a line in, one out,
 *    matched by `id`, many in flight at once.
 *
 *    {"id":1,"op":"ping"}                                          -> {"id":1,"ok":true,"key":"x/a","pid":123}
 *    {"id":2,"op":"probe","ip":"10.64.2.3","port":80,"protocol":"TCP","timeoutMs":1000}
 *                                   -> {"id":2,"ok":true,"result":"answered","reply":"y/b 80/TCP","ms":0.7}
 *                                   or {"id":2,"ok":false,"result":"timeout","ms":1000.4}
 *
 * Node built-ins only, so it starts fast; stops on SIGTERM.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram'
import { readFileSync, rmSync } from 'node:fs'
import { connect, createServer, isIP, type Server } from 'node:net'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import type { DaemonConfig, ProbeOutcome, ProbeReply, ProbeRequest } from './protocol.js'

const PROBE_PAYLOAD = 'flatnet-probe\n'

function outcomeOf(err: NodeJS.ErrnoException): ProbeOutcome {
  if (err.code === 'ECONNREFUSED') return 'refused'
  if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' || err.code === 'EACCES' || err.code === 'EPERM') return 'unreachable'
  return 'error'
}

function probeTcp(req: ProbeRequest, source: string): Promise<Omit<ProbeReply, 'id'>> {
  const started = performance.now()
  return new Promise((resolve) => {
    let buffer = ''
    let done = false
    const sock = connect({ host: req.ip, port: req.port, localAddress: source })
    const finish = (ok: boolean, result: ProbeOutcome, extra: { reply?: string; detail?: string } = {}): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.destroy()
      resolve({ ok, result, ...extra, ms: performance.now() - started })
    }
    const timer = setTimeout(() => finish(false, 'timeout'), req.timeoutMs)
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => {
      buffer += d
      const nl = buffer.indexOf('\n')
      if (nl !== -1) finish(true, 'answered', { reply: buffer.slice(0, nl) })
    })
    sock.on('end', () => finish(false, 'error', { detail: 'closed without an answer' }))
    sock.on('error', (err: NodeJS.ErrnoException) => finish(false, outcomeOf(err), { detail: err.code ?? err.message }))
  })
}

function probeUdp(req: ProbeRequest, source: string): Promise<Omit<ProbeReply, 'id'>> {
  const started = performance.now()
  return new Promise((resolve) => {
    let done = false
    const sock = createSocket(isIP(req.ip) === 6 ? 'udp6' : 'udp4')
    const finish = (ok: boolean, result: ProbeOutcome, extra: { reply?: string; detail?: string } = {}): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      sock.close()
      resolve({ ok, result, ...extra, ms: performance.now() - started })
    }
    const timer = setTimeout(() => finish(false, 'timeout'), req.timeoutMs)
    // A connected socket hears ICMP port unreachable as ECONNREFUSED.
    sock.on('error', (err: NodeJS.ErrnoException) => finish(false, outcomeOf(err), { detail: err.code ?? err.message }))
    sock.on('message', (msg) => finish(true, 'answered', { reply: msg.toString('utf8').trim() }))
    sock.bind({ address: source, port: 0 }, () => {
      sock.connect(req.port, req.ip, (err?: Error) => {
        if (err) return finish(false, outcomeOf(err as NodeJS.ErrnoException), { detail: (err as NodeJS.ErrnoException).code ?? err.message })
        sock.send(PROBE_PAYLOAD)
      })
    })
  })
}

async function probe(config: DaemonConfig, req: ProbeRequest): Promise<ProbeReply> {
  const family = isIP(req.ip)
  const source = config.addresses.find((a) => isIP(a) === family)
  if (family === 0 || source === undefined) {
    return { id: req.id, ok: false, result: 'no-source-address', detail: `${config.key} has no IPv${family || '?'} address`, ms: 0 }
  }
  const outcome = req.protocol === 'UDP' ? await probeUdp(req, source) : await probeTcp(req, source)
  return { id: req.id, ...outcome }
}

function listenTcp(config: DaemonConfig, address: string, port: number): Promise<Server> {
  const server = createServer((sock) => {
    sock.on('error', () => undefined)
    sock.end(`${config.key} ${port}/TCP\n`)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen({ host: address, port, exclusive: true }, () => resolve(server))
  })
}

function listenUdp(config: DaemonConfig, address: string, port: number): Promise<UdpSocket> {
  const sock = createSocket(isIP(address) === 6 ? 'udp6' : 'udp4')
  const answer = Buffer.from(`${config.key} ${port}/UDP\n`)
  sock.on('message', (_msg, rinfo) => sock.send(answer, rinfo.port, rinfo.address))
  return new Promise((resolve, reject) => {
    sock.once('error', reject)
    sock.bind({ address, port, exclusive: true }, () => {
      sock.removeListener('error', reject)
      sock.on('error', () => undefined)
      resolve(sock)
    })
  })
}

function serveControl(config: DaemonConfig): Promise<Server> {
  rmSync(config.socket, { force: true })
  const server = createServer((conn) => {
    conn.on('error', () => undefined)
    createInterface({ input: conn }).on('line', (line) => {
      let req: Record<string, unknown>
      try {
        req = JSON.parse(line) as typeof req
      } catch {
        return void conn.write(`${JSON.stringify({ id: null, ok: false, result: 'error', detail: 'not JSON' })}\n`)
      }
      if (req.op === 'ping') return void conn.write(`${JSON.stringify({ id: req.id, ok: true, key: config.key, pid: process.pid })}\n`)
      if (req.op === 'probe') {
        void probe(config, req as unknown as ProbeRequest).then((reply) => conn.writable && conn.write(`${JSON.stringify(reply)}\n`))
        return
      }
      conn.write(`${JSON.stringify({ id: req.id ?? null, ok: false, result: 'error', detail: `unknown op ${JSON.stringify(req.op)}` })}\n`)
    })
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.socket, () => resolve(server))
  })
}

async function main(): Promise<void> {
  const configFile = process.argv[2]
  if (!configFile) throw new Error('usage: endpoint-daemon.js CONFIG.json')
  const config = JSON.parse(readFileSync(configFile, 'utf8')) as DaemonConfig
  const closers: (() => void)[] = []
  for (const address of config.addresses) {
    for (const { port, protocol } of config.ports) {
      if (protocol === 'TCP') {
        const s = await listenTcp(config, address, port)
        closers.push(() => s.close())
      } else {
        const s = await listenUdp(config, address, port)
        closers.push(() => s.close())
      }
    }
  }
  // The control socket comes last: once it answers, every port is served.
  const control = await serveControl(config)
  closers.push(() => control.close())
  const stop = (): void => {
    for (const close of closers) close()
    rmSync(config.socket, { force: true })
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdout.write(`${new Date().toISOString()} ${config.key}: serving ${config.ports.map((p) => `${p.port}/${p.protocol}`).join(' ') || 'no ports'} on ${config.addresses.join(' ')}; control ${config.socket}\n`)
}

main().catch((err: unknown) => {
  process.stderr.write(`${new Date().toISOString()} endpoint daemon failed: ${err instanceof Error ? err.stack : String(err)}\n`)
  process.exit(1)
})
