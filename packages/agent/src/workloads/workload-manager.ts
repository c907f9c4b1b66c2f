/**
 * Workloads this agent attached to the host: a network namespace joined to the flat network
 * like a pod (what `flatnet lab` asks for now, and the CNI plugin asks for later).
 *
 *   attach(request) ──> IPAM address for the workload (same handle, same address)
 *                   ──> veth into its netns, address, routes (workload-link.ts)
 *                   ──> the endpoint into the store (labels, ports, node = this node)
 *                   ──> recorded in <stateDir>/workloads.json
 *   detach(key)     ──> the same in reverse; each step tolerates what is already gone
 *
 * A failed attach undoes the steps it made, so nothing is left behind.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { checkLabelKey, checkLabelValue, FlatnetError, InvalidArgumentError, type Protocol } from '@flatnet/core'
import type { FlatnetStore, Ipam } from '@flatnet/store'
import { attachWorkload, checkWorkload, detachWorkload, workloadInterfaceName } from '../dataplane/workload-link.js'

export const WORKLOADS_FILE = 'workloads.json'

export interface WorkloadPort {
  readonly name: string
  readonly port: number
  readonly protocol: Protocol
}

export interface AttachRequest {
  readonly namespace: string
  readonly name: string
  /** The workload's network namespace: a name under /run/netns or an absolute path. */
  readonly netns: string
  readonly ifname?: string | undefined
  readonly labels?: Readonly<Record<string, string>> | undefined
  readonly ports?: readonly WorkloadPort[] | undefined
  /** How policy sees it: a Pod (default) or a HostEndpoint (a VM's or host's service). */
  readonly kind?: 'Pod' | 'HostEndpoint' | undefined
}

export interface Attachment {
  readonly key: string
  readonly namespace: string
  readonly name: string
  readonly netns: string
  readonly ifname: string
  readonly hostIfname: string
  readonly ips: readonly string[]
  readonly labels: Readonly<Record<string, string>>
  readonly ports: readonly WorkloadPort[]
  readonly kind: 'Pod' | 'HostEndpoint'
  readonly attachedAt: string
}

/** A workload request the agent cannot act on (bad fields, or a name taken by another netns). */
export class WorkloadRequestError extends FlatnetError {
  readonly code = 'ERR_AGENT_WORKLOAD'
}

export interface WorkloadManagerComponents {
  readonly store: FlatnetStore
  readonly ipam: Ipam
  /** The node's IPAM identity (its PeerId). */
  readonly ipamNode: string
  /** The node name endpoints carry (`spec.nodeName`). */
  readonly nodeName: string
  readonly stateDir: string
  readonly mtu: number
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }
}

const NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

function checkRequest(r: AttachRequest): void {
  for (const [field, v] of [
    ['namespace', r.namespace],
    ['name', r.name],
  ] as const) {
    if (typeof v !== 'string' || !NAME.test(v)) throw new WorkloadRequestError(`${field} "${String(v)}" must be a DNS label (lower case letters, digits, '-')`)
  }
  if (typeof r.netns !== 'string' || r.netns === '') throw new WorkloadRequestError('netns is required')
  if (r.kind !== undefined && r.kind !== 'Pod' && r.kind !== 'HostEndpoint') throw new WorkloadRequestError(`kind "${String(r.kind)}" must be Pod or HostEndpoint`)
  for (const [k, v] of Object.entries(r.labels ?? {})) {
    const bad = checkLabelKey(k) ?? (typeof v === 'string' ? checkLabelValue(v) : 'must be a string')
    if (bad) throw new WorkloadRequestError(`labels.${k}: ${bad}`)
  }
  for (const [i, p] of (r.ports ?? []).entries()) {
    if (!Number.isInteger(p.port) || p.port < 1 || p.port > 65535) throw new WorkloadRequestError(`ports[${i}].port must be 1 to 65535`)
    if (!['TCP', 'UDP', 'SCTP'].includes(p.protocol)) throw new WorkloadRequestError(`ports[${i}].protocol must be TCP, UDP or SCTP`)
  }
}

/** The endpoint document a workload is stored as: a Pod as Kubernetes would show it, or a HostEndpoint. */
export function workloadEndpointManifest(a: Attachment, nodeName: string): Record<string, unknown> {
  if (a.kind === 'HostEndpoint') {
    return {
      apiVersion: 'flatnet.dev/v1alpha1',
      kind: 'HostEndpoint',
      metadata: { name: a.name, namespace: a.namespace, labels: { ...a.labels } },
      spec: { node: nodeName, ips: [...a.ips], ports: a.ports.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol })) },
    }
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: a.name, namespace: a.namespace, labels: { ...a.labels } },
    spec: { nodeName, containers: [{ name: 'main', ports: a.ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: p.protocol })) }] },
    status: { podIPs: a.ips.map((ip) => ({ ip })) },
  }
}

export class WorkloadManager {
  private readonly attachments = new Map<string, Attachment>()
  /** One attach or detach at a time per workload; others wait their turn. */
  private readonly busy = new Map<string, Promise<unknown>>()

  constructor(private readonly c: WorkloadManagerComponents) {
    const file = this.file
    if (existsSync(file)) {
      try {
        for (const a of JSON.parse(readFileSync(file, 'utf8')) as Attachment[]) this.attachments.set(a.key, a)
      } catch (err) {
        c.log.warn({ file, err: err instanceof Error ? err.message : String(err) }, 'workload list unreadable; starting without it')
      }
    }
  }

  private get file(): string {
    return join(this.c.stateDir, WORKLOADS_FILE)
  }

  private save(): void {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 })
    const tmp = `${this.file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify([...this.attachments.values()], null, 1), { mode: 0o600 })
    renameSync(tmp, this.file)
  }

  list(): Attachment[] {
    return [...this.attachments.values()].sort((a, b) => (a.key < b.key ? -1 : 1))
  }

  get(key: string): Attachment | undefined {
    return this.attachments.get(key)
  }

  private serial<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.busy.get(key) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    this.busy.set(key, next)
    void next.finally(() => this.busy.get(key) === next && this.busy.delete(key)).catch(() => undefined)
    return next
  }

  attach(request: AttachRequest): Promise<Attachment> {
    try {
      checkRequest(request)
    } catch (err) {
      return Promise.reject(err instanceof InvalidArgumentError ? new WorkloadRequestError(err.message) : err)
    }
    const key = `${request.namespace}/${request.name}`
    return this.serial(key, () => this.doAttach(key, request))
  }

  private async doAttach(key: string, r: AttachRequest): Promise<Attachment> {
    const existing = this.attachments.get(key)
    if (existing) {
      if (existing.netns !== r.netns) throw new WorkloadRequestError(`${key} is already attached to network namespace ${existing.netns}`)
      // The same request again (a retried CNI ADD): answer it if the link is whole, else redo it.
      const check = await checkWorkload({ netns: existing.netns, ifname: existing.ifname, hostIfname: existing.hostIfname, addresses: existing.ips, mtu: this.c.mtu }).catch(() => undefined)
      if (check?.ok) return existing
      this.c.log.warn({ workload: key, problems: check?.problems }, 'recorded workload link is not whole; attaching it again')
      await detachWorkload({ hostIfname: existing.hostIfname, netns: existing.netns }).catch(() => undefined)
      this.attachments.delete(key)
    }
    const handle = `workload:${key}`
    const allocation = await this.c.ipam.allocate({ node: this.c.ipamNode, handle })
    const hostIfname = workloadInterfaceName(key)
    const a: Attachment = {
      key,
      namespace: r.namespace,
      name: r.name,
      netns: r.netns,
      ifname: r.ifname ?? 'eth0',
      hostIfname,
      ips: [allocation.ip],
      labels: { ...(r.labels ?? {}) },
      ports: [...(r.ports ?? [])],
      kind: r.kind ?? 'Pod',
      attachedAt: new Date().toISOString(),
    }
    let linked = false
    try {
      await attachWorkload({ netns: a.netns, ifname: a.ifname, hostIfname, addresses: a.ips, mtu: this.c.mtu })
      linked = true
      await this.c.store.write([{ op: 'put', kind: 'Endpoint', key, value: workloadEndpointManifest(a, this.c.nodeName) }])
    } catch (err) {
      if (linked) await detachWorkload({ hostIfname, netns: a.netns }).catch(() => undefined)
      await this.c.ipam.release({ node: this.c.ipamNode, handle }).catch(() => undefined)
      throw err
    }
    this.attachments.set(key, a)
    this.save()
    this.c.log.info({ workload: key, ips: a.ips, hostIfname }, 'workload attached')
    return a
  }

  detach(key: string): Promise<boolean> {
    return this.serial(key, async () => {
      const a = this.attachments.get(key)
      if (!a) return false
      await detachWorkload({ hostIfname: a.hostIfname, netns: a.netns })
      await this.c.store.write([{ op: 'delete', kind: 'Endpoint', key }])
      await this.c.ipam.release({ node: this.c.ipamNode, handle: `workload:${key}` })
      this.attachments.delete(key)
      this.save()
      this.c.log.info({ workload: key }, 'workload detached')
      return true
    })
  }
}
