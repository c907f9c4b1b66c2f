/**
 * The local API of a running agent (`/run/flatnet/agent.sock`): what `flatnet status`,
 * `flatnet flows`, `flatnet lab` and the CNI plugin ask.
 *
 *   GET    /v1/status                       this node: peers, handshakes, endpoints, applied revision
 *   GET    /v1/flows?limit=N                recent allowed and denied flows, with the deciding rule
 *   GET    /v1/workloads                    workloads attached by this agent
 *   POST   /v1/workloads                    attach {namespace, name, netns, ifname?, labels?, ports?}
 *   DELETE /v1/workloads/:namespace/:name   detach (idempotent)
 */
import { FlatnetError } from '@flatnet/core'
import type { ApiRoutes } from './api/routes.js'
import { WorkloadRequestError, type AttachRequest } from './workloads/workload-manager.js'
import type { Agent } from './agent.js'
import { cniRoutes } from './cni-routes.js'

export interface FlowSource {
  recentFlows(limit: number): unknown[]
}

/** The agent has not reached the store yet, so nothing that needs it can be done. */
export class AgentNotJoinedError extends FlatnetError {
  readonly code = 'ERR_AGENT_NOT_JOINED'
}

export function agentRoutes(agent: Agent, flows: FlowSource): ApiRoutes {
  const workloads = () => {
    if (!agent.workloads) throw new AgentNotJoinedError('the agent has not reached the store yet; workloads cannot be attached until it has')
    return agent.workloads
  }
  return {
    ...cniRoutes(agent),
    'GET /v1/status': () => agent.status(),
    'GET /v1/flows': (req) => {
      const limit = Math.min(Math.max(Number(req.query.get('limit') ?? 200) || 200, 1), 10_000)
      return { flows: flows.recentFlows(limit) }
    },
    'GET /v1/workloads': () => ({ workloads: agent.workloads?.list() ?? [] }),
    'POST /v1/workloads': async (req) => {
      const body = req.body
      if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new WorkloadRequestError('the request body must be a JSON object {namespace, name, netns, ...}')
      const attachment = await workloads().attach(body as AttachRequest)
      return { workload: attachment }
    },
    'DELETE /v1/workloads/:namespace/:name': async (req) => {
      const removed = await workloads().detach(`${req.params.namespace}/${req.params.name}`)
      return { removed }
    },
  }
}
