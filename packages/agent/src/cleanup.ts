/**
 * `flatnet agent cleanup`: removes what flatnet made on this host, for a host leaving the
 * network (or a lab run that went wrong). Each step tolerates what is already gone.
 *
 *   nftables table inet flatnet ─> the WireGuard interface (its routes go with it)
 *   ─> the veths of workloads this agent attached ─> with --purge, the state dir
 */
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { AgentConfig } from './config/types.js'
import { detachWorkload } from './dataplane/workload-link.js'
import { runCommand } from './enforcement/command.js'
import { WORKLOADS_FILE, type Attachment } from './workloads/workload-manager.js'

async function run(argv: readonly string[]): Promise<{ ok: boolean; err: string }> {
  try {
    const r = await runCommand(argv, { timeoutMs: 15_000 })
    return { ok: r.status === 0, err: r.stderr.trim() }
  } catch (err) {
    return { ok: false, err: err instanceof Error ? err.message : String(err) }
  }
}

export async function cleanupHost(config: AgentConfig, options: { purge: boolean; table?: string }): Promise<string[]> {
  const report: string[] = []
  const table = options.table ?? 'flatnet'
  const nft = await run(['nft', 'delete', 'table', 'inet', table])
  report.push(nft.ok ? `removed nftables table inet ${table}` : `nftables table inet ${table}: ${/No such file|does not exist/i.test(nft.err) ? 'not present' : nft.err}`)
  const link = await run(['ip', 'link', 'del', 'dev', config.wireguard.interfaceName])
  report.push(link.ok ? `removed interface ${config.wireguard.interfaceName} and its routes` : `interface ${config.wireguard.interfaceName}: not present`)
  const file = join(config.stateDir, WORKLOADS_FILE)
  if (existsSync(file)) {
    let list: Attachment[] = []
    try {
      list = JSON.parse(readFileSync(file, 'utf8')) as Attachment[]
    } catch {
      report.push(`${file}: unreadable, workload links left as they are`)
    }
    for (const a of list) {
      const r = await detachWorkload({ hostIfname: a.hostIfname }).catch((err: unknown) => ({ removed: false, err }))
      report.push(r.removed ? `removed workload link ${a.hostIfname} (${a.key})` : `workload link ${a.hostIfname} (${a.key}): not present`)
    }
    if (!options.purge) rmSync(file, { force: true })
  }
  if (options.purge) {
    rmSync(config.stateDir, { recursive: true, force: true })
    report.push(`removed state dir ${config.stateDir} (node key included: this host will join as a new node)`)
  }
  return report
}
