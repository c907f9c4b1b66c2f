/**
 * The syncer's metrics and probes on a local TCP address (empty: none):
 *
 *   GET /metrics   Prometheus text
 *   GET /healthz   200 while the process serves requests
 *   GET /readyz    200 on standby, and for the leader once everything is listed and written;
 *                  503 with the reason otherwise
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { InvalidArgumentError } from '@flatnet/core'
import type { SyncerMetrics } from './metrics.js'
import type { SyncerStatus } from './syncer.js'

export interface HealthServerComponents {
  readonly metrics: SyncerMetrics
  readonly status: () => SyncerStatus
}

export function parseListenAddress(address: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(address)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) throw new InvalidArgumentError(`invalid metrics address "${address}": write host:port, e.g. 127.0.0.1:9470 or [::1]:9470`)
  return { host: (m[1] ?? m[2]) as string, port }
}

export class SyncerHealthServer {
  private server: Server | undefined

  constructor(private readonly components: HealthServerComponents) {}

  /** Listens on `host:port`; resolves with the bound address (port 0 picks a free one). */
  async start(address: string): Promise<string> {
    const { host, port } = parseListenAddress(address)
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0]
      void (async () => {
        if (req.method !== 'GET') {
          res.writeHead(405).end()
        } else if (path === '/metrics') {
          const text = await this.components.metrics.text()
          res.writeHead(200, { 'content-type': this.components.metrics.registry.contentType }).end(text)
        } else if (path === '/healthz') {
          res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n')
        } else if (path === '/readyz') {
          const s = this.components.status()
          const ready = !s.leader || s.synced
          res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' }).end(ready ? 'ok\n' : 'leader, still listing or writing to the store\n')
        } else {
          res.writeHead(404).end()
        }
      })().catch(() => res.writeHead(500).end())
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err) => reject(new InvalidArgumentError(`cannot listen on ${address}: ${err.message}`)))
      server.listen(port, host, () => resolve())
    })
    this.server = server
    const bound = server.address() as AddressInfo
    return bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`
  }

  async stop(): Promise<void> {
    const server = this.server
    this.server = undefined
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
