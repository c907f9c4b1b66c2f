/**
 * The host forwards its workloads' packets: a workload routes everything to its host
 * (workload-link.ts), which passes it on to the overlay or to another workload. Linux does that
 * only with net.ipv4.ip_forward (IPv4) and net.ipv6.conf.all.forwarding (IPv6) set to 1, and
 * both are 0 on a fresh host. The agent sees to it itself, as Calico's felix does, rather than
 * leave it to whoever installed the host: before it attaches a workload, for each family of the
 * workload's addresses, it reads the setting and writes 1 where it is not, and logs the change.
 *
 * Only the families in use: with IPv6 forwarding on, Linux ignores router advertisements on
 * interfaces whose accept_ra is 1, which would take the default route from a node that gets
 * its IPv6 address by SLAAC. An IPv4-only pool leaves IPv6 alone.
 *
 * Checked on every attach (one read of procfs per family, well under a millisecond), so
 * forwarding switched off behind the agent's back is switched on again by the next attach.
 */
import { FlatnetError, parseIp, type IpFamily } from '@flatnet/core'
import { DEFAULT_PROC_SYS_NET, procSysNetFailure, readSysctlFile, sysctlFile, sysctlName, writeSysctlFile } from './proc-sys-net.js'

/** Forwarding could not be read or turned on; the workload was not attached. */
export class HostForwardingError extends FlatnetError {
  readonly code = 'ERR_HOST_FORWARDING'
  constructor(
    /** The file that could not be read or written. */
    readonly path: string,
    /** Its errno name (`EROFS`, `ENOENT`, ...). */
    readonly errno: string,
    message: string,
  ) {
    super(message)
  }
}

/** The setting that makes the host forward one family, relative to the procfs root. */
export const FORWARDING_SETTINGS: Readonly<Record<IpFamily, readonly string[]>> = Object.freeze({
  4: Object.freeze(['ipv4', 'ip_forward']),
  6: Object.freeze(['ipv6', 'conf', 'all', 'forwarding']),
})

/** A setting the agent changed. */
export interface ForwardingChange {
  /** `net.ipv4.ip_forward` */
  readonly sysctl: string
  readonly path: string
  /** The value it had. */
  readonly was: string
}

/**
 * Makes sure the host forwards `families`, through the settings under `procSysNet`; returns
 * what it changed (nothing when forwarding was on). Throws HostForwardingError.
 */
export async function ensureForwarding(procSysNet: string, families: Iterable<IpFamily>): Promise<ForwardingChange[]> {
  const changes = await Promise.all(
    [...new Set(families)].sort().map(async (family): Promise<ForwardingChange | undefined> => {
      const parts = FORWARDING_SETTINGS[family]
      const path = sysctlFile(procSysNet, ...parts)
      const sysctl = sysctlName(...parts)
      let was: string
      try {
        was = await readSysctlFile(path)
      } catch (err) {
        const f = procSysNetFailure(err, procSysNet, 'read')
        throw new HostForwardingError(path, f.errno, `cannot read ${sysctl} from ${path}: ${f.reason}${family === 6 && f.errno === 'ENOENT' ? ' (or IPv6 is disabled on this host)' : ''}`)
      }
      if (was === '1') return undefined
      try {
        await writeSysctlFile(path, '1')
      } catch (err) {
        const f = procSysNetFailure(err, procSysNet, 'write')
        throw new HostForwardingError(path, f.errno, `cannot turn on ${sysctl} (write 1 to ${path}), which the host needs to forward its workloads' IPv${family} packets: ${f.reason}`)
      }
      return { sysctl, path, was }
    }),
  )
  return changes.filter((c): c is ForwardingChange => c !== undefined)
}

export interface HostForwardingComponents {
  /** The host's /proc/sys/net (`dataplane.procSysNet`); default /proc/sys/net. */
  readonly procSysNet?: string | undefined
  readonly log: { info(obj: object, msg: string): void }
}

/** ensureForwarding for the workload attach path: concurrent attaches share one check per family. */
export class HostForwarding {
  private readonly pending = new Map<IpFamily, Promise<void>>()

  constructor(private readonly c: HostForwardingComponents) {}

  /** Makes sure the host forwards the families of `addresses` (IP addresses, CIDRs allowed). */
  ensureFor(addresses: readonly string[]): Promise<void> {
    const families = new Set<IpFamily>()
    for (const a of addresses) {
      const ip = parseIp(a.split('/')[0] as string)
      if (ip) families.add(ip.family)
    }
    return Promise.all([...families].map((f) => this.ensureFamily(f))).then(() => undefined)
  }

  private ensureFamily(family: IpFamily): Promise<void> {
    let p = this.pending.get(family)
    if (!p) {
      p = ensureForwarding(this.c.procSysNet ?? DEFAULT_PROC_SYS_NET, [family])
        .then((changes) => {
          for (const c of changes) this.c.log.info({ sysctl: c.sysctl, path: c.path, was: c.was }, `turned on ${c.sysctl}: the host forwards its workloads' packets`)
        })
        .finally(() => this.pending.delete(family))
      this.pending.set(family, p)
    }
    return p
  }
}
