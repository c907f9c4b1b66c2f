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
import { clusterRuleWalk, CompiledClusterPolicy, CompiledNetworkPolicy, compareClusterPolicies, EMPTY_PROGRAM, EMPTY_WALK, ruleProgram, type ClusterRuleWalk } from './compiled-policy.js'
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
  /**
   * Each namespace's cluster tiers (policy list, rule walks), by the policies' names, kept from
   * commit to commit until a cluster policy changes: a namespace that gets new labels or joins
   * the cluster mostly lands in a tier that some namespace already has.
   */
  private readonly clusterTiers = new Map<string, ClusterTier>()

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
    this.current = new CommitPass(this.current, this.selectors, this.clusterTiers).run(changes)
    return this.current
  }
}

function sameInts(a: Int32Array, b: Int32Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** One tier's cluster policies of a namespace, with their rule walks per direction. */
interface ClusterTier {
  readonly policies: readonly CompiledClusterPolicy[]
  readonly ingress: ClusterRuleWalk
  readonly egress: ClusterRuleWalk
}

const NO_CLUSTER_POLICIES: ClusterTier = Object.freeze({ policies: Object.freeze([]), ingress: EMPTY_WALK, egress: EMPTY_WALK })

type PolicyLists = Pick<EndpointRecord, 'ingressRules' | 'egressRules' | 'ingressProgram' | 'egressProgram' | 'ingressVerdicts' | 'egressVerdicts' | 'ingressDenial' | 'egressDenial'> & {
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
  /** How many namespace selector slots there were when this pass began. */
  private readonly slotsBefore: number
  /** Programs built in this pass, by a hash of their contents. */
  private readonly sharedPrograms = new Map<number, Int32Array[]>()
  /** Endpoint keys whose record must be rebuilt (or removed). */
  private readonly dirtyEndpoints = new Set<string>()
  private readonly endpointObjects = new Map<string, EndpointObject | null>()

  constructor(
    private readonly base: PolicySnapshot,
    private readonly selectors: SelectorCache,
    /** PolicyCompiler.clusterTiers. */
    private readonly clusterTiers: Map<string, ClusterTier>,
  ) {
    this.namespaces = base.namespaces.slice()
    this.namespaceIndex = new Map(base.namespaceIndex)
    this.endpoints = base.endpoints.edit()
    this.ipIndex = base.ipIndex.edit()
    this.networkPolicies = base.networkPolicies.edit()
    this.clusterPolicies = base.clusterPolicies.slice()
    this.slotsBefore = selectors.namespaceSelectors.length
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
    if (clusterChanged) {
      this.clusterPolicies.sort(compareClusterPolicies)
      this.clusterTiers.clear()
    }
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
      this.selectors.byId,
      this.selectors.names,
      this.selectors.namespaceSelectors,
    )
  }

  private nsIndexFor(name: string): number {
    let i = this.namespaceIndex.get(name)
    if (i === undefined) {
      i = this.namespaces.length
      this.namespaceIndex.set(name, i)
      const labels = labelsFromRecord({ [NAMESPACE_NAME_LABEL]: name })
      this.namespaces.push(
        Object.freeze({
          namespaceBits: this.selectors.namespaceBits(labels),
          adminIngress: EMPTY_WALK,
          adminEgress: EMPTY_WALK,
          baselineIngress: EMPTY_WALK,
          baselineEgress: EMPTY_WALK,
          labels,
          index: i,
          name,
          declared: false,
          policies: [],
          endpoints: [],
          adminPolicies: NO_CLUSTER_POLICIES.policies,
          baselinePolicies: NO_CLUSTER_POLICIES.policies,
        }),
      )
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
    // A selector applied to peers' namespaces for the first time (a policy of this pass brought
    // it) is not yet a bit of the namespace records: rebuild them all, or lookups would have to
    // test it against the namespace's labels from now on. Rare: most policies reuse selectors.
    const slots = this.selectors.namespaceSelectors.length
    if (slots !== this.slotsBefore) {
      for (let i = 0; i < this.namespaces.length; i++) if ((this.namespaces[i] as NamespaceRecord).namespaceBits[0] !== slots) this.draft(i)
    }
    for (const [i, d] of this.nsDrafts) {
      const ns = this.namespaces[i] as NamespaceRecord
      const labels = d.labels ?? ns.labels
      let admin: ClusterTier | undefined
      let baseline: ClusterTier | undefined
      if (this.clusterDirty.has(i)) {
        const adminPolicies: CompiledClusterPolicy[] = []
        const baselinePolicies: CompiledClusterPolicy[] = []
        for (const p of this.clusterPolicies) if (p.subjectNamespaces.matches(labels)) (p.tier === 'Admin' ? adminPolicies : baselinePolicies).push(p)
        admin = this.sharedClusterTier(adminPolicies)
        baseline = this.sharedClusterTier(baselinePolicies)
      }
      // One literal with every field, those a lookup reads first (see NamespaceRecord). Spreading
      // into it would leave the later fields outside the object, one more memory access away.
      this.namespaces[i] = Object.freeze({
        namespaceBits: labels === ns.labels && ns.namespaceBits[0] === slots ? ns.namespaceBits : this.selectors.namespaceBits(labels),
        adminIngress: admin ? admin.ingress : ns.adminIngress,
        adminEgress: admin ? admin.egress : ns.adminEgress,
        baselineIngress: baseline ? baseline.ingress : ns.baselineIngress,
        baselineEgress: baseline ? baseline.egress : ns.baselineEgress,
        labels,
        index: i,
        name: ns.name,
        declared: d.declared ?? ns.declared,
        policies: d.policies ? Object.freeze(d.policies.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) : ns.policies,
        endpoints: d.endpoints ? Object.freeze([...d.endpoints]) : ns.endpoints,
        adminPolicies: admin ? admin.policies : ns.adminPolicies,
        baselinePolicies: baseline ? baseline.policies : ns.baselinePolicies,
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
    let families = 0
    let ip4 = 0
    let ip6: IpAddress | undefined
    for (const ip of ep.ips) {
      if (ip.family === 4 && (families & (1 << 4)) === 0) ip4 = ip.words[0] | 0
      else if (ip.family === 6 && ip6 === undefined) ip6 = ip
      families |= 1 << ip.family
    }
    // The fields a lookup reads first, in the record itself: the first touch of a record is a
    // cache miss, and everything it needs of the endpoint is then on that line or the next.
    return Object.freeze({
      nsIndex,
      families,
      firstFamily: ep.ips.length === 0 ? 0 : (ep.ips[0] as IpAddress).family,
      ip4,
      labels: this.sharedLabelSet(ep.labels),
      ingressProgram: lists.ingressProgram,
      egressProgram: lists.egressProgram,
      ingressDenial: lists.ingressDenial,
      egressDenial: lists.egressDenial,
      ingressVerdicts: lists.ingressVerdicts,
      egressVerdicts: lists.egressVerdicts,
      namedPorts: this.sharedNamedPortMap(ep.namedPorts),
      ip6,
      ingressRules: lists.ingressRules,
      egressRules: lists.egressRules,
      ingressPolicies: lists.ingress,
      egressPolicies: lists.egress,
      key,
      endpoint: ep,
      ips: ep.ips,
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

  private sharedClusterTier(policies: CompiledClusterPolicy[]): ClusterTier {
    if (policies.length === 0) return NO_CLUSTER_POLICIES
    const key = policies.map((p) => p.name).join('\0')
    const known = this.clusterTiers.get(key)
    if (known) return known
    const list = Object.freeze(policies)
    const tier: ClusterTier = { policies: list, ingress: clusterRuleWalk(list, 'ingress'), egress: clusterRuleWalk(list, 'egress') }
    // Bounded: the tiers in use are few, but labels that keep changing could add up.
    if (this.clusterTiers.size >= 10_000) this.clusterTiers.clear()
    this.clusterTiers.set(key, tier)
    return tier
  }


  // A program does not name its namespace or its policies (verdicts are kept apart), so
  // namespaces with policies alike, as templated ones are, share their programs: fewer blocks
  // for lookups to fetch from memory.
  private program(policies: readonly CompiledNetworkPolicy[], direction: 'ingress' | 'egress'): Int32Array {
    if (policies.length === 0) return EMPTY_PROGRAM
    const program = ruleProgram(policies.map((p) => p.ruleCode[direction]))
    let h = 0x811c9dc5
    for (let i = 0; i < program.length; i++) h = Math.imul(h ^ (program[i] as number), 0x01000193)
    const known = this.sharedPrograms.get(h)
    if (known === undefined) this.sharedPrograms.set(h, [program])
    else {
      for (const p of known) if (sameInts(p, program)) return p
      known.push(program)
    }
    return program
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
    const ingressRules = Object.freeze(ingress.flatMap((p) => p.rules.ingress))
    const egressRules = Object.freeze(egress.flatMap((p) => p.rules.egress))
    const lists: PolicyLists = {
      ingress: Object.freeze(ingress),
      egress: Object.freeze(egress),
      ingressRules,
      egressRules,
      ingressProgram: this.program(ingress, 'ingress'),
      egressProgram: this.program(egress, 'egress'),
      ingressVerdicts: Object.freeze(ingressRules.map((r) => r.verdict)),
      egressVerdicts: Object.freeze(egressRules.map((r) => r.verdict)),
      ingressDenial: ingress.length > 0 ? isolationDenial('ingress', ingress) : undefined,
      egressDenial: egress.length > 0 ? isolationDenial('egress', egress) : undefined,
    }
    known.set(key, lists)
    return lists
  }
}
