/**
 * PolicyCompiler: turns a stream of object changes into successive immutable PolicySnapshots.
 *
 * Calculation only (no I/O), in the manner of Calico's felix: `update()` is cheap and just
 * records the latest state per key (changes to one key coalesce), `commit()` does the work
 * and touches only what the changes can affect:
 *
 *   NetworkPolicy in namespace N changed  -> endpoint records of N it selects (before or after)
 *   ClusterNetworkPolicy changed          -> namespace records its subject selects (before or after)
 *   Namespace labels changed              -> that namespace's record (cluster subjects)
 *   endpoint changed                      -> that endpoint's record
 *
 * The result depends only on the current state, never on the order of updates.
 */
import { endpointKey, formatIp, labelsFromRecord, NAMESPACE_NAME_LABEL, type IpAddress, type NamedPort } from '@flatnet/core'
import { CompiledClusterPolicy, CompiledNetworkPolicy, compareClusterPolicies } from './compiled-policy.js'
import type { EndpointObject, NamespaceObject, PolicyObject } from './model.js'
import { policyKey } from './model.js'
import { PersistentMap } from './persistent-map.js'
import { SelectorCache } from './selector.js'
import { isolationDenial, PolicySnapshot, type EndpointRecord, type NamespaceRecord } from './snapshot.js'

export type ObjectRef =
  | { readonly kind: 'NetworkPolicy'; readonly namespace: string; readonly name: string }
  | { readonly kind: 'ClusterNetworkPolicy'; readonly name: string }
  | { readonly kind: 'Namespace'; readonly name: string }
  | { readonly kind: 'Pod' | 'HostEndpoint'; readonly namespace: string; readonly name: string }

export type Change = { readonly op: 'upsert'; readonly object: PolicyObject | NamespaceObject | EndpointObject } | { readonly op: 'delete'; readonly ref: ObjectRef }

type PendingKey = string

function refOf(o: PolicyObject | NamespaceObject | EndpointObject): ObjectRef {
  switch (o.kind) {
    case 'ClusterNetworkPolicy':
    case 'Namespace':
      return { kind: o.kind, name: o.name }
    default:
      return { kind: o.kind, namespace: o.namespace, name: o.name }
  }
}

function pendingKey(ref: ObjectRef): PendingKey {
  // Pods and HostEndpoints share one key space: both are endpoints named namespace/name.
  const kind = ref.kind === 'Pod' || ref.kind === 'HostEndpoint' ? 'Endpoint' : ref.kind
  return 'namespace' in ref ? `${kind}:${ref.namespace}/${ref.name}` : `${kind}:${ref.name}`
}

const EMPTY_SNAPSHOT = (): PolicySnapshot =>
  new PolicySnapshot(0, [], new Map(), PersistentMap.empty(), PersistentMap.empty(), PersistentMap.empty(), [])

export class PolicyCompiler {
  private current: PolicySnapshot = EMPTY_SNAPSHOT()
  private readonly pending = new Map<PendingKey, Change>()
  private readonly selectors = new SelectorCache()

  get snapshot(): PolicySnapshot {
    return this.current
  }

  /** Records a change; nothing is computed until `commit()`. */
  update(change: Change): void {
    const ref = change.op === 'upsert' ? refOf(change.object) : change.ref
    const key = pendingKey(ref)
    // Delete-then-reinsert so that iteration order follows the latest change.
    this.pending.delete(key)
    this.pending.set(key, change)
  }

  upsert(object: PolicyObject | NamespaceObject | EndpointObject): void {
    this.update({ op: 'upsert', object })
  }

  delete(ref: ObjectRef): void {
    this.update({ op: 'delete', ref })
  }

  /** Loads a whole state at once and commits it. */
  load(objects: { policies?: readonly PolicyObject[]; namespaces?: readonly NamespaceObject[]; endpoints?: readonly EndpointObject[] }): PolicySnapshot {
    for (const o of objects.namespaces ?? []) this.upsert(o)
    for (const o of objects.endpoints ?? []) this.upsert(o)
    for (const o of objects.policies ?? []) this.upsert(o)
    return this.commit()
  }

  /** Applies every pending change and returns the new snapshot (the same one if nothing was pending). */
  commit(): PolicySnapshot {
    if (this.pending.size === 0) return this.current
    const changes = [...this.pending.values()]
    this.pending.clear()
    this.current = new CommitPass(this.current, this.selectors).run(changes)
    return this.current
  }
}

type PolicyLists = Pick<EndpointRecord, 'ingressRules' | 'egressRules' | 'ingressDenial' | 'egressDenial'> & {
  readonly ingress: EndpointRecord['ingressPolicies']
  readonly egress: EndpointRecord['egressPolicies']
}

/** The work of one commit, with drafts of whatever it changes. */
class CommitPass {
  private readonly namespaces: NamespaceRecord[]
  private readonly namespaceIndex: Map<string, number>
  private readonly nsDrafts = new Map<number, { labels?: NamespaceRecord['labels']; declared?: boolean; policies?: CompiledNetworkPolicy[]; endpoints?: Set<string> }>()
  private readonly endpoints
  private readonly ipIndex
  private readonly networkPolicies
  private clusterPolicies: CompiledClusterPolicy[]
  /** Per namespace, the NetworkPolicies replaced or added in this pass: old and new versions. */
  private readonly changedPolicies = new Map<number, CompiledNetworkPolicy[]>()
  /** Namespaces whose list of cluster policies must be rebuilt. */
  private readonly clusterDirty = new Set<number>()
  /** Per namespace, policy lists already built in this pass, by which of its policies they hold. */
  private readonly sharedLists = new Map<number, Map<number | string, PolicyLists>>()
  /**
   * Label sets, named ports and cluster policy lists already built in this pass, by content.
   * Kept for one pass only, so that label sets which no longer exist are not remembered forever.
   */
  private readonly sharedLabels = new Map<string, EndpointRecord['labels']>()
  private readonly sharedNamedPorts = new Map<string, EndpointRecord['namedPorts']>()
  private readonly sharedClusterLists = new Map<string, readonly CompiledClusterPolicy[]>()
  /** Endpoint keys whose record must be rebuilt (or removed). */
  private readonly dirtyEndpoints = new Set<string>()
  private readonly endpointObjects = new Map<string, EndpointObject | null>()

  constructor(
    private readonly base: PolicySnapshot,
    private readonly selectors: SelectorCache,
  ) {
    this.namespaces = base.namespaces.slice()
    this.namespaceIndex = new Map(base.namespaceIndex)
    this.endpoints = base.endpoints.edit()
    this.ipIndex = base.ipIndex.edit()
    this.networkPolicies = base.networkPolicies.edit()
    this.clusterPolicies = base.clusterPolicies.slice()
  }

  run(changes: readonly Change[]): PolicySnapshot {
    let clusterChanged = false
    for (const change of changes) {
      if (change.op === 'upsert') {
        const o = change.object
        if (o.kind === 'Namespace') this.setNamespace(o.name, o)
        else if (o.kind === 'NetworkPolicy') this.setNetworkPolicy(policyKey(o), o.namespace, new CompiledNetworkPolicy(o, this.selectors))
        else if (o.kind === 'ClusterNetworkPolicy') clusterChanged = this.setClusterPolicy(o.name, new CompiledClusterPolicy(o, this.selectors)) || clusterChanged
        else this.setEndpoint(endpointKey(o), o)
      } else {
        const r = change.ref
        if (r.kind === 'Namespace') this.setNamespace(r.name, undefined)
        else if (r.kind === 'NetworkPolicy') this.setNetworkPolicy(`${r.namespace}/${r.name}`, r.namespace, undefined)
        else if (r.kind === 'ClusterNetworkPolicy') clusterChanged = this.setClusterPolicy(r.name, undefined) || clusterChanged
        else this.setEndpoint(`${r.namespace}/${r.name}`, undefined)
      }
    }
    if (clusterChanged) this.clusterPolicies.sort(compareClusterPolicies)
    this.finishNamespaces()
    this.rebuildEndpoints()
    return new PolicySnapshot(
      this.base.generation + 1,
      this.namespaces,
      this.namespaceIndex,
      this.endpoints.commit(),
      this.ipIndex.commit(),
      this.networkPolicies.commit(),
      this.clusterPolicies,
    )
  }

  private nsIndexFor(name: string): number {
    let i = this.namespaceIndex.get(name)
    if (i === undefined) {
      i = this.namespaces.length
      this.namespaceIndex.set(name, i)
      const labels = labelsFromRecord({ [NAMESPACE_NAME_LABEL]: name })
      this.namespaces.push({ index: i, name, labels, declared: false, policies: [], endpoints: [], adminPolicies: [], baselinePolicies: [] })
      this.clusterDirty.add(i)
    }
    return i
  }

  private draft(i: number): NonNullable<ReturnType<typeof this.nsDrafts.get>> {
    let d = this.nsDrafts.get(i)
    if (!d) {
      d = {}
      this.nsDrafts.set(i, d)
    }
    return d
  }

  private setNamespace(name: string, o: NamespaceObject | undefined): void {
    const i = this.nsIndexFor(name)
    const d = this.draft(i)
    // A namespace that is only referenced keeps the label Kubernetes always gives it.
    d.labels = o ? o.labels : labelsFromRecord({ [NAMESPACE_NAME_LABEL]: name })
    d.declared = o !== undefined
    this.clusterDirty.add(i)
  }

  private setNetworkPolicy(key: string, namespace: string, compiled: CompiledNetworkPolicy | undefined): void {
    const i = this.nsIndexFor(namespace)
    const d = this.draft(i)
    const list = d.policies ?? (this.namespaces[i] as NamespaceRecord).policies.slice()
    const at = list.findIndex((p) => p.key === key)
    const changed = this.changedPolicies.get(i) ?? []
    if (at !== -1) changed.push(...list.splice(at, 1))
    if (compiled) {
      list.push(compiled)
      changed.push(compiled)
      this.networkPolicies.set(key, compiled)
    } else this.networkPolicies.delete(key)
    d.policies = list
    this.changedPolicies.set(i, changed)
  }

  private setClusterPolicy(name: string, compiled: CompiledClusterPolicy | undefined): boolean {
    const at = this.clusterPolicies.findIndex((p) => p.name === name)
    const old = at === -1 ? undefined : this.clusterPolicies[at]
    if (at !== -1) this.clusterPolicies.splice(at, 1)
    if (compiled) this.clusterPolicies.push(compiled)
    // Every namespace the subject covers, before or after, holds endpoints whose list changes.
    for (const p of [old, compiled]) {
      if (!p) continue
      for (const ns of this.namespaces) {
        const labels = this.nsDrafts.get(ns.index)?.labels ?? ns.labels
        if (p.subjectNamespaces.matches(labels)) this.clusterDirty.add(ns.index)
      }
    }
    return old !== undefined || compiled !== undefined
  }

  private setEndpoint(key: string, o: EndpointObject | undefined): void {
    const previous = this.endpointObjects.has(key) ? this.endpointObjects.get(key) : this.endpoints.get(key)?.endpoint
    if (previous) {
      for (const ip of previous.ips) if (this.ipIndex.get(formatIp(ip)) === key) this.ipIndex.delete(formatIp(ip))
      const pi = this.nsIndexFor(previous.namespace)
      const d = this.draft(pi)
      d.endpoints ??= new Set((this.namespaces[pi] as NamespaceRecord).endpoints)
      d.endpoints.delete(key)
    }
    if (o) {
      for (const ip of o.ips) this.ipIndex.set(formatIp(ip), key)
      const ni = this.nsIndexFor(o.namespace)
      const d = this.draft(ni)
      d.endpoints ??= new Set((this.namespaces[ni] as NamespaceRecord).endpoints)
      d.endpoints.add(key)
    }
    this.endpointObjects.set(key, o ?? null)
    this.dirtyEndpoints.add(key)
  }

  private finishNamespaces(): void {
    for (const i of this.clusterDirty) this.draft(i)
    for (const [i, d] of this.nsDrafts) {
      const ns = this.namespaces[i] as NamespaceRecord
      const labels = d.labels ?? ns.labels
      let adminPolicies = ns.adminPolicies
      let baselinePolicies = ns.baselinePolicies
      if (this.clusterDirty.has(i)) {
        const admin: CompiledClusterPolicy[] = []
        const baseline: CompiledClusterPolicy[] = []
        for (const p of this.clusterPolicies) if (p.subjectNamespaces.matches(labels)) (p.tier === 'Admin' ? admin : baseline).push(p)
        adminPolicies = this.sharedClusterList(admin)
        baselinePolicies = this.sharedClusterList(baseline)
      }
      this.namespaces[i] = Object.freeze({
        index: i,
        name: ns.name,
        labels,
        declared: d.declared ?? ns.declared,
        policies: d.policies ? Object.freeze(d.policies.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) : ns.policies,
        endpoints: d.endpoints ? Object.freeze([...d.endpoints]) : ns.endpoints,
        adminPolicies,
        baselinePolicies,
      })
    }
    // A policy is in an endpoint's lists only if it selects the endpoint, so only endpoints that
    // the old or the new version selects can see their lists change.
    for (const [i, changed] of this.changedPolicies) {
      for (const key of (this.namespaces[i] as NamespaceRecord).endpoints) {
        const labels = this.endpoints.get(key)?.labels
        if (labels === undefined || changed.some((p) => p.podSelector.matchesAll || p.podSelector.matches(labels))) this.dirtyEndpoints.add(key)
      }
    }
  }

  private rebuildEndpoints(): void {
    for (const key of this.dirtyEndpoints) {
      const o = this.endpointObjects.has(key) ? this.endpointObjects.get(key) : this.endpoints.get(key)?.endpoint
      if (!o) {
        this.endpoints.delete(key)
        continue
      }
      this.endpoints.set(key, this.buildRecord(key, o))
    }
  }

  private buildRecord(key: string, ep: EndpointObject | EndpointRecord['endpoint']): EndpointRecord {
    const nsIndex = this.namespaceIndex.get(ep.namespace) as number
    const ns = this.namespaces[nsIndex] as NamespaceRecord
    const lists = this.policyLists(nsIndex, ns.policies, ep.labels)
    return Object.freeze({
      key,
      endpoint: ep,
      // Copies, allocated with the record: a lookup then finds the addresses on cache lines it
      // loads anyway, rather than three objects away in the endpoint as it was read.
      ips: Object.freeze(ep.ips.map((ip): IpAddress => ({ family: ip.family, words: [ip.words[0], ip.words[1], ip.words[2], ip.words[3]] }))),
      nsIndex,
      labels: this.sharedLabelSet(ep.labels),
      namedPorts: this.sharedNamedPortMap(ep.namedPorts),
      ingressPolicies: lists.ingress,
      egressPolicies: lists.egress,
      ingressRules: lists.ingressRules,
      egressRules: lists.egressRules,
      ingressDenial: lists.ingressDenial,
      egressDenial: lists.egressDenial,
    })
  }

  // Endpoints of one workload carry equal labels and ports. Sharing one map among them keeps
  // what lookups read about peers in a few hot objects instead of one cold map per endpoint.
  private sharedLabelSet(labels: EndpointRecord['labels']): EndpointRecord['labels'] {
    let key = ''
    for (const [k, v] of labels) key += `${k}\0${v}\0`
    const known = this.sharedLabels.get(key)
    if (known) return known
    this.sharedLabels.set(key, labels)
    return labels
  }

  private sharedNamedPortMap(ports: readonly NamedPort[]): EndpointRecord['namedPorts'] {
    let key = ''
    for (const np of ports) key += `${np.name}\0${np.port}\0${np.protocol}\0`
    const known = this.sharedNamedPorts.get(key)
    if (known) return known
    const namedPorts = new Map<string, NamedPort[]>()
    for (const np of ports) {
      const list = namedPorts.get(np.name)
      if (list) list.push(np)
      else namedPorts.set(np.name, [np])
    }
    this.sharedNamedPorts.set(key, namedPorts)
    return namedPorts
  }

  private sharedClusterList(policies: CompiledClusterPolicy[]): readonly CompiledClusterPolicy[] {
    const key = policies.map((p) => p.name).join('\0')
    const known = this.sharedClusterLists.get(key)
    if (known) return known
    const list = Object.freeze(policies)
    this.sharedClusterLists.set(key, list)
    return list
  }

  /**
   * The isolating policies of an endpoint with these labels. Endpoints of one app select the
   * same policies, so equal lists are shared: less memory, and a denial verdict cached per list
   * serves them all.
   */
  private policyLists(
    nsIndex: number,
    policies: readonly CompiledNetworkPolicy[],
    labels: EndpointRecord['labels'],
  ): PolicyLists {
    const selected: number[] = []
    let mask = 0
    for (let i = 0; i < policies.length; i++) {
      const p = policies[i] as CompiledNetworkPolicy
      if (!p.isolates.ingress && !p.isolates.egress) continue
      if (!p.podSelector.matchesAll && !p.podSelector.matches(labels)) continue
      selected.push(i)
      if (i < 30) mask |= 1 << i
    }
    const key = policies.length <= 30 ? mask : selected.join(',')
    let known = this.sharedLists.get(nsIndex)
    if (!known) {
      known = new Map()
      this.sharedLists.set(nsIndex, known)
    }
    const hit = known.get(key)
    if (hit) return hit
    const ingress: CompiledNetworkPolicy[] = []
    const egress: CompiledNetworkPolicy[] = []
    for (const i of selected) {
      const p = policies[i] as CompiledNetworkPolicy
      if (p.isolates.ingress) ingress.push(p)
      if (p.isolates.egress) egress.push(p)
    }
    const lists: PolicyLists = {
      ingress: Object.freeze(ingress),
      egress: Object.freeze(egress),
      ingressRules: Object.freeze(ingress.flatMap((p) => p.rules.ingress)),
      egressRules: Object.freeze(egress.flatMap((p) => p.rules.egress)),
      ingressDenial: ingress.length > 0 ? isolationDenial('ingress', ingress) : undefined,
      egressDenial: egress.length > 0 ? isolationDenial('egress', egress) : undefined,
    }
    known.set(key, lists)
    return lists
  }
}
