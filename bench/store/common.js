// Helpers shared by the benchmark's parent and its child processes.
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

/**
 * Wall-clock milliseconds with sub-millisecond resolution. Date.now() alone has 1 ms steps,
 * too coarse for deliveries that take a few ms; timeOrigin is the same wall clock in every
 * process, and the parent also measures each child's offset (see clockOffset in run.js).
 */
export const wallNow = () => performance.timeOrigin + performance.now()

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

/** Percentiles by nearest rank, which never invents a value that was not measured. */
export function stats(samples) {
  if (samples.length === 0) return { n: 0, min: NaN, p50: NaN, p99: NaN, max: NaN, mean: NaN }
  const s = Float64Array.from(samples).sort()
  const q = (f) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(f * s.length) - 1))]
  let sum = 0
  for (const x of s) sum += x
  return { n: s.length, min: s[0], p50: q(0.5), p99: q(0.99), max: s[s.length - 1], mean: sum / s.length }
}

/** Resident set size of any process of ours, from /proc; undefined once it is gone. */
export function rssOf(pid) {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : undefined
  } catch {
    return undefined
  }
}

/** The soft and hard limits on open files of this process. */
export function openFileLimits() {
  try {
    const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    const num = (x) => (x === 'unlimited' ? Infinity : Number(x))
    return m ? { soft: num(m[1]), hard: num(m[2]) } : { soft: 1024, hard: 1024 }
  } catch {
    return { soft: 1024, hard: 1024 }
  }
}

/**
 * CPU time since boot, in clock ticks: of the whole machine (busy and total, all CPUs) and of
 * the given processes (this one with its reaped children, the others as they run). The
 * difference between two samples tells how much CPU other programs on the machine took while
 * the benchmark ran, which on a shared machine explains more than the load average does.
 */
export function cpuSample(pids) {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const total = fields.reduce((s, x) => s + x, 0)
  const busy = total - fields[3] - fields[4]
  let ours = 0
  for (const pid of [process.pid, ...pids]) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
      // utime, stime; and for ourselves also cutime, cstime (children already reaped).
      ours += f[11] + f[12] + (pid === process.pid ? f[13] + f[14] : 0)
    } catch {
      // gone: its time is in our cutime once reaped
    }
  }
  return { total, busy, ours, steal: fields[7] }
}

/** CPUs' worth of time used between two samples: by us, by everything else, and stolen by the host. */
export function cpuShare(a, b, cpuCount) {
  const wall = (b.total - a.total) / cpuCount
  if (wall <= 0) return { ours: 0, others: 0, steal: 0 }
  return { ours: (b.ours - a.ours) / wall, others: Math.max(0, b.busy - a.busy - (b.ours - a.ours)) / wall, steal: (b.steal - a.steal) / wall }
}
