/**
 * `flatnet cni install`: puts the flatnet CNI plugin and its network config on this host, for
 * podman, containerd, CRI-O or the kubelet to use. The DaemonSet's init container runs the same
 * command with the host's directories mounted (see docs/cni.md).
 */
import { Command } from 'commander'
import { checkLabelKey, checkLabelValue, InvalidArgumentError } from '@flatnet/core'
import type { Out } from './output.js'

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value]
}

function labelsOf(args: readonly string[]): Record<string, string> {
  const labels: Record<string, string> = {}
  for (const arg of args) {
    const eq = arg.indexOf('=')
    if (eq <= 0) throw new InvalidArgumentError(`--label ${JSON.stringify(arg)}: write key=value`)
    const key = arg.slice(0, eq)
    const value = arg.slice(eq + 1)
    const bad = checkLabelKey(key) ?? checkLabelValue(value)
    if (bad) throw new InvalidArgumentError(`--label ${JSON.stringify(arg)}: ${bad}`)
    labels[key] = value
  }
  return labels
}

interface InstallFlags {
  binDir: string
  confDir: string
  socket?: string
  network?: string
  namespace?: string
  label?: string[]
  cniVersion?: string
  priority?: string
  node?: string
  copyNode?: boolean
  native?: boolean
}

export function cniCommand(out: Out): Command {
  const cni = new Command('cni').description('the flatnet CNI plugin (flatnet-cni) for podman and Kubernetes')
  cni
    .command('install')
    .description('install the plugin (type "flatnet") and its network config into the runtime\'s directories')
    .option('--bin-dir <dir>', 'CNI plugin directory', '/opt/cni/bin')
    .option('--conf-dir <dir>', 'CNI network config directory', '/etc/cni/net.d')
    .option('--socket <path>', 'the agent\'s API socket on this host (default /run/flatnet/agent.sock)')
    .option('--network <name>', 'network name (default flatnet)')
    .option('--namespace <ns>', 'outside Kubernetes: the namespace of the containers\' endpoints (default "default")')
    .option('--label <key=value>', 'outside Kubernetes: a label of every container on this network (repeatable)', collect)
    .option('--cni-version <v>', 'the conflist\'s cniVersion (default 1.0.0, with cniVersions up to 1.1.0)')
    .option('--priority <n>', 'conflist file name prefix: runtimes take the first file (default 10)')
    .option('--node <path>', 'the Node.js the plugin runs with, as this host sees it (default: this Node, or the copy)')
    .option('--copy-node', 'copy this Node.js into the plugin directory as flatnet-node (hosts without Node)')
    .option('--native', 'install the native front end as flatnet (default: when it is built); refuse if it is not built')
    .option('--no-native', 'install the Node plugin as flatnet, without the native front end')
    .action(async (flags: InstallFlags) => {
      // Loaded here: no other command needs the plugin's installer.
      const { installCniPlugin } = await import('@flatnet/cni')
      const priority = flags.priority === undefined ? undefined : Number(flags.priority)
      if (priority !== undefined && !Number.isInteger(priority)) throw new InvalidArgumentError(`--priority ${JSON.stringify(flags.priority)} must be an integer from 0 to 99`)
      const r = await installCniPlugin({
        binDir: flags.binDir,
        confDir: flags.confDir,
        agentSocket: flags.socket,
        network: flags.network,
        namespace: flags.namespace,
        labels: flags.label ? labelsOf(flags.label) : undefined,
        cniVersion: flags.cniVersion,
        priority,
        nodePath: flags.node,
        copyNode: flags.copyNode,
        native: flags.native,
      })
      out.write(`plugin   ${r.plugin} (${r.native ? `native front end; without the agent it runs ${r.nodePlugin}, ` : ''}Node ${r.nodePath}; code ${r.codeFile}, ${Math.round(r.bytes / 1024)} KiB)`)
      out.write(`network  ${r.conflist}`)
    })
  return cni
}
