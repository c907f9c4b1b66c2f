/**
 * A TCP bulk transfer whose both ends hash what they see, run by the interop tests inside network
 * namespaces (iperf3 moves bytes but cannot say whether they arrived intact).
 *
 *   node tcp-transfer.js recv HOST PORT            prints {"listening":true}, then the result
 *   node tcp-transfer.js send HOST PORT BYTES      prints the result
 *
 * Result line: {"bytes":N,"sha256":"...","ms":T}. The payload is random (a fresh buffer per
 * chunk), so a lost, repeated or reordered chunk changes the hash.
 */
import { createHash, randomFillSync } from 'node:crypto'
import { createConnection, createServer, type Socket } from 'node:net'

const CHUNK = 256 * 1024
const [mode, host, portText, bytesText] = process.argv.slice(2)
const port = Number(portText)

function report(bytes: number, hash: ReturnType<typeof createHash>, start: number): void {
  process.stdout.write(`${JSON.stringify({ bytes, sha256: hash.digest('hex'), ms: Math.round(performance.now() - start) })}\n`)
}

function receive(): void {
  const server = createServer((conn: Socket) => {
    // One transfer per run: later connections are refused.
    server.close()
    const hash = createHash('sha256')
    let bytes = 0
    let start = 0
    conn.on('data', (d: Buffer) => {
      if (bytes === 0) start = performance.now()
      bytes += d.length
      hash.update(d)
    })
    conn.on('end', () => {
      report(bytes, hash, start)
      conn.end()
    })
    conn.on('error', (e) => {
      process.stderr.write(`receive: ${e.message}\n`)
      process.exit(1)
    })
  })
  server.listen(port, host, () => process.stdout.write('{"listening":true}\n'))
}

function send(total: number): void {
  const hash = createHash('sha256')
  const start = performance.now()
  const conn = createConnection({ host, port })
  let sent = 0
  const pump = (): void => {
    while (sent < total) {
      const chunk = randomFillSync(Buffer.allocUnsafe(Math.min(CHUNK, total - sent)))
      hash.update(chunk)
      sent += chunk.length
      if (!conn.write(chunk)) return void conn.once('drain', pump)
    }
    conn.end()
  }
  conn.on('connect', pump)
  // Done once the receiver has everything and closed its side too.
  conn.on('close', (hadError) => {
    if (!hadError) report(sent, hash, start)
  })
  conn.on('error', (e) => {
    process.stderr.write(`send: ${e.message}\n`)
    process.exit(1)
  })
  conn.resume()
}

if (mode === 'recv') receive()
else if (mode === 'send') send(Number(bytesText))
else {
  process.stderr.write('usage: tcp-transfer.js recv HOST PORT | send HOST PORT BYTES\n')
  process.exit(2)
}
