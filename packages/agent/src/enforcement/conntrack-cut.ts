/**
 * Cutting connections a policy change no longer allows.
 *
 * The ruleset accepts `ct state established,related` before any policy rule, so a new ruleset
 * alone would let existing connections run on. After an apply, the cutter lists the kernel's
 * connection-tracking entries (the `conntrack` tool, Debian package `conntrack`), judges each
 * one that involves a local endpoint with the new snapshot exactly as the new table would
 * (`enforcedVerdicts`: `PolicySnapshot.evaluate` plus the failsafe exemptions), and deletes the
 * denied ones. The next packet of such a connection is then new to conntrack, meets the
 * policy rules and is dropped.
 *
 * The flow judged is the one the filter hooks see: the original source, and the reply's
 * source and source port as destination (the backend after a DNAT, which is where the
 * destination's ingress policy applies).
 *
 * Listing and choosing are pure (`parseConntrackLine`, `planConntrackCut`); only `cut()` runs
 * commands.
 */
import { formatIp, parseIp, type IpAddress, type Protocol } from '@flatnet/core'
import { enforcedVerdicts, type EnforcedVerdict, type NftRulesetInput, type PolicySnapshot } from '@flatnet/policy'
import { CommandNotRun, commandLine, inNetns, runCommand, tail } from './command.js'
import { ConntrackCommandError } from './errors.js'

export interface ConntrackTuple {
  readonly src: IpAddress
  readonly dst: IpAddress
  readonly sport: number
  readonly dport: number
}

export interface ConntrackEntry {
  readonly family: 4 | 6
  readonly protocol: Protocol
  readonly original: ConntrackTuple
  readonly reply: ConntrackTuple
}

const PROTOCOLS: Record<string, Protocol> = { tcp: 'TCP', udp: 'UDP', sctp: 'SCTP' }

/**
 * One line of `conntrack -L -o extended`, e.g.
 *   ipv4 2 tcp 6 431999 ESTABLISHED src=10.0.0.1 dst=10.0.0.2 sport=40000 dport=80 src=10.0.0.2 dst=10.0.0.1 sport=80 dport=40000 [ASSURED] mark=0 use=1
 * Undefined for protocols without ports (ICMP and others) and for lines that are not entries.
 */
export function parseConntrackLine(line: string): ConntrackEntry | undefined {
  const head = /^(ipv4|ipv6)\s+\d+\s+(tcp|udp|sctp)\s+\d+\s/.exec(line)
  if (!head) return undefined
  const values: Record<string, string[]> = { src: [], dst: [], sport: [], dport: [] }
  for (const m of line.matchAll(/\b(src|dst|sport|dport)=(\S+)/g)) values[m[1]!]!.push(m[2]!)
  const tuple = (i: number): ConntrackTuple | undefined => {
    const src = parseIp(values.src![i] ?? '')
    const dst = parseIp(values.dst![i] ?? '')
    const sport = Number(values.sport![i])
    const dport = Number(values.dport![i])
    if (!src || !dst || !Number.isInteger(sport) || !Number.isInteger(dport)) return undefined
    return { src, dst, sport, dport }
  }
  const original = tuple(0)
  const reply = tuple(1)
  if (!original || !reply) return undefined
  return { family: head[1] === 'ipv4' ? 4 : 6, protocol: PROTOCOLS[head[2]!]!, original, reply }
}

export interface DeniedConnection {
  readonly entry: ConntrackEntry
  readonly verdict: EnforcedVerdict
}

export interface ConntrackCutPlan {
  readonly denied: readonly DeniedConnection[]
  /** `conntrack -D` filter arguments, one deletion each. */
  readonly deletions: readonly (readonly string[])[]
}

/**
 * Which entries to delete, and how: one deletion per (protocol, source, destination,
 * destination port) when every listed entry of that group is denied, else one per entry
 * (adding the source port), so an allowed connection that shares the group is kept.
 */
export function planConntrackCut(entries: readonly ConntrackEntry[], judge: (e: ConntrackEntry) => EnforcedVerdict): ConntrackCutPlan {
  const groups = new Map<string, { entry: ConntrackEntry; verdict: EnforcedVerdict }[]>()
  for (const entry of entries) {
    const o = entry.original
    const key = `${entry.family} ${entry.protocol} ${formatIp(o.src)} ${formatIp(o.dst)} ${o.dport}`
    const list = groups.get(key) ?? []
    list.push({ entry, verdict: judge(entry) })
    groups.set(key, list)
  }
  const denied: DeniedConnection[] = []
  const deletions: string[][] = []
  const filter = (e: ConntrackEntry, withSport: boolean): string[] => [
    '-f',
    e.family === 4 ? 'ipv4' : 'ipv6',
    '-p',
    e.protocol.toLowerCase(),
    '-s',
    formatIp(e.original.src),
    '-d',
    formatIp(e.original.dst),
    ...(withSport ? ['--sport', String(e.original.sport)] : []),
    '--dport',
    String(e.original.dport),
  ]
  for (const list of groups.values()) {
    const bad = list.filter((x) => !x.verdict.allowed)
    denied.push(...bad)
    if (bad.length === 0) continue
    if (bad.length === list.length) deletions.push(filter(bad[0]!.entry, false))
    else for (const x of bad) deletions.push(filter(x.entry, true))
  }
  return { denied, deletions }
}

export interface ConntrackCutterOptions {
  /** Run `conntrack` inside this network namespace (`ip netns exec`). */
  readonly netns?: string | undefined
  readonly conntrackPath?: string | undefined
  /** Per `conntrack` call. */
  readonly timeoutMs?: number | undefined
  /** Deletions run at once. */
  readonly parallel?: number | undefined
}

export const CONNTRACK_DEFAULTS = Object.freeze({ conntrackPath: 'conntrack', timeoutMs: 10_000, parallel: 4 })

export interface ConntrackCutResult {
  /** Entries with ports that were looked at. */
  readonly examined: number
  readonly denied: readonly DeniedConnection[]
  /** `conntrack -D` calls made. */
  readonly deletions: number
}

export interface ConntrackCutter {
  list(): Promise<ConntrackEntry[]>
  /** Deletes the entries `snapshot` (through the table rendered from `input`) no longer allows. */
  cut(snapshot: PolicySnapshot, input: NftRulesetInput): Promise<ConntrackCutResult>
}

export function createConntrackCutter(options: ConntrackCutterOptions = {}): ConntrackCutter {
  const tool = options.conntrackPath ?? CONNTRACK_DEFAULTS.conntrackPath
  const timeoutMs = options.timeoutMs ?? CONNTRACK_DEFAULTS.timeoutMs
  const parallel = Math.max(1, options.parallel ?? CONNTRACK_DEFAULTS.parallel)

  async function run(args: readonly string[], okStatuses: readonly number[]): Promise<string> {
    const argv = inNetns(options.netns, [tool, ...args])
    let r
    try {
      r = await runCommand(argv, { timeoutMs })
    } catch (err) {
      if (err instanceof CommandNotRun) {
        throw new ConntrackCommandError(commandLine(argv), undefined, `${err.message}${err.reason === 'missing' ? '; install the Debian package conntrack' : ''}`)
      }
      throw err
    }
    if (r.status === null || !okStatuses.includes(r.status)) {
      const why = /Operation not permitted/i.test(r.stderr) ? ' (conntrack needs root or CAP_NET_ADMIN)' : ''
      throw new ConntrackCommandError(commandLine(argv), r.status ?? undefined, `exited with status ${r.status}${why}: ${tail(r.stderr)}`)
    }
    return r.stdout
  }

  async function list(): Promise<ConntrackEntry[]> {
    const outputs = await Promise.all(['ipv4', 'ipv6'].map((f) => run(['-L', '-f', f, '-o', 'extended'], [0])))
    return outputs.flatMap((o) => o.split('\n').flatMap((line) => parseConntrackLine(line) ?? []))
  }

  return {
    list,
    async cut(snapshot, input) {
      const entries = await list()
      const judge = enforcedVerdicts(snapshot, input)
      const plan = planConntrackCut(entries, (e) =>
        judge({ src: e.original.src, dst: e.reply.src, protocol: e.protocol, srcPort: e.original.sport, dstPort: e.reply.sport }),
      )
      const queue = [...plan.deletions]
      // Status 1 means nothing matched: the connection ended on its own in the meantime.
      const worker = async (): Promise<void> => {
        for (let args = queue.shift(); args; args = queue.shift()) await run(['-D', ...args], [0, 1])
      }
      await Promise.all(Array.from({ length: Math.min(parallel, queue.length) }, worker))
      return { examined: entries.length, denied: plan.denied, deletions: plan.deletions.length }
    },
  }
}
