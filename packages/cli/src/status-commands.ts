/**
 * `flatnet status` and `flatnet flows`: what the agent on this host says about itself, over its
 * local API socket (root only).
 */
import { Command, Option } from 'commander'
import { formatBytes, formatDuration } from '@flatnet/wireguard'
import { formatData, paint, table, type Out, type OutputFormat } from './output.js'
import { outputOption } from './cli-options.js'

const SOCKET_DEFAULT = '/run/flatnet/agent.sock'

function socketOption(): Option {
  return new Option('--socket <path>', 'the agent\'s API socket').env('FLATNET_API_SOCKET').default(SOCKET_DEFAULT)
}

async function client(socketPath: string) {
  const { AgentClient } = await import('@flatnet/agent/client')
  return new AgentClient({ socketPath })
}

interface StatusView {
  node: { name: string; peerId: string; blocks: string[]; hostAddress?: string; wireguardPublicKey: string; backend?: string; admitted: boolean }
  store: { connected: boolean; revision: number; where?: string; lastError?: string }
  applied?: { revision: number; at: string; durationMs: number; localEndpoints: number; rules: number; peers: number }
  lastApplyError?: string
  peers: { publicKey: string; endpoint?: string; allowedIps: string[]; latestHandshake?: string; rxBytes: number; txBytes: number; viaRelay?: boolean; peerId?: string; node?: string; mesh?: string }[]
  endpoints: { key: string; ips: string[]; kind: string }[]
  invalidObjects: number
  refusedNodes: { peerId: string; reason: string }[]
}

export function formatStatus(s: StatusView, out: Out, now = Date.now()): string {
  const lines: string[] = []
  lines.push(`node ${paint(out, 'bold', s.node.name)} (${s.node.peerId})${s.node.admitted ? '' : paint(out, 'yellow', ' — not admitted yet')}`)
  lines.push(`  address ${s.node.hostAddress ?? '(none yet)'}, blocks ${s.node.blocks.join(', ') || '(none yet)'}`)
  lines.push(`  WireGuard ${s.node.backend ?? '(not up)'}, key ${s.node.wireguardPublicKey}`)
  lines.push(`store ${s.store.connected ? paint(out, 'green', 'connected') : paint(out, 'red', 'unreachable')} ${s.store.where ?? ''}, revision ${s.store.revision}${s.store.lastError ? ` (${s.store.lastError})` : ''}`)
  if (s.applied) {
    const lag = s.store.revision - s.applied.revision
    lines.push(`policy revision ${s.applied.revision} applied ${s.applied.at} in ${s.applied.durationMs} ms: ${s.applied.rules} rules for ${s.applied.localEndpoints} local endpoints${lag > 0 ? paint(out, 'yellow', ` (${lag} behind)`) : ''}`)
  } else lines.push('policy: nothing applied yet')
  if (s.lastApplyError) lines.push(paint(out, 'red', `last apply failed: ${s.lastApplyError}`))
  if (s.invalidObjects > 0) lines.push(paint(out, 'yellow', `${s.invalidObjects} stored objects do not validate and are not enforced`))
  for (const r of s.refusedNodes) lines.push(paint(out, 'yellow', `node record refused: ${r.peerId}: ${r.reason}`))
  lines.push('')
  const peerRows = s.peers.map((p) => [
    p.node ?? p.peerId?.slice(0, 16) ?? p.publicKey.slice(0, 12),
    p.viaRelay ? `relayed (${p.endpoint ?? '-'})` : (p.endpoint ?? '-'),
    p.allowedIps.join(','),
    p.latestHandshake ? `${formatDuration((now - Date.parse(p.latestHandshake)) / 1000)} ago` : 'never',
    `${formatBytes(p.rxBytes)} / ${formatBytes(p.txBytes)}`,
    p.mesh ?? '-',
  ])
  lines.push(peerRows.length > 0 ? table(peerRows, ['PEER', 'ENDPOINT', 'ALLOWED IPS', 'HANDSHAKE', 'RX / TX', 'MESH']) : 'no peers')
  lines.push('')
  const epRows = s.endpoints.map((e) => [e.key, e.kind, e.ips.join(',')])
  lines.push(epRows.length > 0 ? table(epRows, ['ENDPOINT', 'KIND', 'IPS']) : 'no local endpoints')
  return lines.join('\n')
}

export function statusCommand(out: Out): Command {
  return new Command('status')
    .description('this node: peers and handshakes, local endpoints, the policy revision applied')
    .addOption(socketOption())
    .addOption(outputOption())
    .action(async (opts: { socket: string; output: OutputFormat }) => {
      const status = await (await client(opts.socket)).get<StatusView>('/v1/status')
      out.write(opts.output === 'table' ? formatStatus(status, out) : formatData(status, opts.output))
    })
}

interface FlowView {
  firstSeen: number
  lastSeen: number
  count: number
  src: string
  dst: string
  protocol: string
  srcPort?: number
  dstPort?: number
  verdict: 'allow' | 'deny'
  decidedBy: { direction: string; tier: string; policy?: string; rule?: number; endpoint?: string; description?: string }
}

export function flowsCommand(out: Out): Command {
  return new Command('flows')
    .description('recent allowed and denied flows on this node, with the tier, policy and rule that decided')
    .addOption(socketOption())
    .addOption(outputOption())
    .option('--limit <n>', 'at most this many flows, newest first', '50')
    .addOption(new Option('--verdict <v>', 'only allowed or only denied flows').choices(['allow', 'deny']))
    .action(async (opts: { socket: string; output: OutputFormat; limit: string; verdict?: 'allow' | 'deny' }) => {
      const res = await (await client(opts.socket)).get<{ flows: FlowView[] }>(`/v1/flows?limit=${encodeURIComponent(opts.limit)}`)
      const flows = res.flows.filter((f) => opts.verdict === undefined || f.verdict === opts.verdict)
      if (opts.output !== 'table') return out.write(formatData(flows, opts.output))
      if (flows.length === 0) return out.write('no flows logged yet (new connections are logged as the rules decide them)')
      const rows = flows.map((f) => [
        new Date(f.lastSeen).toISOString().slice(11, 23),
        f.verdict === 'allow' ? paint(out, 'green', 'allow') : paint(out, 'red', 'deny'),
        `${f.src}${f.srcPort ? `:${f.srcPort}` : ''}`,
        `${f.dst}${f.dstPort ? `:${f.dstPort}` : ''}/${f.protocol}`,
        `${f.decidedBy.direction} ${f.decidedBy.tier}${f.decidedBy.policy ? ` ${f.decidedBy.policy}` : ''}${f.decidedBy.rule !== undefined ? ` rule ${f.decidedBy.rule}` : ''}`,
        String(f.count),
      ])
      out.write(table(rows, ['TIME', 'VERDICT', 'FROM', 'TO', 'DECIDED BY', 'PACKETS']))
    })
}
