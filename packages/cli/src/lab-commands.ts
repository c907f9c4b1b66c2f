/**
 * `flatnet lab up|down|env|probe`: the whole flat network on this machine, in network namespaces
 * (docs/lab.md). `up` shows progress on stderr and what it built on stdout.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Command, Option } from 'commander'
import type { Flow, Verdict } from '@flatnet/policy'
import { paint, table, type Out } from './output.js'

const FLATNET_BIN = fileURLToPath(new URL('../../bin/flatnet.js', import.meta.url))
const STATE_DIR_DEFAULT = '/var/lib/flatnet/lab'

function stateDirOption(): Option {
  return new Option('--state-dir <dir>', 'where the lab keeps its state').env('FLATNET_LAB_STATE_DIR').default(STATE_DIR_DEFAULT)
}

export function labCommand(out: Out): Command {
  const lab = new Command('lab').description('a whole flat network on this machine: hosts, agents and workloads in network namespaces')
  lab
    .command('up')
    .description('build the lab: hosts on an underlay, a store, one agent per host, workloads serving their ports')
    .option('--topology <file>', 'topology file (default: three hosts vm, baremetal and k8s-node; see docs/lab.md)')
    .addOption(stateDirOption())
    .option('--pool <cidr>', 'the address pool of the lab', '10.244.0.0/16')
    .option('--keep-on-failure', 'leave what was built when something fails (for a look around; `lab down` removes it)')
    .option('--log-level <level>', 'agents\' log level', 'info')
    .action(async (opts: { topology?: string; stateDir: string; pool: string; keepOnFailure?: boolean; logLevel: string }) => {
      const { loadTopology, labUp, formatLabSummary } = await import('@flatnet/lab')
      const topology = await loadTopology(opts.topology)
      const started = Date.now()
      const result = await labUp({
        topology,
        stateDir: opts.stateDir,
        pool: opts.pool,
        keepOnFailure: opts.keepOnFailure === true,
        logLevel: opts.logLevel,
        agentArgv: [process.execPath, FLATNET_BIN, 'agent', 'run'],
        onProgress: (p) => out.error(paint(out, 'dim', `[${((Date.now() - started) / 1000).toFixed(1)}s] ${p.message}${p.total ? ` (${p.done}/${p.total})` : ''}`)),
      })
      out.write(formatLabSummary(result.info))
      out.error(paint(out, 'green', `lab up in ${((Date.now() - started) / 1000).toFixed(1)} s`))
    })
  lab
    .command('down')
    .description('remove everything the lab made (also after a crash of `lab up`)')
    .addOption(stateDirOption())
    .action(async (opts: { stateDir: string }) => {
      const { labDown } = await import('@flatnet/lab')
      const r = await labDown({ stateDir: opts.stateDir, onProgress: (p) => out.error(paint(out, 'dim', p.message)) })
      out.write(r.found ? `lab removed: ${r.stopped.length} processes stopped, ${r.netnsDeleted.length} namespaces and ${r.linksDeleted.length} links deleted` : 'no lab found: nothing to remove')
    })
  lab
    .command('env')
    .description('the lab\'s settings as shell assignments: eval "$(flatnet lab env)"')
    .addOption(stateDirOption())
    .action(async (opts: { stateDir: string }) => {
      const { labEnv, formatShellEnv } = await import('@flatnet/lab')
      out.write(formatShellEnv(labEnv(opts.stateDir)))
    })
  lab
    .command('probe')
    .description('open real connections between the lab\'s endpoints; one line per flow, in the shape of `policy eval`, with "allowed" measured')
    .option('--flows <file>', 'flows to probe (JSON lines or shorthand, as `policy eval` reads); default: every endpoint to every served port')
    .addOption(new Option('-o, --output <format>', 'output format').choices(['json', 'table']).default('table'))
    .addOption(stateDirOption())
    .option('--timeout <ms>', 'per connection', '1000')
    .option('--concurrency <n>', 'connections at once', '64')
    .action(async (opts: { flows?: string; output: 'json' | 'table'; stateDir: string; timeout: string; concurrency: string }) => {
      const { probeLab, labEnv } = await import('@flatnet/lab')
      const { parseFlowLines } = await import('@flatnet/policy')
      const flows = opts.flows === undefined ? undefined : parseFlowLines(opts.flows, readFileSync(opts.flows, 'utf8'))
      const evaluate = await storeVerdicts(labEnv(opts.stateDir).FLATNET_REDIS_URL)
      const results = await probeLab({ stateDir: opts.stateDir, flows, timeoutMs: Number(opts.timeout), concurrency: Number(opts.concurrency), evaluate })
      if (opts.output === 'json') {
        for (const r of results) out.write(JSON.stringify(r))
        return
      }
      const rows = results.map((r) => [
        `${r.from} -> ${r.to} ${r.port}/${r.protocol}`,
        r.allowed ? paint(out, 'green', 'allowed') : paint(out, 'red', 'denied'),
        r.from === r.to ? 'loopback (not enforced)' : r.expected === undefined ? '' : r.expected === r.allowed ? 'as policy says' : paint(out, 'yellow', `policy says ${r.expected ? 'allowed' : 'denied'}`),
        r.probe.result,
      ])
      out.write(table(rows, ['FLOW', 'MEASURED', 'EXPECTED', 'RESULT']))
      const mismatched = results.filter((r) => r.from !== r.to && r.expected !== undefined && r.expected !== r.allowed).length
      out.write(`${results.length} flows, ${results.filter((r) => r.allowed).length} allowed${mismatched > 0 ? `, ${mismatched} differ from policy` : ''}`)
    })
  return lab
}

/** The policy verdicts of the lab's store, so a probe shows what decided each flow; undefined when the store is not reachable. */
async function storeVerdicts(url: string | undefined): Promise<((f: Flow) => Verdict) | undefined> {
  if (url === undefined) return undefined
  const { connectRedis, FlatnetStore, snapshotFromStore } = await import('@flatnet/store')
  const store = new FlatnetStore({ redis: connectRedis(url, { connectTimeoutMs: 2000, commandTimeoutMs: 5000 }), where: url }, { cluster: 'default', commandTimeoutMs: 5000 })
  try {
    const { snapshot } = await snapshotFromStore(store)
    return (f) => snapshot.evaluateRefs(f.from, f.to, f.port, f.protocol)
  } catch {
    return undefined
  } finally {
    await store.close()
  }
}

