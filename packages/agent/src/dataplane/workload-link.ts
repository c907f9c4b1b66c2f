/**
 * A workload's link to its host, Calico-style: a veth pair with one end in the workload's
 * network namespace, the workload's addresses as /32 and /128, and a link-local gateway.
 *
 *   workload netns                          host netns
 *   eth0  10.64.1.7/32                      fnw3a9c...  (MAC ee:ee:ee:ee:ee:ee, proxy_arp=1)
 *     169.254.1.1 dev eth0 scope link         10.64.1.7 dev fnw3a9c... scope link
 *     default via 169.254.1.1 dev eth0        fe80::1/64 (IPv6 gateway), fd00::7 dev fnw3a9c...
 *     neigh 169.254.1.1 -> ee:ee:...  (permanent)
 *     default via fe80::1 dev eth0 (IPv6)
 *
 * The workload sends everything to 169.254.1.1, an address nobody has; the host answers for it
 * (proxy ARP, and a permanent neighbour entry so the first packet does not wait for an ARP reply
 * that proxy ARP only gives when the host has a route there) and routes the packet on. Every
 * host veth has the same MAC and the same IPv6 gateway address: they are separate links, and
 * the workload never needs to learn anything about its host. The host must forward
 * (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding): the agent sees to that before it attaches
 * (host-forwarding.ts), not this module.
 *
 * Used by the agent for CNI pods and for the lab's workloads. Links, addresses and routes are
 * made by `ip` with an argument array (no shell), in a namespace through `ip -n` (a named
 * namespace) or `nsenter`; the host veth's settings are written as files under the host's
 * /proc/sys/net (proc-sys-net.ts; `procSysNet`, which a container mounts elsewhere). What to do
 * is worked out first (attachPlan), then done. Each process costs a fork and exec of several
 * milliseconds, and a CNI ADD waits for all of them, so an attach is two processes: one
 * `ip -batch -` on the host side (the pair, the host address and routes), then one `ip -batch -`
 * in the workload, at the same time as the host settings are written.
 */
import { execFile } from 'node:child_process'
import { createHash } from 'node:crypto'
import { FlatnetError, InvalidArgumentError, formatIp, parseCidr, parseIp, type Cidr } from '@flatnet/core'
import { DEFAULT_PROC_SYS_NET, procSysNetFailure, readSysctlFile, sysctlFile, writeSysctlFile } from './proc-sys-net.js'

/** A command or setting that sets up, checks or removes a workload link failed or timed out. */
export class WorkloadLinkError extends FlatnetError {
  readonly code = 'ERR_WORKLOAD_LINK'
  /** For `ip -batch`: the 1-based line it stopped at (also in `command`). */
  readonly batchLine: number | undefined
  /** The command was killed after the timeout. */
  readonly timedOut: boolean
  /** For a setting written as a file: the file, and the errno name (`EROFS`) of the failure. */
  readonly path: string | undefined
  readonly errno: string | undefined
  constructor(
    /** The command line; for `ip -batch`, with the failing line; for a setting, `write 1 to <file>`. */
    readonly command: string,
    reason: string,
    details: { readonly batchLine?: number; readonly timedOut?: boolean; readonly path?: string; readonly errno?: string } = {},
  ) {
    super(`${command}: ${reason}`)
    this.batchLine = details.batchLine
    this.timedOut = details.timedOut ?? false
    this.path = details.path
    this.errno = details.errno
  }
}

/** The gateway every workload routes through; link-local, never on the wire as a source. */
export const WORKLOAD_GATEWAY_V4 = '169.254.1.1'
export const WORKLOAD_GATEWAY_V6 = 'fe80::1'
/** The MAC of every host-side veth (as Calico): the workload's static neighbour entry points at it. */
export const HOST_VETH_MAC = 'ee:ee:ee:ee:ee:ee'

export const WORKLOAD_LINK_DEFAULTS = Object.freeze({
  ifname: 'eth0',
  mtu: 1420,
  ipPath: 'ip',
  nsenterPath: 'nsenter',
  /** The host's /proc/sys/net, where the host veth's settings are written (proc-sys-net.ts). */
  procSysNet: DEFAULT_PROC_SYS_NET,
  /** Per command. */
  commandTimeoutMs: 10_000,
})

export interface WorkloadLinkSpec {
  /** The workload's network namespace: a name (under /run/netns) or a path (/proc/PID/ns/net). */
  readonly netns: string
  /** The interface inside the workload; default eth0. */
  readonly ifname?: string | undefined
  /** The host-side veth: unique on the host, at most 15 characters (see workloadInterfaceName). */
  readonly hostIfname: string
  /** The workload's addresses, each `a.b.c.d/32` or `x::y/128` (a bare address means the same). */
  readonly addresses: readonly string[]
  /** Both ends; default 1420 (room for WireGuard on a 1500-byte underlay). */
  readonly mtu?: number | undefined
  /** The host side's namespace (name or path); undefined: the namespace this process runs in. */
  readonly hostNetns?: string | undefined
}

export interface WorkloadLinkOptions {
  readonly ipPath?: string
  readonly nsenterPath?: string
  /**
   * The host's /proc/sys/net (absolute; the agent's `dataplane.procSysNet`). Used when the host
   * side is this process's network namespace; with `hostNetns` see attachPlan.
   */
  readonly procSysNet?: string | undefined
  readonly commandTimeoutMs?: number
}

/** One thing checkWorkload found missing or wrong. */
export interface WorkloadLinkProblem {
  readonly what: 'host-interface' | 'workload-interface' | 'address' | 'route' | 'neighbor' | 'sysctl'
  /** Which side it concerns. */
  readonly side: 'host' | 'workload'
  readonly detail: string
}

export interface WorkloadLinkCheck {
  readonly ok: boolean
  readonly problems: readonly WorkloadLinkProblem[]
}

/** A validated spec with every default filled in. */
export interface ResolvedWorkloadLink {
  readonly netns: string
  readonly ifname: string
  readonly hostIfname: string
  /** Host addresses, normalised: `10.1.2.3/32`, `fd00::3/128`. */
  readonly addresses: readonly Cidr[]
  readonly mtu: number
  readonly hostNetns: string | undefined
}

/** One command of a plan, and where it runs. */
export interface PlannedCommand {
  readonly where: 'host' | 'workload'
  /** The program and its arguments: `['ip', '-batch', '-']` or `['sysctl', '-q', '-w', ...]`. */
  readonly argv: readonly string[]
  /** For `ip -batch -`: the lines it reads on stdin, one `ip` command each (without `ip`). */
  readonly batch?: readonly string[]
}

/** A host setting written as a file under the host's /proc/sys/net: no process. */
export interface PlannedWrite {
  readonly where: 'host'
  /** e.g. `/proc/sys/net/ipv4/conf/fnw3a9c.../proxy_arp` */
  readonly path: string
  readonly value: string
}

export type PlannedAction = PlannedCommand | PlannedWrite

export function isPlannedWrite(action: PlannedAction): action is PlannedWrite {
  return 'path' in action
}

/** One step of an attach: actions that may run at the same time; a step starts when the one before it is done. */
export type PlannedStep = readonly PlannedAction[]

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/
const NETNS_NAME = /^[A-Za-z0-9_.-]{1,255}$/

function checkIfname(name: string, field: string): void {
  if (!IFNAME.test(name) || name === '.' || name === '..') {
    throw new InvalidArgumentError(`${field} "${name}": an interface name is 1 to 15 letters, digits, "_", "-" or "."`)
  }
}

/** What `ip -batch` cannot take inside a word: it splits lines on blanks, and `#` starts a comment. */
const BATCH_UNSAFE = /[\s"'#\\]/

function checkProcSysNet(root: string): void {
  if (!root.startsWith('/')) throw new InvalidArgumentError(`procSysNet "${root}": must be an absolute path, such as /proc/sys/net`)
}

function checkNetns(netns: string, field: string): void {
  if (netns.includes('/') ? !netns.startsWith('/') : !NETNS_NAME.test(netns) || netns === '.' || netns === '..') {
    throw new InvalidArgumentError(`${field} "${netns}": give a network namespace name (as in "ip netns list") or an absolute path such as /proc/PID/ns/net`)
  }
  if (BATCH_UNSAFE.test(netns)) throw new InvalidArgumentError(`${field} "${netns}": a namespace path must not contain blanks, quotes, "#" or "\\"`)
}

/** Checks a spec and fills in defaults; throws InvalidArgumentError naming the bad field. */
export function resolveWorkloadLink(spec: WorkloadLinkSpec): ResolvedWorkloadLink {
  checkNetns(spec.netns, 'netns')
  if (spec.hostNetns !== undefined) checkNetns(spec.hostNetns, 'hostNetns')
  const ifname = spec.ifname ?? WORKLOAD_LINK_DEFAULTS.ifname
  checkIfname(ifname, 'ifname')
  checkIfname(spec.hostIfname, 'hostIfname')
  const mtu = spec.mtu ?? WORKLOAD_LINK_DEFAULTS.mtu
  if (!Number.isInteger(mtu) || mtu < 1280 || mtu > 65535) throw new InvalidArgumentError(`mtu ${mtu}: must be an integer from 1280 to 65535`)
  if (spec.addresses.length === 0) throw new InvalidArgumentError('addresses: a workload needs at least one address')
  const addresses: Cidr[] = []
  for (const text of spec.addresses) {
    const cidr = parseCidr(text.includes('/') ? text : `${text}/${text.includes(':') ? 128 : 32}`)
    const hostLength = cidr?.family === 4 ? 32 : 128
    if (!cidr || cidr.prefix !== hostLength) {
      throw new InvalidArgumentError(`address "${text}": must be one address with a host mask, e.g. 10.64.1.7/32 or fd00::7/128`)
    }
    if (addresses.some((a) => formatIp(a.network) === formatIp(cidr.network))) throw new InvalidArgumentError(`address "${text}" is listed twice`)
    addresses.push({ family: cidr.family, network: cidr.network, prefix: cidr.prefix })
  }
  return { netns: spec.netns, ifname, hostIfname: spec.hostIfname, addresses, mtu, hostNetns: spec.hostNetns }
}

/**
 * A host-side interface name for a workload: `prefix` and a hash of its key (e.g. the
 * container ID or `namespace/name`), 15 characters, stable across restarts.
 */
export function workloadInterfaceName(key: string, prefix = 'fnw'): string {
  if (!/^[a-z]{1,5}$/.test(prefix)) throw new InvalidArgumentError(`interface prefix "${prefix}": 1 to 5 lowercase letters`)
  return prefix + createHash('sha256').update(key).digest('hex').slice(0, 15 - prefix.length)
}

const hostText = (c: Cidr): string => `${formatIp(c.network)}/${c.prefix}`

/**
 * The commands that attach a workload, step by step. Pure.
 *
 * 1. host, `ip -batch -`: the pair (its workload end made directly in the workload namespace
 *    under its final name: no temporary name that could collide on the host), the host end
 *    up, the IPv6 gateway address, a route per workload address. The routes may come before
 *    the workload end is up: a route through an up link without carrier is accepted.
 * 2. at once, as both need only the pair:
 *    - host: proxy ARP and its delay, and no router advertisements on the host end, each a
 *      file written under `procSysNet` (the host veth's entries appear with the pair);
 *    - workload, `ip -batch -`: addresses, the link up, then the gateway routes (a route
 *      through an interface needs it up) and the permanent neighbour entry.
 *
 * With `hostNetns` (tests, the lab's hosts) the host side is another network namespace, and
 * the files would be the wrong ones: /proc/sys/net shows the settings of the namespace of the
 * thread that opens it, Node has no setns, and its file calls run on libuv's worker threads,
 * whose namespace this code cannot choose. Only then the host settings are one `sysctl` run in
 * that namespace (through nsenter, which switches before sysctl opens anything), and
 * `procSysNet` is not used.
 *
 * The first line of step 1 makes the pair; nothing before it changes the kernel, which lets a
 * failure on that line leave alone an interface of that name that was there already.
 */
export function attachPlan(link: ResolvedWorkloadLink, procSysNet: string = WORKLOAD_LINK_DEFAULTS.procSysNet): PlannedStep[] {
  const { ifname, hostIfname, mtu } = link
  const v4 = link.addresses.filter((a) => a.family === 4)
  const v6 = link.addresses.filter((a) => a.family === 6)
  const batch = (where: 'host' | 'workload', lines: string[]): PlannedCommand => ({ where, argv: ['ip', '-batch', '-'], batch: lines })

  const hostLines = [
    `link add name ${hostIfname} mtu ${mtu} address ${HOST_VETH_MAC} type veth peer name ${ifname} mtu ${mtu} netns ${link.netns}`,
    `link set dev ${hostIfname} up`,
  ]
  // nodad: the host answers for fe80::1 on every veth; there is nothing to detect.
  if (v6.length > 0) hostLines.push(`addr replace ${WORKLOAD_GATEWAY_V6}/64 dev ${hostIfname} nodad`)
  for (const a of v4) hostLines.push(`route replace ${hostText(a)} dev ${hostIfname} scope link`)
  for (const a of v6) hostLines.push(`route replace ${hostText(a)} dev ${hostIfname}`)

  // [path under /proc/sys/net, value]
  const settings: [string[], string][] = [
    [['ipv4', 'conf', hostIfname, 'proxy_arp'], '1'],
    // Proxy ARP answers after a random delay of up to proxy_delay (0.8 s by default).
    [['ipv4', 'neigh', hostIfname, 'proxy_delay'], '0'],
  ]
  // The host veth must not configure itself from router advertisements.
  if (v6.length > 0) settings.push([['ipv6', 'conf', hostIfname, 'accept_ra'], '0'])
  const hostSettings: PlannedAction[] =
    link.hostNetns === undefined
      ? settings.map(([parts, value]) => ({ where: 'host', path: sysctlFile(procSysNet, ...parts), value }))
      : // With '/' between the parts sysctl takes the name as a path: interface names may hold dots.
        [{ where: 'host', argv: ['sysctl', '-q', '-w', ...settings.map(([parts, value]) => `net/${parts.join('/')}=${value}`)] }]

  const workloadLines = [`link set dev lo up`]
  for (const a of v4) workloadLines.push(`addr add ${hostText(a)} dev ${ifname}`)
  // nodad: the address is usable at once, and it is unique by IPAM.
  for (const a of v6) workloadLines.push(`addr add ${hostText(a)} dev ${ifname} nodad`)
  workloadLines.push(`link set dev ${ifname} up`)
  if (v4.length > 0) {
    workloadLines.push(
      `route replace ${WORKLOAD_GATEWAY_V4} dev ${ifname} scope link`,
      `route replace default via ${WORKLOAD_GATEWAY_V4} dev ${ifname}`,
      `neigh replace ${WORKLOAD_GATEWAY_V4} lladdr ${HOST_VETH_MAC} dev ${ifname} nud permanent`,
    )
  }
  if (v6.length > 0) workloadLines.push(`route replace default via ${WORKLOAD_GATEWAY_V6} dev ${ifname}`)

  return [[batch('host', hostLines)], [...hostSettings, batch('workload', workloadLines)]]
}

function netnsPath(netns: string): string {
  return netns.startsWith('/') ? netns : `/run/netns/${netns}`
}

interface RunOptions {
  /** Resolve with ok: false instead of throwing when the command exits with an error. */
  readonly allowFail?: boolean
  /** Lines for `ip -batch -`, written to its stdin. */
  readonly batch?: readonly string[]
}

interface Runner {
  (where: 'host' | 'workload', argv: readonly string[], opts?: RunOptions): Promise<{ ok: boolean; stdout: string; stderr: string }>
}

/** `ip -batch` stops at the first failing line and names it: "Command failed -:3". */
const BATCH_FAILED = /Command failed -:(\d+)/

/**
 * Runs commands on either side; `netns` may be left out when nothing runs in the workload.
 * `ip` enters a named namespace itself (`ip -n`), which saves starting nsenter.
 */
function makeRunner(link: { netns?: string | undefined; hostNetns: string | undefined }, options: WorkloadLinkOptions): Runner {
  const o = { ...WORKLOAD_LINK_DEFAULTS, ...options }
  const tools: Record<string, string> = { ip: o.ipPath }
  return (where, argv, opts = {}) => {
    const tool = tools[argv[0] as string] ?? (argv[0] as string)
    if (where === 'workload' && link.netns === undefined) throw new Error('workload command without a workload namespace')
    const ns = where === 'workload' ? link.netns : link.hostNetns
    const full =
      ns === undefined
        ? [tool, ...argv.slice(1)]
        : argv[0] === 'ip' && !ns.includes('/')
          ? [tool, '-n', ns, ...argv.slice(1)]
          : [o.nsenterPath, `--net=${netnsPath(ns)}`, tool, ...argv.slice(1)]
    const shown = full.join(' ')
    return new Promise((resolve, reject) => {
      const child = execFile(full[0]!, full.slice(1), { timeout: o.commandTimeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
        if (!err) return resolve({ ok: true, stdout, stderr })
        const e = err as NodeJS.ErrnoException & { killed?: boolean; signal?: string | null }
        // nsenter exits with 127 and says so when the command it was to run is missing.
        if (e.code === 'ENOENT' || /failed to execute/.test(stderr)) {
          const missing = e.code === 'ENOENT' ? full[0] : tool
          return reject(new WorkloadLinkError(shown, `${missing} is not installed (Debian packages iproute2, util-linux, procps)`))
        }
        if (e.killed || e.signal) return reject(new WorkloadLinkError(shown, `did not finish within ${o.commandTimeoutMs} ms`, { timedOut: true }))
        if (opts.allowFail) return resolve({ ok: false, stdout, stderr })
        const output = stderr.trim().split('\n').filter((l) => !BATCH_FAILED.test(l))
        const reason = output.slice(-3).join(' | ') || `exit status ${String(e.code)}`
        const failed = BATCH_FAILED.exec(stderr)
        if (opts.batch && failed) {
          const line = Number(failed[1])
          return reject(new WorkloadLinkError(`${shown}, line ${line}: ip ${opts.batch[line - 1] ?? '?'}`, reason, { batchLine: line }))
        }
        reject(new WorkloadLinkError(shown, reason))
      })
      // An exec failure (ENOENT) closes stdin before the write: the callback above reports it.
      child.stdin?.on('error', () => undefined)
      child.stdin?.end(opts.batch ? `${opts.batch.join('\n')}\n` : undefined)
    })
  }
}

/** Writes a planned host setting; a failure is a WorkloadLinkError naming the file and the errno. */
async function writeSetting(w: PlannedWrite, procSysNet: string): Promise<void> {
  try {
    await writeSysctlFile(w.path, w.value)
  } catch (err) {
    const f = procSysNetFailure(err, procSysNet, 'write')
    throw new WorkloadLinkError(`write ${w.value} to ${w.path}`, f.reason, { path: w.path, errno: f.errno })
  }
}

/**
 * Makes the veth pair, addresses and routes. Fails (and changes nothing) when the host
 * interface already exists; on any later failure the pair is removed again.
 */
export async function attachWorkload(spec: WorkloadLinkSpec, options: WorkloadLinkOptions = {}): Promise<ResolvedWorkloadLink> {
  const link = resolveWorkloadLink(spec)
  const procSysNet = options.procSysNet ?? WORKLOAD_LINK_DEFAULTS.procSysNet
  checkProcSysNet(procSysNet)
  const run = makeRunner(link, options)
  const [[makePair], ...rest] = attachPlan(link, procSysNet) as [[PlannedCommand], ...PlannedStep[]]
  try {
    await run(makePair.where, makePair.argv, { batch: makePair.batch })
  } catch (err) {
    // `link add` is the first line and is all or nothing: when ip stopped there (or could not
    // read its arguments, which only the namespace on that line can get wrong), nothing was
    // made, and an interface of that name is someone else's. Otherwise the pair may be ours.
    const madeNothing = err instanceof WorkloadLinkError && !err.timedOut && (err.batchLine === undefined || err.batchLine === 1)
    if (!madeNothing) await removePair(run, link)
    else if ((await run('host', ['ip', 'link', 'show', 'dev', link.hostIfname], { allowFail: true })).ok) {
      throw new WorkloadLinkError(`attach ${link.hostIfname}`, `interface ${link.hostIfname} exists already on the host; detach the workload first or pick another name`)
    }
    throw err
  }
  for (const step of rest) {
    const results = await Promise.allSettled(step.map((a) => (isPlannedWrite(a) ? writeSetting(a, procSysNet) : run(a.where, a.argv, { batch: a.batch }))))
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) {
      await removePair(run, link)
      throw failed.reason
    }
  }
  return link
}

/** Deleting either end deletes the pair, and with it every address and route made with it. */
async function removePair(run: Runner, link: ResolvedWorkloadLink): Promise<void> {
  await run('host', ['ip', 'link', 'del', 'dev', link.hostIfname], { allowFail: true }).catch(() => undefined)
}

const GONE = /does not exist|Cannot find device|No such file|Cannot open network namespace|not exist/i

/**
 * Removes the workload's link (both ends go with the host end). Idempotent: a missing host
 * namespace, a missing link or a missing workload namespace is not an error. Refuses to delete
 * a host interface of that name that is not a veth. `netns` is not needed (the workload end
 * goes with the host end) and is accepted so that the spec given to attachWorkload can be passed.
 */
export async function detachWorkload(spec: Pick<WorkloadLinkSpec, 'hostIfname' | 'hostNetns'> & { readonly netns?: string | undefined }, options: WorkloadLinkOptions = {}): Promise<{ removed: boolean }> {
  checkIfname(spec.hostIfname, 'hostIfname')
  if (spec.hostNetns !== undefined) checkNetns(spec.hostNetns, 'hostNetns')
  const run = makeRunner({ hostNetns: spec.hostNetns }, options)
  const shown = await run('host', ['ip', '-j', '-d', 'link', 'show', 'dev', spec.hostIfname], { allowFail: true })
  if (!shown.ok) {
    if (GONE.test(shown.stderr)) return { removed: false }
    throw new WorkloadLinkError(`ip link show dev ${spec.hostIfname}`, shown.stderr.trim())
  }
  const kind = (parseJson(shown.stdout)[0] as { linkinfo?: { info_kind?: string } } | undefined)?.linkinfo?.info_kind
  if (kind !== 'veth') throw new WorkloadLinkError(`detach ${spec.hostIfname}`, `interface ${spec.hostIfname} is a ${kind ?? 'device of unknown kind'}, not a workload veth; left alone`)
  const del = await run('host', ['ip', 'link', 'del', 'dev', spec.hostIfname], { allowFail: true })
  if (!del.ok && !GONE.test(del.stderr)) throw new WorkloadLinkError(`ip link del dev ${spec.hostIfname}`, del.stderr.trim())
  return { removed: del.ok }
}

function sameIp(text: string, formatted: string): boolean {
  const ip = parseIp(text)
  return ip !== undefined && formatIp(ip) === formatted
}

function parseJson(text: string): unknown[] {
  try {
    const v = JSON.parse(text) as unknown
    return Array.isArray(v) ? v : []
  } catch {
    return []
  }
}

interface IpLink {
  readonly ifname?: string
  readonly flags?: readonly string[]
  readonly mtu?: number
  readonly address?: string
  readonly linkinfo?: { info_kind?: string }
  readonly addr_info?: readonly { family?: string; local?: string; prefixlen?: number }[]
}
interface IpRoute {
  readonly dst?: string
  readonly gateway?: string
  readonly dev?: string
  readonly scope?: string
}
interface IpNeigh {
  readonly dst?: string
  readonly lladdr?: string
  readonly state?: readonly string[]
}

/** What the kernel shows versus what attachWorkload makes; every difference is a problem. */
export async function checkWorkload(spec: WorkloadLinkSpec, options: WorkloadLinkOptions = {}): Promise<WorkloadLinkCheck> {
  const link = resolveWorkloadLink(spec)
  const procSysNet = options.procSysNet ?? WORKLOAD_LINK_DEFAULTS.procSysNet
  checkProcSysNet(procSysNet)
  const run = makeRunner(link, options)
  // As attachWorkload: the file under procSysNet, or with hostNetns `sysctl` in that namespace.
  const hostSetting = async (parts: readonly string[]): Promise<string> =>
    link.hostNetns === undefined
      ? readSysctlFile(sysctlFile(procSysNet, ...parts)).catch(() => '')
      : (await run('host', ['sysctl', '-n', `net/${parts.join('/')}`], { allowFail: true })).stdout.trim()
  const problems: WorkloadLinkProblem[] = []
  const problem = (what: WorkloadLinkProblem['what'], side: WorkloadLinkProblem['side'], detail: string): void => void problems.push({ what, side, detail })
  const v4 = link.addresses.filter((a) => a.family === 4)
  const v6 = link.addresses.filter((a) => a.family === 6)

  const hostShow = await run('host', ['ip', '-j', '-d', 'link', 'show', 'dev', link.hostIfname], { allowFail: true })
  const hostLink = parseJson(hostShow.stdout)[0] as IpLink | undefined
  if (!hostShow.ok || !hostLink) {
    problem('host-interface', 'host', `${link.hostIfname} does not exist`)
  } else {
    if (hostLink.linkinfo?.info_kind !== 'veth') problem('host-interface', 'host', `${link.hostIfname} is not a veth`)
    if (!hostLink.flags?.includes('UP')) problem('host-interface', 'host', `${link.hostIfname} is down`)
    if (hostLink.mtu !== link.mtu) problem('host-interface', 'host', `${link.hostIfname} has MTU ${hostLink.mtu}, not ${link.mtu}`)
    if ((await hostSetting(['ipv4', 'conf', link.hostIfname, 'proxy_arp'])) !== '1') problem('sysctl', 'host', `net.ipv4.conf.${link.hostIfname}.proxy_arp is not 1`)
    const routes = [
      ...(parseJson((await run('host', ['ip', '-j', 'route', 'show', 'dev', link.hostIfname], { allowFail: true })).stdout) as IpRoute[]),
      ...(parseJson((await run('host', ['ip', '-j', '-6', 'route', 'show', 'dev', link.hostIfname], { allowFail: true })).stdout) as IpRoute[]),
    ]
    for (const a of link.addresses) {
      const want = formatIp(a.network)
      if (!routes.some((r) => r.dst !== undefined && (sameIp(r.dst, want) || r.dst === hostText(a)))) problem('route', 'host', `no route ${hostText(a)} dev ${link.hostIfname}`)
    }
  }

  const wlShow = await run('workload', ['ip', '-j', 'addr', 'show', 'dev', link.ifname], { allowFail: true })
  const wl = parseJson(wlShow.stdout)[0] as IpLink | undefined
  if (!wlShow.ok || !wl) {
    const why = /network namespace|No such file/i.test(wlShow.stderr) ? `the namespace ${link.netns} cannot be entered` : `${link.ifname} does not exist`
    problem('workload-interface', 'workload', why)
    return { ok: false, problems }
  }
  if (!wl.flags?.includes('UP')) problem('workload-interface', 'workload', `${link.ifname} is down`)
  if (wl.mtu !== link.mtu) problem('workload-interface', 'workload', `${link.ifname} has MTU ${wl.mtu}, not ${link.mtu}`)
  for (const a of link.addresses) {
    const want = formatIp(a.network)
    const have = wl.addr_info?.some((i) => i.local !== undefined && sameIp(i.local, want) && i.prefixlen === a.prefix)
    if (!have) problem('address', 'workload', `${hostText(a)} is not on ${link.ifname}`)
  }
  if (v4.length > 0) {
    const routes = parseJson((await run('workload', ['ip', '-j', 'route', 'show'], { allowFail: true })).stdout) as IpRoute[]
    if (!routes.some((r) => r.dst === WORKLOAD_GATEWAY_V4 && r.dev === link.ifname && r.scope === 'link')) {
      problem('route', 'workload', `no route ${WORKLOAD_GATEWAY_V4} dev ${link.ifname} scope link`)
    }
    if (!routes.some((r) => r.dst === 'default' && r.gateway === WORKLOAD_GATEWAY_V4 && r.dev === link.ifname)) {
      problem('route', 'workload', `no route default via ${WORKLOAD_GATEWAY_V4} dev ${link.ifname}`)
    }
    const neigh = parseJson((await run('workload', ['ip', '-j', 'neigh', 'show', 'dev', link.ifname], { allowFail: true })).stdout) as IpNeigh[]
    if (!neigh.some((n) => n.dst === WORKLOAD_GATEWAY_V4 && n.lladdr === HOST_VETH_MAC && n.state?.includes('PERMANENT'))) {
      problem('neighbor', 'workload', `no permanent neighbour ${WORKLOAD_GATEWAY_V4} lladdr ${HOST_VETH_MAC} on ${link.ifname}`)
    }
  }
  if (v6.length > 0) {
    const routes = parseJson((await run('workload', ['ip', '-j', '-6', 'route', 'show'], { allowFail: true })).stdout) as IpRoute[]
    if (!routes.some((r) => r.dst === 'default' && r.gateway === WORKLOAD_GATEWAY_V6 && r.dev === link.ifname)) {
      problem('route', 'workload', `no route default via ${WORKLOAD_GATEWAY_V6} dev ${link.ifname}`)
    }
  }
  return { ok: problems.length === 0, problems }
}
