/**
 * `flatnet agent run` (the per-host agent; what the systemd unit and the DaemonSet start) and
 * `flatnet agent cleanup` (removes what flatnet made on this host). The agent's options come
 * from its configuration field table, so flags, environment variables and the file cannot drift.
 */
import { Command, Option } from 'commander'
import type { Out } from './output.js'

import type * as AgentModule from '@flatnet/agent'

type AgentLib = typeof AgentModule

function loadAgentLib(): Promise<AgentLib> {
  return import('@flatnet/agent')
}

/** Declares one option per flag of the configuration table (values pass through unparsed; the loader checks them). */
function withConfigFlags(cmd: Command, lib: AgentLib): Command {
  for (const f of lib.AGENT_CONFIG_FIELDS) {
    if (f.flag === undefined) continue
    if (f.kind === 'bool') cmd.addOption(new Option(`--${f.flag}`, f.help)).addOption(new Option(`--no-${f.flag}`).hideHelp())
    else if (f.kind === 'list') cmd.addOption(new Option(`--${f.flag} <value>`, `${f.help} (repeatable)`).argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]))
    else cmd.addOption(new Option(`--${f.flag} <value>`, f.help))
  }
  return cmd
}

export async function agentCommand(out: Out): Promise<Command> {
  const lib = await loadAgentLib()
  const agent = new Command('agent').description('the per-host agent: joins the overlay and enforces policy on this host')
  withConfigFlags(
    agent
      .command('run')
      .description('run the agent in the foreground (systemd, the DaemonSet and `flatnet lab` start it this way)')
      .option('-c, --config <file>', `configuration file (default: $${lib.CONFIG_FILE_ENV} or ${lib.DEFAULT_AGENT_CONFIG_FILE})`),
    lib,
  ).action(async (opts: Record<string, unknown>) => {
    const { config: file, ...flags } = opts
    const load = () => lib.loadAgentConfig({ file: file as string | undefined, env: process.env, flags: flags as Record<string, string> })
    const config = load()
    const log = lib.createAgentLogger(config.log.level)
    const enforcer = lib.createHostEnforcement({ config, log: log.child({ component: 'enforcement' }) })
    // The CNI plugin's native front end hands calls to this route (packages/cni/native).
    const { cniExecRoutes } = await import('@flatnet/cni')
    const running = await lib.runAgent({ config, log, enforcer, reloadConfig: load, routes: cniExecRoutes() })
    await running.stopped
  })
  agent
    .command('cleanup')
    .description('remove everything flatnet made on this host: nftables table, WireGuard interface, routes, workload links')
    .option('-c, --config <file>', 'configuration file (to find the interface name and state dir)')
    .option('--purge', 'also delete the state dir (node key, local snapshot): the node gets a new identity')
    .action(async (opts: { config?: string; purge?: boolean }) => {
      const config = lib.loadAgentConfig({ file: opts.config, env: process.env })
      const report = await lib.cleanupHost(config, { purge: opts.purge === true })
      for (const line of report) out.write(line)
    })
  return agent
}
