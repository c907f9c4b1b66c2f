// CPU and memory of processes and of the whole machine, read from /proc.
import { readFileSync } from 'node:fs'

const TICKS = 100

/** The fields of /proc/<pid>/stat after the command name (f[11], f[12]: utime, stime); undefined once it is gone. */
function statFields(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ').map(Number)
  } catch {
    return undefined
  }
}

/** CPU seconds (user + system) a process has used so far; undefined once it is gone. */
export function cpuSecondsOf(pid) {
  const f = statFields(pid)
  return f && (f[11] + f[12]) / TICKS
}

/** Peak resident set (VmHWM) and current one (VmRSS) of a process, in bytes. */
export function memoryOf(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN) * 1024
    return { peak: kb('VmHWM'), now: kb('VmRSS') }
  } catch {
    return { peak: NaN, now: NaN }
  }
}

/** Resident set size of a process, in bytes; undefined once it is gone. */
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
    const f = statFields(pid)
    // utime, stime; and for ourselves also cutime, cstime (children already reaped). A process
    // that is gone has its time in our cutime once reaped.
    if (f) ours += f[11] + f[12] + (pid === process.pid ? f[13] + f[14] : 0)
  }
  return { total, busy, ours, steal: fields[7] }
}

/** CPUs' worth of time used between two samples: by us, by everything else, and stolen by the host. */
export function cpuShare(a, b, cpuCount) {
  const wall = (b.total - a.total) / cpuCount
  if (wall <= 0) return { ours: 0, others: 0, steal: 0 }
  return { ours: (b.ours - a.ours) / wall, others: Math.max(0, b.busy - a.busy - (b.ours - a.ours)) / wall, steal: (b.steal - a.steal) / wall }
}
