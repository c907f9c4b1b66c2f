/**
 * The host's network settings as files: `net.ipv4.conf.<if>.proxy_arp` is
 * `<root>/ipv4/conf/<if>/proxy_arp`, where the root is normally /proc/sys/net.
 *
 * Reading and writing the files costs no process (a `sysctl` run costs a fork and exec of
 * several milliseconds), and the root can be moved: container runtimes mount /proc/sys
 * read-only in unprivileged containers, so the agent's DaemonSet mounts the host's
 * /proc/sys/net read-write at /host/proc/sys/net and names that (`dataplane.procSysNet`), as
 * Cilium does. Either mount shows the settings of the network namespace of the process that
 * opens the file, not of the mount: an agent in the host's network sees the host's interfaces.
 */
import { constants } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { posix } from 'node:path'

export const DEFAULT_PROC_SYS_NET = '/proc/sys/net'

/** `sysctlFile(root, 'ipv4', 'conf', 'fnw1', 'proxy_arp')`: interface names may hold dots, so no dotted names. */
export function sysctlFile(root: string, ...parts: readonly string[]): string {
  return posix.join(root, ...parts)
}

/** The dotted name of a setting under the root, for messages: `net.ipv4.conf.fnw1.proxy_arp`. */
export function sysctlName(...parts: readonly string[]): string {
  return ['net', ...parts].join('.')
}

/**
 * Writes a value. Opened without O_CREAT: a missing setting is ENOENT, never a new file
 * (under a root that is not procfs) or EACCES (procfs refuses to create). Throws the errno
 * error as node:fs gives it; see procSysNetFailure.
 */
export async function writeSysctlFile(path: string, value: string): Promise<void> {
  await writeFile(path, value, { flag: constants.O_WRONLY | constants.O_TRUNC })
}

/** The value, without its trailing newline. */
export async function readSysctlFile(path: string): Promise<string> {
  return (await readFile(path, 'utf8')).trim()
}

export interface ProcSysNetFailure {
  /** The errno name (`EROFS`), or `EUNKNOWN` when there is none. */
  readonly errno: string
  /** What went wrong and what to do about it. */
  readonly reason: string
}

/** An error of writeSysctlFile or readSysctlFile, explained for someone who configures `root`. */
export function procSysNetFailure(err: unknown, root: string, access: 'read' | 'write'): ProcSysNetFailure {
  const errno = (err as NodeJS.ErrnoException | undefined)?.code ?? 'EUNKNOWN'
  const base = `${errno}${err instanceof Error ? ` (${err.message.replace(/^[A-Z]+: /, '').replace(/, \w+ '.*'$/, '')})` : ''}`
  switch (errno) {
    case 'EROFS':
      return { errno, reason: `${base}: ${root} is mounted read-only; set dataplane.procSysNet to a read-write mount of the host's /proc/sys/net (in a container: a hostPath mount, as k8s/50-daemonset.yaml has at /host/proc/sys/net)` }
    case 'ENOENT':
      return { errno, reason: `${base}: no such setting under ${root}, which must be the host's /proc/sys/net (dataplane.procSysNet)` }
    case 'EACCES':
    case 'EPERM':
      return { errno, reason: `${base}: the agent needs root with CAP_NET_ADMIN to ${access} network settings` }
    default:
      return { errno, reason: base }
  }
}
