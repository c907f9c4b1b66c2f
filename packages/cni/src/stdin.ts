/**
 * Standard input, read whole but bounded: a runtime that never closes it, or sends more than a
 * network config could be, gets an I/O error (code 5) instead of a plugin that hangs or
 * buffers without end.
 */
import type { Readable } from 'node:stream'
import { CniInputError } from './cni-errors.js'

export const STDIN_DEFAULTS = Object.freeze({
  /** A GC request lists every attachment of the network; 4 MiB holds tens of thousands. */
  maxBytes: 4 * 1024 * 1024,
  timeoutMs: 10_000,
})

export function readInput(stream: Readable, options: Partial<typeof STDIN_DEFAULTS> = {}): Promise<string> {
  const { maxBytes, timeoutMs } = { ...STDIN_DEFAULTS, ...options }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let done = false
    const finish = (err: CniInputError | undefined): void => {
      if (done) return
      done = true
      clearTimeout(timer)
      stream.off('data', onData)
      stream.off('end', onEnd)
      stream.off('error', onError)
      if (err) {
        stream.destroy()
        reject(err)
      } else resolve(Buffer.concat(chunks).toString('utf8'))
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > maxBytes) return finish(new CniInputError(`standard input is larger than ${maxBytes} bytes`, 'a network config is far smaller; the runtime sent something else'))
      chunks.push(chunk)
    }
    const onEnd = (): void => finish(undefined)
    const onError = (err: Error): void => finish(new CniInputError(`cannot read standard input: ${err.message}`))
    const timer = setTimeout(() => finish(new CniInputError(`standard input did not end within ${timeoutMs} ms`, `${size} bytes read; the runtime must close standard input after the network config`)), timeoutMs)
    stream.on('data', onData)
    stream.once('end', onEnd)
    stream.once('error', onError)
  })
}
