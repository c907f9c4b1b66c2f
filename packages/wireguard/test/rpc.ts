/**
 * Test scripts that must run inside a network namespace (a flatnet node, a hand-driven peer) are
 * child processes; the test talks to them with one JSON object per line: `{id, cmd, args}` on
 * the child's stdin, `{id, ok, result | error}` on its stdout. Requests run concurrently, so a
 * long one (a flood) can be in progress while others are answered.
 */
import type { ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Handlers = Record<string, (args: any) => unknown>

/** Child side: answers requests until stdin closes, then calls `onEnd` (the parent is gone). */
export function serveRpc(handlers: Handlers, onEnd: () => void): void {
  const lines = createInterface({ input: process.stdin })
  lines.on('line', (line) => {
    let id: unknown
    void (async () => {
      const req = JSON.parse(line) as { id: unknown; cmd: string; args?: unknown }
      id = req.id
      const handler = handlers[req.cmd]
      if (!handler) throw new Error(`unknown command "${req.cmd}"`)
      return handler(req.args ?? {})
    })().then(
      (result) => process.stdout.write(`${JSON.stringify({ id, ok: true, result: result ?? null })}\n`),
      (err: unknown) => process.stdout.write(`${JSON.stringify({ id, ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) })}\n`),
    )
  })
  lines.on('close', onEnd)
}

/** Parent side: a bounded call per request; a child that exits fails every pending call. */
export class RpcClient {
  private nextId = 1
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>()
  private exited = false

  constructor(
    private readonly child: ChildProcess,
    private readonly output: () => string,
  ) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let msg: { id: number; ok: boolean; result?: unknown; error?: string }
      try {
        msg = JSON.parse(line) as typeof msg
      } catch {
        return
      }
      const p = this.pending.get(msg.id)
      if (!p) return
      this.pending.delete(msg.id)
      if (msg.ok) p.resolve(msg.result)
      else p.reject(new Error(msg.error))
    })
    child.once('close', (code, signal) => {
      this.exited = true
      for (const p of this.pending.values()) p.reject(new Error(`the test child exited (${signal ?? code}) mid-call:\n${this.output().slice(-2000)}`))
      this.pending.clear()
    })
  }

  call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<T> {
    if (this.exited) return Promise.reject(new Error(`the test child has exited:\n${this.output().slice(-2000)}`))
    const id = this.nextId++
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id)
        reject(new Error(`"${cmd}" got no answer within ${timeoutMs} ms:\n${this.output().slice(-2000)}`))
      }, timeoutMs)
      this.pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer)
          resolve(v as T)
        },
        reject: (e) => {
          clearTimeout(timer)
          reject(e)
        },
      })
      this.child.stdin!.write(`${JSON.stringify({ id, cmd, args })}\n`)
    })
  }
}
