/**
 * Workloads this agent attached to the host: a network namespace joined to the flat network
 * like a pod (what `flatnet lab` asks for now, and the CNI plugin asks for later).
 *
 *   attach(request) ──> IPAM address for the workload (same handle, same address)
 *                   ──> veth into its netns, address, routes (workload-link.ts)
 *                       and, at the same time, the endpoint into the store (labels, ports, node)
 *                   ──> recorded in <stateDir>/workloads.json
 *   detach(key)     ──> the same in reverse; each step tolerates what is already gone
 *                       (a Pod the Kubernetes syncer owns stays in the store, without addresses)
 *
 * A failed attach undoes the steps it made, so nothing is left behind.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { AGENT_NODE_ANNOTATION, annotationOf, checkDns1123Label, checkDns1123Subdomain, checkLabelKey, checkLabelValue, FlatnetError, InvalidArgumentError, type Protocol } from '@flatnet/core'
import { ObjectRevisionMismatchError, type FlatnetStore, type Ipam, type StoredObject, type WriteOp, type WriteOutcome } from '@flatnet/store'
import { HostForwarding } from '../dataplane/host-forwarding.js'
import { attachWorkload, checkWorkload, detachWorkload, workloadInterfaceName, type WorkloadLinkOptions } from '../dataplane/workload-link.js'

export const WORKLOADS_FILE = 'workloads.json'

/** Reads and writes of an endpoint another writer changes at the same moment, before giving up. */
const STORED_WRITE_ATTEMPTS = 5

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
  /**
   * Set by CNI requests: the attachment (network, container ID, interface) this workload is
   * for, which DEL, CHECK and GC name it by. A workload attached for one attachment ID is not
   * taken over by a request for another while that one's network namespace exists.
   */
  readonly attachmentId?: string | undefined
  /**
   * Who owns the endpoint's labels and ports: the request (default), or the object already in
   * the store (`store`: a Pod the Kubernetes syncer wrote; the agent only sets its node and
   * addresses, and keeps everything else).
   */
  readonly labelsFrom?: 'request' | 'store' | undefined
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
  /** The CNI attachment this workload is for (see AttachRequest). */
  readonly attachmentId?: string | undefined
  readonly labelsFrom?: 'request' | 'store' | undefined
  /** The store revision that holds the endpoint as attached: enforced once the agent applied it. */
  readonly endpointRevision?: number | undefined
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
  /** The host's /proc/sys/net (`dataplane.procSysNet`): veth settings and forwarding. Default /proc/sys/net. */
  readonly procSysNet?: string | undefined
  readonly log: { info(obj: object, msg: string): void; warn(obj: object, msg: string): void }
}

function checkRequest(r: AttachRequest): void {
  if (typeof r.namespace !== 'string' || checkDns1123Label(r.namespace)) throw new WorkloadRequestError(`namespace "${String(r.namespace)}" must be a DNS label (lower case letters, digits, '-')`)
  // Object names as Kubernetes has them (pod names may contain dots).
  if (typeof r.name !== 'string' || checkDns1123Subdomain(r.name)) throw new WorkloadRequestError(`name "${String(r.name)}" must be a DNS subdomain (lower case letters, digits, '-', '.')`)
  if (typeof r.netns !== 'string' || r.netns === '') throw new WorkloadRequestError('netns is required')
  if (r.attachmentId !== undefined && (typeof r.attachmentId !== 'string' || r.attachmentId === '')) throw new WorkloadRequestError('attachmentId must be a non-empty string')
  if (r.labelsFrom !== undefined && r.labelsFrom !== 'request' && r.labelsFrom !== 'store') throw new WorkloadRequestError(`labelsFrom "${String(r.labelsFrom)}" must be request or store`)
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

type StoredPod = { kind?: unknown; metadata?: Record<string, unknown>; spec?: Record<string, unknown>; status?: Record<string, unknown> }

/** A stored Pod endpoint, or undefined for anything else. */
function storedPod(stored: unknown): (StoredPod & { metadata: Record<string, unknown> }) | undefined {
  const doc = stored as StoredPod | null | undefined
  return doc?.kind === 'Pod' && typeof doc.metadata === 'object' && doc.metadata !== null ? (doc as StoredPod & { metadata: Record<string, unknown> }) : undefined
}

/** metadata with `flatnet.dev/agent-node: nodeName`: this node's agent owns the Pod's node and addresses. */
function withAgentMark(metadata: Record<string, unknown>, nodeName: string): Record<string, unknown> {
  const annotations = typeof metadata.annotations === 'object' && metadata.annotations !== null ? (metadata.annotations as Record<string, unknown>) : {}
  return { ...metadata, annotations: { ...annotations, [AGENT_NODE_ANNOTATION]: nodeName } }
}

/**
 * The Pod already in the store (the Kubernetes syncer's) with this node and these addresses,
 * marked as this node's attachment (`flatnet.dev/agent-node`: the syncer keeps node and
 * addresses as the agent wrote them); labels, ports and everything else stay as the syncer wrote
 * them. Without one, a Pod with no labels: the syncer's next write fills them in.
 */
export function podManifestOverStored(stored: unknown, a: Attachment, nodeName: string): Record<string, unknown> {
  const doc = storedPod(stored) ?? (workloadEndpointManifest({ ...a, kind: 'Pod' }, nodeName) as StoredPod & { metadata: Record<string, unknown> })
  return {
    ...doc,
    metadata: withAgentMark({ ...doc.metadata, name: a.name, namespace: a.namespace }, nodeName),
    spec: { ...(doc.spec ?? {}), nodeName },
    status: { ...(doc.status ?? {}), podIPs: a.ips.map((ip) => ({ ip })) },
  }
}

/**
 * The stored Pod after this node detached it (CNI DEL), or undefined when there is none to keep.
 * This node's attachment (its mark, or an unmarked Pod on this node) stays without addresses and
 * with the mark: the syncer then writes no addresses over it (the API still shows the old
 * sandbox's, which this node may give to another pod), and the pod's labels are there for its next
 * sandbox; the syncer deletes the Pod when Kubernetes does. A Pod another node attached since
 * (a pod of the same name elsewhere) is not this node's to change: returned as it is.
 */
export function podAfterDetach(stored: unknown, nodeName: string): Record<string, unknown> | undefined {
  const doc = storedPod(stored)
  if (doc === undefined) return undefined
  const mark = annotationOf(doc, AGENT_NODE_ANNOTATION)
  const node = mark ?? doc.spec?.nodeName
  if (typeof node === 'string' && node !== '' && node !== nodeName) return doc
  const status: Record<string, unknown> = { ...(doc.status ?? {}) }
  delete status.podIPs
  delete status.podIP
  return { ...doc, metadata: withAgentMark(doc.metadata, nodeName), status }
}

function storedLabels(stored: unknown): Record<string, string> {
  const labels = (stored as { metadata?: { labels?: unknown } } | undefined)?.metadata?.labels
  return typeof labels === 'object' && labels !== null ? { ...(labels as Record<string, string>) } : {}
}

/** True when a workload's network namespace no longer exists (its container is gone). */
export function netnsGone(netns: string): boolean {
  return !existsSync(netns.startsWith('/') ? netns : `/run/netns/${netns}`)
}

export class WorkloadManager {
  private readonly attachments = new Map<string, Attachment>()
  /** One attach or detach at a time per workload; others wait their turn. */
  private readonly busy = new Map<string, Promise<unknown>>()
  /** How this host's workload links are made and checked (also by the CNI CHECK route). */
  readonly linkOptions: WorkloadLinkOptions
  private readonly forwarding: HostForwarding

  constructor(private readonly c: WorkloadManagerComponents) {
    this.linkOptions = { procSysNet: c.procSysNet }
    this.forwarding = new HostForwarding({ procSysNet: c.procSysNet, log: c.log })
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

  /** The workload attached for a CNI attachment ID, if any. */
  byAttachmentId(attachmentId: string): Attachment | undefined {
    for (const a of this.attachments.values()) if (a.attachmentId === attachmentId) return a
    return undefined
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
    if (existing && existing.attachmentId !== r.attachmentId) {
      // Another container under the same name: take over only from one whose namespace is gone
      // (a container that died without a CNI DEL).
      if (existing.attachmentId === undefined || r.attachmentId === undefined || !netnsGone(existing.netns)) {
        throw new WorkloadRequestError(`${key} is already attached${existing.attachmentId ? ` for ${existing.attachmentId}` : ''} to network namespace ${existing.netns}`)
      }
      this.c.log.warn({ workload: key, previous: existing.attachmentId, next: r.attachmentId }, 'workload name taken over from an attachment whose network namespace is gone')
      await detachWorkload({ hostIfname: existing.hostIfname, netns: existing.netns })
      this.attachments.delete(key)
      this.save()
    } else if (existing) {
      if (existing.netns !== r.netns) throw new WorkloadRequestError(`${key} is already attached to network namespace ${existing.netns}`)
      // The same request again (a retried CNI ADD): answer it if the link is whole, else redo it.
      const check = await checkWorkload({ netns: existing.netns, ifname: existing.ifname, hostIfname: existing.hostIfname, addresses: existing.ips, mtu: this.c.mtu }, this.linkOptions).catch(() => undefined)
      if (check?.ok) return existing
      this.c.log.warn({ workload: key, problems: check?.problems }, 'recorded workload link is not whole; attaching it again')
      await detachWorkload({ hostIfname: existing.hostIfname, netns: existing.netns }).catch(() => undefined)
      this.attachments.delete(key)
    }
    const handle = `workload:${key}`
    const allocation = await this.c.ipam.allocate({ node: this.c.ipamNode, handle })
    const hostIfname = workloadInterfaceName(key)
    let a: Attachment = {
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
      ...(r.attachmentId !== undefined ? { attachmentId: r.attachmentId } : {}),
      ...(r.labelsFrom !== undefined ? { labelsFrom: r.labelsFrom } : {}),
    }
    // The link and the endpoint are made at the same time: the apply pass that enforces the
    // endpoint runs while the veth is being set up, so a caller waiting for both (a CNI ADD
    // waiting for its policy) waits for the longer, not for the sum. The endpoint names an
    // address nothing can reach yet, which is harmless; if either fails, both are undone.
    let linked = false
    let stored: unknown
    let written = false
    // Forwarding first (host-forwarding.ts): its failure fails the link, which undoes the rest.
    const link = this.forwarding.ensureFor(a.ips).then(() => attachWorkload({ netns: a.netns, ifname: a.ifname, hostIfname, addresses: a.ips, mtu: this.c.mtu }, this.linkOptions)).then(() => {
      linked = true
    })
    const endpoint = (async () => {
      let outcome: WriteOutcome
      if (r.labelsFrom === 'store') {
        outcome = await this.writeOverStored(key, (current) => {
          stored = current?.value
          a = { ...a, kind: 'Pod', labels: storedLabels(stored) }
          // Known before the endpoint is: the apply pass its write triggers must find the host veth.
          this.attachments.set(key, a)
          return { op: 'put', kind: 'Endpoint', key, value: podManifestOverStored(stored, a, this.c.nodeName) }
        })
      } else {
        this.attachments.set(key, a)
        outcome = await this.c.store.write([{ op: 'put', kind: 'Endpoint', key, value: workloadEndpointManifest(a, this.c.nodeName) }])
      }
      written = true
      a = { ...a, endpointRevision: outcome.revision }
      this.attachments.set(key, a)
    })()
    const failure = (await Promise.allSettled([link, endpoint])).find((o): o is PromiseRejectedResult => o.status === 'rejected')
    if (failure) {
      this.attachments.delete(key)
      if (written) {
        // Back to what was there: the syncer's Pod as it was, or nothing.
        const undo: WriteOp = stored !== undefined && r.labelsFrom === 'store' ? { op: 'put', kind: 'Endpoint', key, value: stored } : { op: 'delete', kind: 'Endpoint', key }
        await this.c.store.write([undo]).catch(() => undefined)
      }
      if (linked) await detachWorkload({ hostIfname, netns: a.netns }).catch(() => undefined)
      await this.c.ipam.release({ node: this.c.ipamNode, handle }).catch(() => undefined)
      throw failure.reason
    }
    this.save()
    this.c.log.info({ workload: key, ips: a.ips, hostIfname }, 'workload attached')
    return a
  }

  /**
   * What becomes of the endpoint: deleted, unless its labels come from Kubernetes (`labelsFrom:
   * store`). Then the Pod stays, without the addresses (podAfterDetach): the pod may get a new
   * sandbox, and its labels must be there when it does; the syncer deletes the Pod when
   * Kubernetes does.
   */
  private async endpointAfterDetach(a: Attachment): Promise<void> {
    if (a.labelsFrom !== 'store') {
      await this.c.store.write([{ op: 'delete', kind: 'Endpoint', key: a.key }])
      return
    }
    await this.writeOverStored(a.key, (current) => {
      const after = podAfterDetach(current?.value, this.c.nodeName)
      // Another node's Pod by now: not this node's to change.
      if (after !== undefined && after === current?.value) return undefined
      return after !== undefined ? { op: 'put', kind: 'Endpoint', key: a.key, value: after } : { op: 'delete', kind: 'Endpoint', key: a.key }
    })
  }

  /**
   * A read-modify-write of an endpoint the Kubernetes syncer writes too: `build` makes the write
   * from what is stored, which is written only if the endpoint has not changed since it was read
   * (a per-object compare-and-set); otherwise it is read and built again. So a syncer write that
   * lands in between (new labels) is never undone. `build` returning undefined writes nothing.
   */
  private writeOverStored(key: string, build: (current: StoredObject | undefined) => WriteOp): Promise<WriteOutcome>
  private writeOverStored(key: string, build: (current: StoredObject | undefined) => WriteOp | undefined): Promise<WriteOutcome | undefined>
  private async writeOverStored(key: string, build: (current: StoredObject | undefined) => WriteOp | undefined): Promise<WriteOutcome | undefined> {
    for (let attempt = 1; ; attempt++) {
      const current = await this.c.store.get('Endpoint', key)
      const op = build(current)
      if (op === undefined) return undefined
      try {
        return await this.c.store.write([{ ...op, ifRevision: current?.revision ?? 0 }])
      } catch (err) {
        if (!(err instanceof ObjectRevisionMismatchError) || attempt >= STORED_WRITE_ATTEMPTS) throw err
      }
    }
  }

  /**
   * Detaches a workload; false when it is not attached. With `attachmentId`, only the workload
   * attached for that ID (a CNI DEL for a container that no longer holds the name does nothing).
   */
  detach(key: string, options: { readonly attachmentId?: string | undefined } = {}): Promise<boolean> {
    return this.serial(key, async () => {
      const a = this.attachments.get(key)
      if (!a) return false
      if (options.attachmentId !== undefined && a.attachmentId !== options.attachmentId) return false
      // The link and the endpoint go at the same time (neither needs the other gone first); the
      // address is freed only after both, so that no new workload gets it while a route to the
      // old veth or an endpoint naming it remains.
      await Promise.all([detachWorkload({ hostIfname: a.hostIfname, netns: a.netns }), this.endpointAfterDetach(a)])
      await this.c.ipam.release({ node: this.c.ipamNode, handle: `workload:${key}` })
      this.attachments.delete(key)
      this.save()
      this.c.log.info({ workload: key }, 'workload detached')
      return true
    })
  }
}
