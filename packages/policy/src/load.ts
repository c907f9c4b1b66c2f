/**
 * Loads kubectl-style inputs: many files, each with many YAML or JSON documents, `List`
 * kinds unwrapped. All or nothing: when any document has a problem, every problem is reported
 * in one ValidationError and nothing is returned.
 */
import { endpointKey, formatIp, ValidationError, type ValidationIssue } from '@flatnet/core'
import { FieldReader } from './field-reader.js'
import type { EndpointObject, FlatnetObject, NamespaceObject, PolicyObject } from './model.js'
import { policyKey } from './model.js'
import { readClusterNetworkPolicy } from './read-cluster-network-policy.js'
import { readHostEndpoint, readNamespace, readPod } from './read-inventory.js'
import { readNetworkPolicy } from './read-network-policy.js'
import { parseSource, type PathSegment, type SourceDocument } from './source.js'

export interface SourceText {
  readonly file: string
  readonly text: string
}

/** The kinds flatnet reads, by `apiVersion` and `kind`. */
export const KINDS = [
  { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', role: 'policy' },
  { apiVersion: 'policy.networking.k8s.io/v1alpha2', kind: 'ClusterNetworkPolicy', role: 'policy' },
  { apiVersion: 'v1', kind: 'Namespace', role: 'inventory' },
  { apiVersion: 'v1', kind: 'Pod', role: 'inventory' },
  { apiVersion: 'flatnet.dev/v1alpha1', kind: 'HostEndpoint', role: 'inventory' },
] as const

export interface LoadOptions {
  /** Namespace for namespaced objects that name none (kubectl's current namespace). */
  readonly defaultNamespace?: string
  /** Which kinds these inputs may hold. */
  readonly accept?: 'policy' | 'inventory' | 'any'
}

export interface LoadedObjects {
  readonly policies: readonly PolicyObject[]
  readonly namespaces: readonly NamespaceObject[]
  readonly endpoints: readonly EndpointObject[]
}

const RETIRED_KINDS: Record<string, string> = {
  AdminNetworkPolicy: 'AdminNetworkPolicy (v1alpha1) was replaced by ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) with tier: Admin; see docs/kinds.md',
  BaselineAdminNetworkPolicy:
    'BaselineAdminNetworkPolicy (v1alpha1) was replaced by ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) with tier: Baseline; see docs/kinds.md',
}

function readObject(
  r: FieldReader,
  value: unknown,
  prefix: readonly PathSegment[],
  opts: Required<LoadOptions>,
  out: { object: FlatnetObject; doc: SourceDocument; path: readonly PathSegment[] }[],
): void {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    r.fail(prefix, 'a document must be an object with apiVersion and kind')
    return
  }
  const doc = value as Record<string, unknown>
  const apiVersion = doc.apiVersion
  const kind = doc.kind
  if (typeof kind !== 'string' || kind === '') return void r.fail([...prefix, 'kind'], 'required field is missing')
  if (typeof apiVersion !== 'string' || apiVersion === '') return void r.fail([...prefix, 'apiVersion'], 'required field is missing')
  if (kind === 'List' || (kind.endsWith('List') && Array.isArray(doc.items))) {
    r.object(doc, prefix, ['apiVersion', 'kind', 'metadata', 'items'])
    const items = r.array(doc.items, [...prefix, 'items'])
    items?.forEach((item, i) => readObject(r, item, [...prefix, 'items', i], opts, out))
    return
  }
  const known = KINDS.find((k) => k.kind === kind)
  if (!known) {
    const retired = RETIRED_KINDS[kind]
    const supported = KINDS.map((k) => k.kind).join(', ')
    return void r.fail([...prefix, 'kind'], retired ?? `unsupported kind "${kind}"; flatnet reads ${supported}`)
  }
  if (known.apiVersion !== apiVersion) {
    return void r.fail([...prefix, 'apiVersion'], `${kind} must have apiVersion "${known.apiVersion}", got "${String(apiVersion)}"`)
  }
  if (opts.accept !== 'any' && known.role !== opts.accept) {
    const where = opts.accept === 'policy' ? 'policy files (-f)' : 'inventory files (-i)'
    return void r.fail([...prefix, 'kind'], `${kind} does not belong in ${where}`)
  }
  // A reader per document position: errors inside a List item carry the item's path prefix.
  const scoped = new FieldReader({ ...r.doc, locate: (p, at) => r.doc.locate([...prefix, ...p], at) }, [])
  const allowedTop = ['apiVersion', 'kind', 'metadata', 'spec', ...(kind === 'Pod' || kind === 'Namespace' || kind === 'NetworkPolicy' ? ['status'] : [])]
  scoped.object(doc, [], allowedTop)
  let object: FlatnetObject | undefined
  switch (kind) {
    case 'NetworkPolicy':
      object = readNetworkPolicy(scoped, doc, opts.defaultNamespace)
      break
    case 'ClusterNetworkPolicy':
      object = readClusterNetworkPolicy(scoped, doc)
      break
    case 'Namespace':
      object = readNamespace(scoped, doc)
      break
    case 'Pod':
      object = readPod(scoped, doc, opts.defaultNamespace)
      break
    case 'HostEndpoint':
      object = readHostEndpoint(scoped, doc, opts.defaultNamespace)
      break
  }
  // Paths in issues must be relative to the document, so re-prefix them.
  for (const issue of scoped.issues) {
    const itemPrefix = prefix.length > 0 ? prefix.map((s) => (typeof s === 'number' ? `[${s}]` : s)).join('.').replace(/\.\[/g, '[') : ''
    r.issues.push(itemPrefix ? { ...issue, path: issue.path ? `${itemPrefix}.${issue.path}` : itemPrefix } : issue)
  }
  if (object && scoped.issues.length === 0) {
    const pos = r.doc.locate(prefix)
    out.push({ object: { ...object, origin: { ...pos, documentIndex: r.doc.index } }, doc: r.doc, path: prefix })
  }
}

function objectIdentity(o: FlatnetObject): string {
  if (o.kind === 'NetworkPolicy' || o.kind === 'ClusterNetworkPolicy') return `${o.kind} ${policyKey(o)}`
  if (o.kind === 'Namespace') return `Namespace ${o.name}`
  return `endpoint ${endpointKey(o)}`
}

export function loadObjects(sources: readonly SourceText[], options: LoadOptions = {}): LoadedObjects {
  const opts: Required<LoadOptions> = { defaultNamespace: options.defaultNamespace ?? 'default', accept: options.accept ?? 'any' }
  const issues: ValidationIssue[] = []
  const found: { object: FlatnetObject; doc: SourceDocument; path: readonly PathSegment[] }[] = []
  for (const source of sources) {
    const parsed = parseSource(source.file, source.text)
    issues.push(...parsed.issues)
    for (const doc of parsed.documents) readObject(new FieldReader(doc, issues), doc.value, [], opts, found)
  }
  // The same object twice, or two endpoints claiming one IP, make identity ambiguous.
  const seen = new Map<string, FlatnetObject>()
  const ipOwner = new Map<string, string>()
  for (const { object, doc, path } of found) {
    const id = objectIdentity(object)
    const prior = seen.get(id)
    const pos = doc.locate(path)
    if (prior) {
      issues.push({ ...pos, path: 'metadata.name', message: `${id} is defined twice (also at ${prior.origin?.file}:${prior.origin?.line})` })
      continue
    }
    seen.set(id, object)
    if (object.kind === 'Pod' || object.kind === 'HostEndpoint') {
      for (const ip of object.ips) {
        const text = formatIp(ip)
        const owner = ipOwner.get(text)
        if (owner) issues.push({ ...pos, path: '', message: `IP ${text} of ${endpointKey(object)} is also the IP of ${owner}` })
        else ipOwner.set(text, endpointKey(object))
      }
    }
  }
  if (issues.length > 0) throw new ValidationError(issues)
  const objects = found.map((f) => f.object)
  return {
    policies: objects.filter((o): o is PolicyObject => o.kind === 'NetworkPolicy' || o.kind === 'ClusterNetworkPolicy'),
    namespaces: objects.filter((o): o is NamespaceObject => o.kind === 'Namespace'),
    endpoints: objects.filter((o): o is EndpointObject => o.kind === 'Pod' || o.kind === 'HostEndpoint'),
  }
}
