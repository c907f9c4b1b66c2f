/**
 * The local API routes `flatnet-cni` calls (packages/cni). The plugin only forwards: the agent
 * allocates the address from its block, makes the veth into the container's namespace, sets
 * address and routes, and writes the endpoint to the store, all through the WorkloadManager,
 * the same path `flatnet lab` workloads take. CNI attachments are keyed as the spec keys them:
 * network name, container ID and interface name (`cni:<network>:<containerId>:<ifname>`).
 *
 *   POST   /v1/cni/attachments                                 ADD: attach, wait until its policy is enforced
 *   DELETE /v1/cni/attachments/:network/:containerId/:ifname   DEL: detach; success when already gone
 *   POST   /v1/cni/check                                       CHECK: link, addresses, routes, endpoint, nftables rules
 *   POST   /v1/cni/gc                                          GC: detach the network's attachments not listed as valid
 *   GET    /v1/cni/status                                      STATUS: can ADD be served?
 *
 * An attachment whose container's network namespace is gone is removed at the next ADD or GC:
 * a DEL that failed while the agent was down is not lost (podman does not retry it).
 *
 * The first packet of a container must not pass before its policy is: ADD answers only once
 * the agent has applied the store revision that holds the new endpoint (`policyWaitMs`), and
 * undoes the attachment if that does not happen in time.
 */
import { execFile } from 'node:child_process'
import { FlatnetError, formatIp } from '@flatnet/core'
import type { EndpointRecord } from '@flatnet/policy'
import type { ApiRoutes } from './api/routes.js'
import { checkWorkload, HOST_VETH_MAC, type WorkloadLinkProblem } from './dataplane/workload-link.js'
import { createNftTable, type NftTable } from './enforcement/nft-table.js'
import { AgentNotJoinedError } from './agent-routes.js'
import { netnsGone, WorkloadRequestError, type Attachment, type WorkloadManager } from './workloads/workload-manager.js'

/** What the CNI routes need of the agent (the Agent class has all of it). */
export interface CniAgent {
  readonly workloads: WorkloadManager | undefined
  readonly config: { readonly wireguard: { readonly mtu: number } }
  readiness(): { ready: boolean; reasons: string[] }
  /** Resolves once the rules for the revision (or a later one) are in the kernel. */
  waitEnforced(revision: number, timeoutMs: number): Promise<unknown>
  /** This node's endpoints in the policy state the agent enforces. */
  readonly localEndpointRecords: readonly EndpointRecord[]
}

export interface CniRoutesOptions {
  /** The agent's nftables table (to check that an attachment's rules are in force). */
  readonly nft?: NftTable | undefined
  /** How long CHECK allows rules and endpoint to catch up with a fresh ADD. */
  readonly checkConvergeMs?: number | undefined
}

export const CNI_ROUTES_DEFAULTS = Object.freeze({
  checkConvergeMs: 3_000,
  /** Upper bound on `policyWaitMs` from a request. */
  maxPolicyWaitMs: 600_000,
})

/** ADD: the agent did not enforce the new endpoint's policy within the time asked; the attachment was undone. */
export class CniPolicyNotEnforcedError extends FlatnetError {
  readonly code = 'ERR_CNI_POLICY_NOT_ENFORCED'
  readonly httpStatus = 503
}

const NETWORK = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/
const IFNAME = /^[^/:\s]{1,15}$/

/** The key a CNI attachment is known by; its parts cannot contain `:`. */
export function cniAttachmentId(network: string, containerId: string, ifname: string): string {
  return `cni:${network}:${containerId}:${ifname}`
}

function field(body: Record<string, unknown>, name: string, pattern: RegExp, what: string): string {
  const v = body[name]
  if (typeof v !== 'string' || !pattern.test(v) || v === '.' || v === '..') throw new WorkloadRequestError(`${name} ${JSON.stringify(v)} must be ${what}`)
  return v
}

function objectBody(body: unknown, shape: string): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new WorkloadRequestError(`the request body must be a JSON object ${shape}`)
  return body as Record<string, unknown>
}

function attachmentKeyOf(body: Record<string, unknown>): { network: string; containerId: string; ifname: string; id: string } {
  const network = field(body, 'network', NETWORK, 'a CNI network name')
  const containerId = field(body, 'containerId', CONTAINER_ID, 'a container ID (letters, digits, "_", ".", "-")')
  const ifname = field(body, 'ifname', IFNAME, 'an interface name (1 to 15 characters, no "/", ":" or white space)')
  return { network, containerId, ifname, id: cniAttachmentId(network, containerId, ifname) }
}

/** The MAC of the container's interface, or undefined when it cannot be read. */
function containerMac(netns: string, ifname: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile('nsenter', [`--net=${netns}`, 'ip', '-j', 'link', 'show', 'dev', ifname], { timeout: 5_000, encoding: 'utf8' }, (err, stdout) => {
      if (err) return resolve(undefined)
      try {
        resolve((JSON.parse(stdout) as { address?: string }[])[0]?.address)
      } catch {
        resolve(undefined)
      }
    })
  })
}

interface Problem {
  readonly what: string
  readonly detail: string
}

/** Every nftables rule and map element, flattened to the strings a check looks for. */
function walk(value: unknown, visit: (node: Record<string, unknown>) => void): void {
  if (Array.isArray(value)) for (const v of value) walk(v, visit)
  else if (typeof value === 'object' && value !== null) {
    visit(value as Record<string, unknown>)
    for (const v of Object.values(value)) walk(v, visit)
  }
}

/**
 * Is the attachment in the enforced ruleset? The host veth must have its anti-spoofing rule
 * (`iifname "<veth>" ... saddr != {...} drop`) and each address its entries in the egress and
 * ingress dispatch maps (see @flatnet/policy's nft-ruleset.ts).
 */
export async function enforcementProblems(nft: NftTable, a: Pick<Attachment, 'hostIfname' | 'ips' | 'key'>): Promise<Problem[]> {
  let table: unknown
  try {
    table = await nft.listJson()
  } catch (err) {
    return [{ what: 'rule', detail: `the nftables table inet ${nft.table} cannot be read: ${err instanceof Error ? err.message : String(err)}` }]
  }
  let antiSpoofing = false
  const mapped = new Map<string, Set<string>>()
  walk(table, (node) => {
    const rule = node.rule as { expr?: unknown } | undefined
    if (rule?.expr !== undefined) {
      walk(rule.expr, (e) => {
        const m = e.match as { left?: { meta?: { key?: string } }; right?: unknown } | undefined
        if (m?.left?.meta?.key === 'iifname' && m.right === a.hostIfname) antiSpoofing = true
      })
    }
    const map = node.map as { name?: string; elem?: unknown } | undefined
    if (typeof map?.name === 'string' && Array.isArray(map.elem)) {
      for (const el of map.elem as unknown[]) {
        const k = Array.isArray(el) ? el[0] : undefined
        if (typeof k === 'string') {
          const set = mapped.get(k) ?? new Set<string>()
          set.add(map.name.replace(/-v[46]$/, ''))
          mapped.set(k, set)
        }
      }
    }
  })
  const problems: Problem[] = []
  if (!antiSpoofing) problems.push({ what: 'rule', detail: `no anti-spoofing rule for ${a.hostIfname} in table inet ${nft.table}` })
  for (const ip of a.ips) {
    for (const direction of ['egress', 'ingress']) {
      if (!mapped.get(ip)?.has(direction)) problems.push({ what: 'rule', detail: `${ip} is not in the ${direction} map of table inet ${nft.table}: no ${direction} policy is enforced for ${a.key}` })
    }
  }
  return problems
}

function endpointProblems(agent: CniAgent, a: Attachment): Problem[] {
  const record = agent.localEndpointRecords.find((r) => r.key === a.key)
  if (!record) return [{ what: 'endpoint', detail: `${a.key} is not among the endpoints this agent enforces (not in the store, or not applied yet)` }]
  const have = record.endpoint.ips.map((ip) => formatIp(ip)).sort()
  if (JSON.stringify(have) !== JSON.stringify([...a.ips].sort())) return [{ what: 'endpoint', detail: `${a.key} has addresses ${have.join(', ') || 'none'} in the enforced state, not ${a.ips.join(', ')}` }]
  return []
}

const linkProblem = (p: WorkloadLinkProblem): Problem => ({ what: p.what === 'host-interface' || p.what === 'workload-interface' ? 'interface' : p.what, detail: `${p.side}: ${p.detail}` })
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export function cniRoutes(agent: CniAgent, options: CniRoutesOptions = {}): ApiRoutes {
  const nft = options.nft ?? createNftTable()
  const checkConvergeMs = options.checkConvergeMs ?? CNI_ROUTES_DEFAULTS.checkConvergeMs
  const workloads = (): WorkloadManager => {
    if (!agent.workloads) throw new AgentNotJoinedError('the agent has not reached the store yet; containers cannot be attached until it has')
    return agent.workloads
  }

  /**
   * Detaches CNI attachments whose network namespace is gone: containers removed while the
   * agent could not be reached (their DEL failed, and podman does not retry), or whose DEL never
   * came. Runs beside each ADD and GC; every detach is best effort and logged by the manager.
   */
  async function sweepGone(manager: WorkloadManager): Promise<string[]> {
    const removed: string[] = []
    for (const a of manager.list()) {
      if (a.attachmentId === undefined || !netnsGone(a.netns)) continue
      if (await manager.detach(a.key, { attachmentId: a.attachmentId }).catch(() => false)) removed.push(a.attachmentId)
    }
    return removed
  }

  /** Waits for the endpoint's state to be applied; on timeout undoes the attachment. */
  async function enforced(a: Attachment, waitMs: number): Promise<void> {
    if (waitMs <= 0 || a.endpointRevision === undefined) return
    try {
      await agent.waitEnforced(a.endpointRevision, waitMs)
    } catch (err) {
      await workloads()
        .detach(a.key, { attachmentId: a.attachmentId })
        .catch(() => undefined)
      throw new CniPolicyNotEnforcedError(`the agent did not enforce the policy of ${a.key} within ${waitMs} ms, so the container was not attached: ${err instanceof Error ? err.message : String(err)}`)
    }
  }

  async function check(body: Record<string, unknown>): Promise<{ ok: boolean; problems: Problem[] }> {
    const { id } = attachmentKeyOf(body)
    const netns = body.netns
    const a = workloads().byAttachmentId(id)
    if (!a) return { ok: false, problems: [{ what: 'attachment', detail: `the agent has no attachment ${id}` }] }
    const problems: Problem[] = []
    if (typeof netns === 'string' && netns !== a.netns) problems.push({ what: 'attachment', detail: `attached to network namespace ${a.netns}, not ${netns}` })
    const expected = Array.isArray(body.ips) ? (body.ips as unknown[]).filter((x): x is string => typeof x === 'string') : []
    for (const ip of expected) if (!a.ips.includes(ip)) problems.push({ what: 'address', detail: `${ip} (from the ADD result) is not an address of ${a.key}; it has ${a.ips.join(', ')}` })
    const link = await checkWorkload({ netns: a.netns, ifname: a.ifname, hostIfname: a.hostIfname, addresses: a.ips, mtu: agent.config.wireguard.mtu }, workloads().linkOptions)
    problems.push(...link.problems.map(linkProblem))
    // Endpoint and rules follow the ADD through the store and an apply pass: allow them time.
    const deadline = Date.now() + checkConvergeMs
    let late: Problem[]
    for (;;) {
      late = [...endpointProblems(agent, a), ...(await enforcementProblems(nft, a))]
      if (late.length === 0 || Date.now() >= deadline) break
      await sleep(100)
    }
    problems.push(...late)
    return { ok: problems.length === 0, problems }
  }

  return {
    'POST /v1/cni/attachments': async (req) => {
      const body = objectBody(req.body, '{network, containerId, ifname, netns, namespace, name, labels, labelsFrom, policyWaitMs}')
      const { id, ifname } = attachmentKeyOf(body)
      const netns = body.netns
      if (typeof netns !== 'string' || !netns.startsWith('/')) throw new WorkloadRequestError(`netns ${JSON.stringify(netns)} must be the absolute path of the container's network namespace`)
      const waitMs = body.policyWaitMs ?? 0
      if (typeof waitMs !== 'number' || !Number.isInteger(waitMs) || waitMs < 0 || waitMs > CNI_ROUTES_DEFAULTS.maxPolicyWaitMs) {
        throw new WorkloadRequestError(`policyWaitMs must be an integer from 0 to ${CNI_ROUTES_DEFAULTS.maxPolicyWaitMs}`)
      }
      const manager = workloads()
      void sweepGone(manager)
      // One flatnet network per container: a second one would be a second endpoint of the same name.
      const sameContainer = manager.list().find((w) => w.attachmentId?.split(':')[2] === body.containerId && w.attachmentId !== id && w.netns === netns)
      if (sameContainer) throw new WorkloadRequestError(`container ${String(body.containerId)} is already attached to the flat network as ${sameContainer.key} (${sameContainer.attachmentId}); a container joins one flatnet network`)
      const a = await manager.attach({
        namespace: body.namespace as string,
        name: body.name as string,
        netns,
        ifname,
        labels: body.labels as Record<string, string> | undefined,
        kind: 'Pod',
        attachmentId: id,
        labelsFrom: body.labelsFrom === 'kubernetes' ? 'store' : 'request',
      })
      // The MAC is read while the policy is being applied: it costs the ADD nothing extra.
      const [mac] = await Promise.all([containerMac(a.netns, a.ifname), enforced(a, waitMs)])
      return {
        attachment: {
          namespace: a.namespace,
          name: a.name,
          ips: a.ips,
          hostIfname: a.hostIfname,
          hostMac: HOST_VETH_MAC,
          mac,
          mtu: agent.config.wireguard.mtu,
        },
      }
    },

    'DELETE /v1/cni/attachments/:network/:containerId/:ifname': async (req) => {
      const { id } = attachmentKeyOf(req.params)
      const manager = workloads()
      const a = manager.byAttachmentId(id)
      const removed = a ? await manager.detach(a.key, { attachmentId: id }) : false
      return { removed }
    },

    'POST /v1/cni/check': async (req) => check(objectBody(req.body, '{network, containerId, ifname, netns, ips}')),

    'POST /v1/cni/gc': async (req) => {
      const body = objectBody(req.body, '{network, valid: [{containerId, ifname}]}')
      const network = field(body, 'network', NETWORK, 'a CNI network name')
      if (!Array.isArray(body.valid)) throw new WorkloadRequestError('valid must be a list of {containerId, ifname}')
      const valid = new Set(
        (body.valid as unknown[]).map((v) => {
          const o = v as { containerId?: unknown; ifname?: unknown } | null
          return cniAttachmentId(network, String(o?.containerId), String(o?.ifname))
        }),
      )
      const manager = workloads()
      const removed: string[] = await sweepGone(manager)
      const failed: { attachment: string; error: string }[] = []
      // Keep going on errors and report them all, as the spec asks.
      for (const a of manager.list()) {
        if (a.attachmentId === undefined || !a.attachmentId.startsWith(`cni:${network}:`) || valid.has(a.attachmentId)) continue
        try {
          if (await manager.detach(a.key, { attachmentId: a.attachmentId })) removed.push(a.attachmentId)
        } catch (err) {
          failed.push({ attachment: a.attachmentId, error: err instanceof Error ? err.message : String(err) })
        }
      }
      return { removed, failed }
    },

    'GET /v1/cni/status': () => {
      const reasons = agent.workloads ? [] : ['the agent has not reached the store yet']
      const r = agent.readiness()
      reasons.push(...r.reasons)
      return { ready: reasons.length === 0, reasons }
    },
  }
}
