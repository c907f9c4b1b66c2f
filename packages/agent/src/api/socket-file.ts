/**
 * The unix socket file of the local API: its directory, a stale file left by an agent that died,
 * and a live agent that still answers on it.
 */
import { lstatSync, mkdirSync, unlinkSync } from 'node:fs'
import { connect } from 'node:net'
import { dirname } from 'node:path'
import { isMainThread } from 'node:worker_threads'
import { AgentAlreadyRunningError, AgentListenError } from './api-errors.js'

export type SocketProbe = 'absent' | 'stale' | 'live'

/** Whether something accepts connections on `path`; never throws for the expected outcomes. */
export function probeSocket(path: string, timeoutMs: number): Promise<SocketProbe> {
  return new Promise((resolve, reject) => {
    const s = connect({ path })
    const timer = setTimeout(() => {
      // A listener whose backlog is full still exists: count it as live rather than delete its socket.
      s.destroy()
      resolve('live')
    }, timeoutMs)
    s.once('connect', () => {
      clearTimeout(timer)
      s.destroy()
      resolve('live')
    })
    s.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer)
      if (err.code === 'ENOENT') resolve('absent')
      else if (err.code === 'ECONNREFUSED') resolve('stale')
      else reject(new AgentListenError(path, `cannot check for a running agent: ${err.message}`, err.code))
    })
  })
}

/**
 * Makes `path` free for a new listener: creates its directory (mode 0700) if missing, refuses if
 * a live agent answers there, removes a stale socket. Returns whether a stale one was removed.
 */
export async function claimSocketPath(path: string, probeTimeoutMs: number): Promise<{ removedStale: boolean }> {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 })
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    throw new AgentListenError(path, `cannot create the directory ${dirname(path)}: ${e.message}`, e.code)
  }
  let isSocket: boolean
  try {
    isSocket = lstatSync(path).isSocket()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { removedStale: false }
    throw err
  }
  if (!isSocket) throw new AgentListenError(path, 'the path exists and is not a socket; refusing to remove it')
  const probe = await probeSocket(path, probeTimeoutMs)
  if (probe === 'live') throw new AgentAlreadyRunningError(path)
  if (probe === 'absent') return { removedStale: false }
  try {
    unlinkSync(path)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code !== 'ENOENT') throw new AgentListenError(path, `cannot remove the stale socket: ${e.message}`, e.code)
  }
  return { removedStale: true }
}

/**
 * Runs `bind` (which must create the socket synchronously, as `server.listen(path)` does) with a
 * umask that leaves the socket 0600 from its first moment: a chmod afterwards would leave a
 * window in which anyone could connect.
 */
export function withPrivateUmask<T>(bind: () => T): T {
  // Worker threads may not change the umask; there the caller's chmod right after binding and
  // the 0700 directory are what keep others out.
  if (!isMainThread) return bind()
  const previous = process.umask(0o177)
  try {
    return bind()
  } finally {
    process.umask(previous)
  }
}
