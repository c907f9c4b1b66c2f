/** `flatnet policy validate|explain|eval|test`: the offline policy tools. */
import { Command } from 'commander'
import { collect, outputOption } from './cli-options.js'
import { InvalidArgumentError, ExpectationFailedError, formatIssue, type Protocol } from '@flatnet/core'
import { flowResult, loadObjects, parseFlowExpectations, parseFlowLines, parsePortProtocol, type FlowResult, type PolicySnapshot } from '@flatnet/policy'
import { explainText } from './explain-text.js'
import { readSources, readText } from './inputs.js'
import { formatData, paint, table, type Out, type OutputFormat } from './output.js'
import { loadOffline } from './policy-context.js'
import { addPolicyStoreCommands } from './policy-store-commands.js'
import { withConnectionOptions, withStore, type ConnectionOptions } from './store-connection.js'


function offlineOptions(cmd: Command, inventory: boolean): Command {
  if (!inventory) {
    return cmd
      .requiredOption('-f, --filename <path>', 'policy file or directory (YAML or JSON; repeatable; - for stdin)', collect)
      .option('-n, --namespace <ns>', 'namespace for objects that name none', 'default')
  }
  // Without -f and -i these commands read the live store instead of files.
  return withConnectionOptions(
    cmd
      .option('-f, --filename <path>', 'policy file or directory (repeatable; - for stdin); without it, the live store', collect)
      .option('-i, --inventory <path>', 'inventory file or directory: Namespaces, Pods, HostEndpoints (repeatable)', collect)
      .option('-n, --namespace <ns>', 'namespace for objects that name none', 'default'),
  )
}

type SnapshotOptions = ConnectionOptions & { filename?: string[]; inventory?: string[]; namespace: string }

/** The snapshot to evaluate: from files when -f/-i are given, else from the live store. */
async function withSnapshot<T>(opts: SnapshotOptions, out: Out, fn: (snapshot: PolicySnapshot) => T): Promise<T> {
  if (opts.filename?.length || opts.inventory?.length) {
    return fn(loadOffline({ filename: opts.filename ?? [], inventory: opts.inventory, namespace: opts.namespace }).snapshot)
  }
  return withStore(opts, async (store, lib) => {
    const { snapshot, issues } = await lib.snapshotFromStore(store)
    for (const issue of issues) out.error(`warning: skipped an invalid stored object: ${formatIssue(issue)}`)
    return fn(snapshot)
  })
}

function kindCounts(objects: { kind: string }[]): string {
  const counts = new Map<string, number>()
  for (const o of objects) counts.set(o.kind, (counts.get(o.kind) ?? 0) + 1)
  const plural = (k: string): string => (k.endsWith('y') ? `${k.slice(0, -1)}ies` : `${k}s`)
  return [...counts].map(([k, n]) => `${n} ${n === 1 ? k : plural(k)}`).join(', ') || 'no objects'
}

function formatResultRow(out: Out, r: FlowResult): string[] {
  const verdict = r.allowed ? paint(out, 'green', 'allow') : paint(out, 'red', 'deny')
  const by = r.tier === 'Default' ? 'default' : `${r.direction} ${r.policyKind === 'ClusterNetworkPolicy' ? `${r.tier} CNP` : 'NP'} ${r.policy}${r.rule === null ? '' : ` rule ${r.rule}`}`
  return [r.from, r.to, `${r.port}/${r.protocol}`, verdict, by]
}

export function policyCommand(out: Out): Command {
  const policy = new Command('policy').description('validate, explain, evaluate and test policies, on files or in the store; apply, get, delete, diff')

  offlineOptions(policy.command('validate').description('check policy and inventory files; exit 1 with every problem found'), false)
    .addOption(outputOption())
    .action((opts: { filename: string[]; namespace: string; output: OutputFormat }) => {
      const loaded = loadObjects(readSources(opts.filename), { defaultNamespace: opts.namespace, accept: 'any' })
      const all = [...loaded.policies, ...loaded.namespaces, ...loaded.endpoints]
      if (opts.output !== 'table') {
        out.write(formatData({ valid: true, objects: all.map((o) => ({ kind: o.kind, namespace: 'namespace' in o ? o.namespace : undefined, name: o.name })) }, opts.output))
        return
      }
      out.write(`${paint(out, 'green', 'valid')}: ${kindCounts(all)}`)
    })

  offlineOptions(policy.command('explain').description('say whether one flow is allowed, and which tier, policy and rule decided each direction'), true)
    .requiredOption('--from <endpoint>', 'source: namespace/name of a Pod or HostEndpoint, or an IP address')
    .requiredOption('--to <endpoint>', 'destination: namespace/name or an IP address')
    .requiredOption('--port <port>', 'destination port and protocol, e.g. 80/TCP, 53/UDP (protocol defaults to TCP)')
    .addOption(outputOption())
    .action(async (opts: SnapshotOptions & { from: string; to: string; port: string; output: OutputFormat }) => {
      const pp = parsePortProtocol(opts.port)
      if (typeof pp === 'string') throw new InvalidArgumentError(`--port: ${pp}`)
      await withSnapshot(opts, out, (snapshot) => {
      const src = snapshot.resolve(opts.from)
      const dst = snapshot.resolve(opts.to)
      const verdict = snapshot.evaluate(src, dst, pp.port, pp.protocol)
      if (opts.output !== 'table') {
        out.write(formatData(flowResult({ from: opts.from, to: opts.to, port: pp.port, protocol: pp.protocol }, verdict), opts.output))
        return
      }
      out.write(explainText(out, src, dst, pp.port, pp.protocol, verdict))
      })
    })

  offlineOptions(policy.command('eval').description('evaluate a batch of flows, one JSON object a line (see docs/cli.md)'), true)
    .requiredOption('--flows <file>', 'flows file: one {"from","to","port","protocol"} JSON object a line; - for stdin')
    .addOption(outputOption())
    .action(async (opts: SnapshotOptions & { flows: string; output: OutputFormat }) => {
      const source = readText(opts.flows)
      const flows = parseFlowLines(source.file, source.text)
      await withSnapshot(opts, out, (snapshot) => {
      // Resolve every flow before printing anything, so a bad flow prints no partial output.
      const resolved = flows.map((f) => ({ f, src: snapshot.resolve(f.from), dst: snapshot.resolve(f.to) }))
      const results = resolved.map(({ f, src, dst }) => flowResult(f, snapshot.evaluate(src, dst, f.port, f.protocol as Protocol)))
      if (opts.output === 'json') out.write(results.map((r) => JSON.stringify(r)).join('\n'))
      else if (opts.output === 'yaml') out.write(formatData(results, 'yaml'))
      else out.write(table(results.map((r) => formatResultRow(out, r)), ['FROM', 'TO', 'PORT', 'VERDICT', 'DECIDED BY']))
      })
    })

  offlineOptions(policy.command('test').description('check allow/deny expectations; prints what failed and exits 1 on failure'), true)
    .requiredOption('--tests <file>', 'expectations file: allow: and deny: lists of flows')
    .addOption(outputOption())
    .action(async (opts: SnapshotOptions & { tests: string; output: OutputFormat }) => {
      const source = readText(opts.tests)
      const expectations = parseFlowExpectations(source.file, source.text)
      const snapshot = await withSnapshot(opts, out, (s) => s)
      const results = expectations.map((e) => {
        const verdict = snapshot.evaluate(snapshot.resolve(e.flow.from), snapshot.resolve(e.flow.to), e.flow.port, e.flow.protocol)
        const result = flowResult({ ...e.flow }, verdict)
        return { ...e, result, pass: (e.expect === 'allow') === verdict.allowed }
      })
      const failed = results.filter((r) => !r.pass)
      if (opts.output !== 'table') {
        out.write(
          formatData(
            {
              passed: results.length - failed.length,
              failed: failed.length,
              results: results.map((r) => ({ line: r.line, expect: r.expect, pass: r.pass, ...r.result })),
            },
            opts.output,
          ),
        )
      } else {
        for (const r of failed) {
          const got = r.result.allowed ? 'allowed' : 'denied'
          const why = r.result.allowed ? r.result.ingress.reason : r.result.direction === 'egress' ? r.result.egress.reason : r.result.ingress.reason
          out.write(
            `${paint(out, 'red', 'FAIL')} ${source.file}:${r.line}  ${r.flow.from} -> ${r.flow.to} ${r.flow.port}/${r.flow.protocol}\n` +
              `     expected ${paint(out, 'green', r.expect)}, got ${paint(out, 'red', got)}: ${why}`,
          )
        }
        const summary = `${results.length - failed.length} passed, ${failed.length} failed (${source.file})`
        out.write(failed.length === 0 ? paint(out, 'green', `ok  ${summary}`) : paint(out, 'red', summary))
      }
      if (failed.length > 0) throw new ExpectationFailedError(failed.length, results.length)
    })

  addPolicyStoreCommands(policy, out)
  return policy
}
