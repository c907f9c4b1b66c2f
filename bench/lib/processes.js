// Child processes of a benchmark: stopped by pid with bounded waits, and worker processes
// driven over IPC whose messages are awaited by type, each with a time limit.
import { spawn } from 'node:child_process'
import { BenchError, disownPid, ownPid } from './cleanup.js'

export function waitExit(child, ms) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

export async function stopProcess(child, signal = 'SIGTERM', ms = 5_000) {
  if (child.exitCode === null && child.signalCode === null) {
    child.kill(signal)
    if (!(await waitExit(child, ms))) {
      child.kill('SIGKILL')
      await waitExit(child, ms)
    }
  }
  disownPid(child.pid)
}

/**
 * A node child process running `file` with IPC. Its stdout goes to stderr too, so that stdout
 * stays the report's. A message {type: 'error', message} from it fails every wait; `name` says
 * which worker in messages. `stop()` sends {type: 'exit'} and kills it if it does not go.
 */
export function spawnWorker(file, args = [], name = 'worker') {
  const child = spawn(process.execPath, [...process.execArgv, file, ...args], { stdio: ['ignore', 2, 2, 'ipc'] })
  ownPid(child.pid)
  const queue = []
  const waiters = []
  let failure
  const fail = (err) => {
    failure ??= err
    for (const w of waiters.splice(0)) w.reject(failure)
  }
  child.on('message', (m) => {
    if (m.type === 'error') return fail(new BenchError(`${name} pid ${child.pid}: ${m.message}`))
    const i = waiters.findIndex((w) => w.type === m.type)
    if (i >= 0) waiters.splice(i, 1)[0].resolve(m)
    else queue.push(m)
  })
  child.on('exit', (code, signal) => {
    disownPid(child.pid)
    fail(new BenchError(`${name} pid ${child.pid} exited (${code ?? signal})`))
  })
  child.on('error', (err) => fail(err))
  return {
    pid: child.pid,
    child,
    send: (m) => child.send(m),
    next(type, ms) {
      const i = queue.findIndex((m) => m.type === type)
      if (i >= 0) return Promise.resolve(queue.splice(i, 1)[0])
      if (failure) return Promise.reject(failure)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          const at = waiters.indexOf(w)
          if (at >= 0) waiters.splice(at, 1)
          reject(new BenchError(`${name} pid ${child.pid}: no "${type}" within ${ms} ms`))
        }, ms)
        const w = { type, resolve: (m) => (clearTimeout(timer), resolve(m)), reject: (e) => (clearTimeout(timer), reject(e)) }
        waiters.push(w)
      })
    },
    async stop() {
      if (child.connected) child.send({ type: 'exit' })
      if (!(await waitExit(child, 5_000))) await stopProcess(child, 'SIGKILL')
      disownPid(child.pid)
    },
  }
}
