/**
 * The lab's side of an endpoint daemon's unix socket: many requests in flight on one
 * connection, each answered by id, each with a deadline of its own.
 */
import { connect, type Socket } from 'node:net'
import { createInterface } from 'node:readline'
import { FlatnetError } from '@flatnet/core'
import type { ProbeReply, ProbeRequest } from './daemon/protocol.js'

/** An endpoint daemon cannot be reached on its socket, or did not answer in time. */
export class LabDaemonError extends FlatnetError {
  readonly code = 'ERR_LAB_DAEMON'
}

/** Time a daemon may take beyond a probe's own timeout before the request counts as lost. */
const GRACE_MS = 3000

export class DaemonClient {
  #nextId = 1
  readonly #pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()

  private constructor(
    readonly name: string,
    private readonly socket: Socket,
  ) {
    createInterface({ input: socket }).on('line', (line) => {
      let msg: Record<string, unknown>
      try {
        msg = JSON.parse(line) as Record<string, unknown>
      } catch {
        return
      }
      const p = typeof msg.id === 'number' ? this.#pending.get(msg.id) : undefined
      if (!p) return
      this.#pending.delete(msg.id as number)
      clearTimeout(p.timer)
      p.resolve(msg)
    })
    const failAll = (why: string): void => {
      for (const [id, p] of this.#pending) {
        clearTimeout(p.timer)
        p.reject(new LabDaemonError(`${name}: ${why}`))
        this.#pending.delete(id)
      }
    }
    socket.on('error', (err) => failAll(`connection failed: ${err.message}`))
    socket.on('close', () => failAll('the daemon closed the connection'))
  }

  /** Connects to the daemon of endpoint `name` at `path`. */
  static connect(name: string, path: string, timeoutMs = 2000): Promise<DaemonClient> {
    return new Promise((resolve, reject) => {
      const socket = connect(path)
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new LabDaemonError(`${name}: no answer on ${path} within ${timeoutMs} ms`))
      }, timeoutMs)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        resolve(new DaemonClient(name, socket))
      })
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'the daemon is not running (is the lab up?)' : err.message
        reject(new LabDaemonError(`${name}: cannot reach its daemon at ${path}: ${why}`))
      })
    })
  }

  #request(body: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    const id = this.#nextId++
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new LabDaemonError(`${this.name}: no answer to ${String(body.op)} within ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, { resolve, reject, timer })
      this.socket.write(`${JSON.stringify({ ...body, id })}\n`)
    })
  }

  async ping(timeoutMs = 2000): Promise<{ key: string; pid: number }> {
    const r = await this.#request({ op: 'ping' }, timeoutMs)
    return { key: String(r.key), pid: Number(r.pid) }
  }

  async probe(req: Omit<ProbeRequest, 'id' | 'op'>): Promise<ProbeReply> {
    return (await this.#request({ op: 'probe', ...req }, req.timeoutMs + GRACE_MS)) as unknown as ProbeReply
  }

  close(): void {
    this.socket.end()
    this.socket.destroy()
  }
}
