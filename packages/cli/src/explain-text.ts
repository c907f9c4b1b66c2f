/** A verdict in words a person reads in five seconds. */
import type { DirectionVerdict, EndpointRecord, FlowPeer, Verdict } from '@flatnet/policy'
import { paint, table, type Out } from './output.js'

function describePeer(p: FlowPeer): string {
  if (!p.record) return `${p.ref} (outside address)`
  const ep = p.record.endpoint
  const ip = p.ip ? ` ${p.ref}` : ''
  return `${ep.kind} ${ep.namespace}/${ep.name}${ip}${ep.node ? ` on ${ep.node}` : ''}`
}

function decider(v: DirectionVerdict): string {
  if (v.tier === 'Default') return `default (${v.reason})`
  const rule = v.rule === undefined ? '' : ` rule ${v.rule}${v.ruleName ? ` "${v.ruleName}"` : ''}`
  const kind = v.policyKind === 'ClusterNetworkPolicy' ? `${v.tier} ClusterNetworkPolicy` : 'NetworkPolicy'
  return `${kind} ${v.policy}${rule}`
}

export function explainText(out: Out, src: FlowPeer, dst: FlowPeer, port: number, protocol: string, verdict: Verdict): string {
  const head = verdict.allowed ? paint(out, 'green', 'ALLOWED') : paint(out, 'red', 'DENIED')
  const word = (v: DirectionVerdict): string => (v.allowed ? paint(out, 'green', 'allow') : paint(out, 'red', 'deny'))
  const lines = [
    `${head}  ${src.ref} -> ${dst.ref}  ${port}/${protocol}`,
    '',
    table([
      [`egress of ${src.ref}`, word(verdict.egress), decider(verdict.egress)],
      [`ingress to ${dst.ref}`, word(verdict.ingress), decider(verdict.ingress)],
    ]).replace(/^/gm, '  '),
    '',
    `  ${paint(out, 'bold', 'because')} ${verdict.decidedBy.reason}.`,
  ]
  const other = verdict.decidedBy === verdict.egress ? verdict.ingress : verdict.egress
  // When both directions deny, the second reason matters too; otherwise the table says it.
  if (!other.allowed) lines.push(`  ${paint(out, 'bold', 'and')} ${other.reason}.`)
  lines.push('', paint(out, 'dim', `  source: ${describePeer(src)}; destination: ${describePeer(dst)}`))
  return lines.join('\n')
}

export function endpointSummary(r: EndpointRecord): string {
  return `${r.endpoint.kind} ${r.key}`
}
