/**
 * flatnet's nftables table in the kernel: the only place enforcement touches it.
 *
 * `apply()` hands a rendered ruleset (see `renderNftRuleset` in @flatnet/policy) to one
 * `nft -f -` call on stdin. The ruleset replaces the whole table in one transaction, so a
 * second apply replaces the first (no duplicate tables, no gap in between), a refused ruleset
 * changes nothing, and leftovers of an earlier agent are replaced too.
 *
 * `counters()` reads the per-rule counters back from `nft -j list table` and sums them by the
 * rule id in each rule's log prefix (a policy rule can become several nft rules, one per
 * address family).
 */
import { InvalidArgumentError } from '@flatnet/core'
import { parseNftLogPrefix, type NftRuleset } from '@flatnet/policy'
import { CommandNotRun, commandLine, inNetns, runCommand, tail, type CommandResult } from './command.js'
import { NftCommandError, NftRulesetRejectedError, type NftRulesetProblem } from './errors.js'

export interface NftTableOptions {
  /** The table flatnet owns (default `flatnet`); rulesets for another table are refused. */
  readonly table?: string | undefined
  /** Run `nft` inside this network namespace (`ip netns exec`); it must exist. */
  readonly netns?: string | undefined
  readonly nftPath?: string | undefined
  /** Per `nft` call. */
  readonly timeoutMs?: number | undefined
}

export const NFT_TABLE_DEFAULTS = Object.freeze({ table: 'flatnet', nftPath: 'nft', timeoutMs: 15_000 })

export interface RuleCounter {
  readonly packets: number
  readonly bytes: number
}

export interface NftCounters {
  /** The rev of the ruleset in the kernel (from its log prefixes); undefined when it holds no flatnet rules. */
  readonly rev: string | undefined
  /** Rule id -> packets and bytes, summed over the nft rules carrying that id. */
  readonly rules: ReadonlyMap<string, RuleCounter>
}

export interface NftTable {
  readonly table: string
  /** Replaces the table with `ruleset` in one transaction. */
  apply(ruleset: Pick<NftRuleset, 'table' | 'text'>): Promise<void>
  /** Removes the table; succeeds when there is none. */
  remove(): Promise<void>
  exists(): Promise<boolean>
  counters(): Promise<NftCounters>
  /** The table as `nft -j` lists it. */
  listJson(): Promise<unknown>
}

export function createNftTable(options: NftTableOptions = {}): NftTable {
  const table = options.table ?? NFT_TABLE_DEFAULTS.table
  const nft = options.nftPath ?? NFT_TABLE_DEFAULTS.nftPath
  const timeoutMs = options.timeoutMs ?? NFT_TABLE_DEFAULTS.timeoutMs
  if (!/^[A-Za-z][A-Za-z0-9_-]{0,31}$/.test(table)) throw new InvalidArgumentError(`table "${table}" is not a valid nftables table name`)

  async function run(args: readonly string[], input?: string): Promise<{ argv: string[]; result: CommandResult }> {
    const argv = inNetns(options.netns, [nft, ...args])
    try {
      return { argv, result: await runCommand(argv, { input, timeoutMs }) }
    } catch (err) {
      if (err instanceof CommandNotRun) {
        const hint = err.reason === 'missing' ? '; install the Debian package nftables' : ''
        throw new NftCommandError(commandLine(argv), undefined, `${err.message}${hint}`)
      }
      throw err
    }
  }

  function failure(argv: readonly string[], r: CommandResult): NftCommandError {
    const text = tail(r.stderr || r.stdout)
    let hint = ''
    if (/Operation not permitted/i.test(text)) hint = ' (nft needs root or CAP_NET_ADMIN)'
    else if (/exec of .* failed|No such file or directory/i.test(text) && options.netns !== undefined) hint = ' (is nftables installed, and does the network namespace exist?)'
    return new NftCommandError(commandLine(argv), r.status ?? undefined, `exited with status ${r.status}${hint}: ${text}`)
  }

  async function listJson(): Promise<unknown> {
    const { argv, result } = await run(['-j', 'list', 'table', 'inet', table])
    if (result.status !== 0) throw failure(argv, result)
    try {
      return JSON.parse(result.stdout) as unknown
    } catch (err) {
      throw new NftCommandError(commandLine(argv), 0, `printed output that is not JSON: ${(err as Error).message}`)
    }
  }

  return {
    table,

    async apply(ruleset) {
      if (ruleset.table !== table) throw new InvalidArgumentError(`the ruleset is for table inet ${ruleset.table}, but this NftTable manages inet ${table}`)
      const { argv, result } = await run(['-f', '-'], ruleset.text)
      if (result.status === 0) return
      const problems = parseNftProblems(result.stderr, ruleset.text)
      if (problems.length > 0) throw new NftRulesetRejectedError(table, problems, result.stderr)
      throw failure(argv, result)
    },

    async remove() {
      // Declaring the table first makes the delete succeed when there is none; both in one transaction.
      const { argv, result } = await run(['-f', '-'], `table inet ${table} {}\ndelete table inet ${table}\n`)
      if (result.status !== 0) throw failure(argv, result)
    },

    async exists() {
      const { argv, result } = await run(['list', 'tables', 'inet'])
      if (result.status !== 0) throw failure(argv, result)
      return result.stdout.split('\n').some((l) => l.trim() === `table inet ${table}`)
    },

    async counters() {
      return countersFromJson(await listJson())
    },

    listJson,
  }
}

/**
 * nft's complaints about a ruleset read from stdin, e.g.
 *   /dev/stdin:12:3-10: Error: Could not process rule: No such file or directory
 * with the offending line taken from the ruleset text.
 */
export function parseNftProblems(stderr: string, text: string): NftRulesetProblem[] {
  const lines = text.split('\n')
  const problems: NftRulesetProblem[] = []
  for (const m of stderr.matchAll(/^(?:\/dev\/stdin|-):(\d+):[\d-]+: Error: (.*)$/gm)) {
    const line = Number(m[1])
    problems.push({ line, message: m[2]!.trim(), text: lines[line - 1] ?? '' })
  }
  if (problems.length === 0) {
    for (const m of stderr.matchAll(/^Error: (.*)$/gm)) problems.push({ line: 0, message: m[1]!.trim(), text: '' })
  }
  return problems
}

interface NftJsonRule {
  readonly expr?: readonly Record<string, unknown>[]
}

/** Sums the counters of `nft -j list table` output by the rule id in each rule's log prefix. */
export function countersFromJson(json: unknown): NftCounters {
  const items = (json as { nftables?: readonly Record<string, unknown>[] } | null)?.nftables
  if (!Array.isArray(items)) throw new NftCommandError('nft -j list table', 0, 'output has no "nftables" list')
  const rules = new Map<string, { packets: number; bytes: number }>()
  let rev: string | undefined
  for (const item of items) {
    const rule = item.rule as NftJsonRule | undefined
    if (!rule?.expr) continue
    let counter: { packets?: number; bytes?: number } | undefined
    let prefix: string | undefined
    for (const e of rule.expr) {
      if (e.counter) counter = e.counter as { packets?: number; bytes?: number }
      if (e.log) prefix = (e.log as { prefix?: string }).prefix
    }
    const parsed = prefix === undefined ? undefined : parseNftLogPrefix(prefix)
    if (!counter || !parsed) continue
    rev ??= parsed.rev
    const sum = rules.get(parsed.id) ?? { packets: 0, bytes: 0 }
    sum.packets += counter.packets ?? 0
    sum.bytes += counter.bytes ?? 0
    rules.set(parsed.id, sum)
  }
  return { rev, rules }
}
