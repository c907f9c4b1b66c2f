/**
 * Policy documents in the store: what `flatnet policy apply|get|delete|diff` do, and how the
 * stored objects become a PolicySnapshot again. Documents are validated by the same loader as
 * the offline tools, before anything is written; a batch is written as one revision or not at all.
 */
import { endpointKey, formatIp, ValidationError, type ValidationIssue } from '@flatnet/core'
import { loadObjects, PolicyCompiler, policyKey, type EndpointObject, type FlatnetObject, type LoadedObjects, type PolicyObject, type PolicySnapshot } from '@flatnet/policy'
import { canonicalJson } from './canonical-json.js'
import type { FlatnetStore, StoredObject, WriteResult } from './object-store.js'
import type { StoreKind } from './keys.js'

/** metadata the API server owns; not stored, so re-applying `kubectl get -o yaml` output is "unchanged". */
const SERVER_METADATA = ['uid', 'resourceVersion', 'generation', 'creationTimestamp', 'managedFields', 'selfLink']

export interface DocumentRef {
  readonly kind: StoreKind
  readonly key: string
  /** `NetworkPolicy shop/frontend-to-api`, for people. */
  readonly display: string
}

export function refOf(o: FlatnetObject): DocumentRef {
  switch (o.kind) {
    case 'NetworkPolicy':
      return { kind: 'NetworkPolicy', key: policyKey(o), display: `NetworkPolicy ${policyKey(o)}` }
    case 'ClusterNetworkPolicy':
      return { kind: 'ClusterNetworkPolicy', key: o.name, display: `ClusterNetworkPolicy ${o.name}` }
    case 'Namespace':
      return { kind: 'Namespace', key: o.name, display: `Namespace ${o.name}` }
    default:
      return { kind: 'Endpoint', key: endpointKey(o), display: `${o.kind} ${endpointKey(o)}` }
  }
}

/** The manifest as stored: the document without server-owned fields and status. */
export function storedManifest(o: FlatnetObject): Record<string, unknown> {
  if (o.kind === 'Pod' || o.kind === 'HostEndpoint') return endpointManifest(o)
  if (o.kind === 'Namespace') {
    return { apiVersion: 'v1', kind: 'Namespace', metadata: { name: o.name, labels: Object.fromEntries(o.labels) } }
  }
  const doc = { ...((o as PolicyObject).manifest as Record<string, unknown>) }
  const metadata = { ...(doc.metadata as Record<string, unknown>) }
  for (const f of SERVER_METADATA) delete metadata[f]
  if (o.kind === 'NetworkPolicy') metadata.namespace = o.namespace
  delete doc.status
  return { ...doc, metadata }
}

/** Endpoints are stored in one normalised form whatever document they came from. */
export function endpointManifest(o: EndpointObject): Record<string, unknown> {
  const metadata = { name: o.name, namespace: o.namespace, labels: Object.fromEntries(o.labels) }
  const ips = o.ips.map(formatIp)
  const ports = o.namedPorts.map((p) => ({ name: p.name, port: p.port, protocol: p.protocol }))
  if (o.kind === 'HostEndpoint') {
    return { apiVersion: 'flatnet.dev/v1alpha1', kind: 'HostEndpoint', metadata, spec: { ...(o.node ? { node: o.node } : {}), ips, ports } }
  }
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata,
    spec: { ...(o.node ? { nodeName: o.node } : {}), containers: [{ name: 'main', ports: ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: p.protocol })) }] },
    status: { podIPs: ips.map((ip) => ({ ip })) },
  }
}

export interface AppliedDocument extends DocumentRef {
  readonly result: WriteResult
}

export interface ApplyOutcome {
  readonly revision: number
  readonly documents: readonly AppliedDocument[]
  readonly dryRun: boolean
}

/**
 * Writes validated objects as one revision. With `dryRun`, computes what would change and
 * writes nothing.
 */
export async function applyObjects(store: FlatnetStore, loaded: LoadedObjects, opts: { dryRun?: boolean; ifRevision?: number } = {}): Promise<ApplyOutcome> {
  const objects: FlatnetObject[] = [...loaded.namespaces, ...loaded.endpoints, ...loaded.policies]
  const refs = objects.map(refOf)
  if (opts.dryRun) {
    const revision = await store.revision()
    const current = await Promise.all(refs.map((r) => store.get(r.kind, r.key)))
    const documents = refs.map((r, i): AppliedDocument => {
      const old = current[i]
      const result: WriteResult = !old ? 'created' : canonicalJson(old.value) === canonicalJson(storedManifest(objects[i] as FlatnetObject)) ? 'unchanged' : 'configured'
      return { ...r, result }
    })
    return { revision, documents, dryRun: true }
  }
  const outcome = await store.write(
    objects.map((o, i) => ({ op: 'put' as const, kind: (refs[i] as DocumentRef).kind, key: (refs[i] as DocumentRef).key, value: storedManifest(o) })),
    opts.ifRevision === undefined ? {} : { ifRevision: opts.ifRevision },
  )
  return { revision: outcome.revision, documents: refs.map((r, i) => ({ ...r, result: outcome.results[i] as WriteResult })), dryRun: false }
}

export async function deleteRefs(store: FlatnetStore, refs: readonly DocumentRef[], opts: { ifRevision?: number } = {}): Promise<ApplyOutcome> {
  const outcome = await store.write(
    refs.map((r) => ({ op: 'delete' as const, kind: r.kind, key: r.key })),
    opts.ifRevision === undefined ? {} : { ifRevision: opts.ifRevision },
  )
  return { revision: outcome.revision, documents: refs.map((r, i) => ({ ...r, result: outcome.results[i] as WriteResult })), dryRun: false }
}

/**
 * Turns stored objects back into validated objects. A stored object that no longer validates
 * (written around flatnet, or by a newer version) is reported, not loaded: one bad object must
 * not stop enforcement of the others.
 */
export function decodeStored(objects: readonly StoredObject[]): { loaded: LoadedObjects; issues: ValidationIssue[] } {
  const policies: LoadedObjects['policies'][number][] = []
  const namespaces: LoadedObjects['namespaces'][number][] = []
  const endpoints: LoadedObjects['endpoints'][number][] = []
  const issues: ValidationIssue[] = []
  for (const o of objects) {
    if (o.kind === 'Node') continue
    try {
      const one = loadObjects([{ file: `store:${o.kind}/${o.key}`, text: JSON.stringify(o.value) }])
      policies.push(...one.policies)
      namespaces.push(...one.namespaces)
      endpoints.push(...one.endpoints)
    } catch (err) {
      if (err instanceof ValidationError) issues.push(...err.issues)
      else throw err
    }
  }
  return { loaded: { policies, namespaces, endpoints }, issues }
}

/** The live store as a PolicySnapshot, for `policy explain|test` without files. */
export async function snapshotFromStore(store: FlatnetStore): Promise<{ revision: number; snapshot: PolicySnapshot; issues: ValidationIssue[] }> {
  const { revision, objects } = await store.snapshot(['Namespace', 'Endpoint', 'NetworkPolicy', 'ClusterNetworkPolicy'])
  const { loaded, issues } = decodeStored(objects)
  return { revision, snapshot: new PolicyCompiler().load(loaded), issues }
}
