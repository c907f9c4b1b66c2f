/**
 * The enforcement of a running agent, put together from the parts in enforcement/: the
 * nftables table, the conntrack cut, and the flow log fed from the table's NFLOG group.
 *
 *   configuration ─> ruleset input: failsafe ports, the agent's own overlay and mesh ports
 *                    (always open for host endpoints), log tag = node name
 *   local endpoint ─> host endpoint (input/output hooks) or workload (forward hook, with the
 *                     host side of its veth for anti-spoofing, from the workload manager)
 */
import type { Logger } from 'pino'
import { FlatnetError } from '@flatnet/core'
import type { NftFailsafe, NftPortSpec } from '@flatnet/policy'
import type { AgentConfig, AgentFailsafeConfig, FailsafePort } from './config/types.js'
import { createConntrackCutter, createFlowLogReader, createNftEnforcer, createNftTable, FlowLog, type ConntrackCutter, type FlowRecord } from './enforcement/index.js'
import type { Enforcer } from './enforcer.js'
import type { FlowSource } from './agent-routes.js'

/** The NFLOG group flatnet's rules log to. */
export const FLATNET_LOG_GROUP = 17

/** A failsafe entry the enforcement cannot express: an SCTP one (the ruleset's failsafe rules are TCP or UDP). */
export class FailsafeUnsupportedError extends FlatnetError {
  readonly code = 'ERR_AGENT_FAILSAFE'
}

/** The configuration's failsafe entries as ruleset input; an empty `cidr` means any address. */
function ports(list: readonly FailsafePort[], field: string): NftPortSpec[] {
  return list.map((p, i) => {
    if (p.protocol === 'SCTP') throw new FailsafeUnsupportedError(`${field}[${i}]: failsafe rules are TCP or UDP`)
    return { protocol: p.protocol === 'TCP' ? 'tcp' : 'udp', port: p.port, cidr: p.cidr === '' ? undefined : p.cidr }
  })
}

/** `policy.failsafe` as the ruleset's failsafe input. */
export function failsafeRulesetInput(failsafe: AgentFailsafeConfig): NftFailsafe {
  return { inbound: ports(failsafe.inbound, 'policy.failsafe.inbound'), outbound: ports(failsafe.outbound, 'policy.failsafe.outbound') }
}

function meshPort(config: AgentConfig): number | undefined {
  const m = /\/tcp\/(\d+)/.exec(config.mesh.listen[0] ?? '')
  return m ? Number(m[1]) : undefined
}

/** A log tag from the node name: nft's prefix allows letters, digits, `_`, `.`, `-`, at most 32. */
function logTag(nodeName: string): string {
  return `fn.${nodeName.replace(/[^A-Za-z0-9_.-]/g, '_')}`.slice(0, 32)
}

/** `policy.conntrackCut: false`: existing connections run on until they end by themselves. */
const keepConnections: ConntrackCutter = {
  list: async () => [],
  cut: async () => ({ examined: 0, denied: [], deletions: 0 }),
}

export interface HostEnforcementComponents {
  readonly config: AgentConfig
  readonly log: Logger
}

export function createHostEnforcement(components: HostEnforcementComponents): Enforcer & FlowSource {
  const { config, log } = components
  const flowLog = new FlowLog()
  const reader = createFlowLogReader(flowLog, { group: FLATNET_LOG_GROUP })
  const failsafe = failsafeRulesetInput(config.policy.failsafe)
  const self = {
    async start() {
      try {
        await inner.start()
      } catch (err) {
        // Enforcement does not depend on the flow log: without tcpdump, `flatnet flows` is empty.
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'flow log unavailable; enforcement goes on without it')
      }
    },
    apply: (...args: Parameters<Enforcer['apply']>) => inner.apply(...args),
    stop: (options: { removeRules: boolean }) => inner.stop(options),
    holdsRules: () => table.exists(),
    recentFlows(limit: number): FlowRecord[] {
      return flowLog.recent({ limit })
    },
  }
  const table = createNftTable()
  const inner = createNftEnforcer(
    { table, conntrack: config.policy.conntrackCut ? createConntrackCutter() : keepConnections, flowLog, flowLogReader: reader },
    {
      ruleset: {
        failsafe,
        protectedPorts: { overlayUdpPort: config.wireguard.listenPort, meshTcpPort: meshPort(config) },
        logPrefixTag: logTag(config.nodeName),
        logGroup: FLATNET_LOG_GROUP,
      },
    },
  )
  return self
}
