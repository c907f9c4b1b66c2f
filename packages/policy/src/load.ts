/**
 * Loads kubectl-style inputs: many files, each with many YAML or JSON documents, `List`
 * kinds unwrapped. All or nothing: when any document has a problem, every problem is reported
 * in one ValidationError and nothing is returned.
 */
import { endpointKey, formatIp, ValidationError, type ValidationIssue } from '@flatnet/core'
import { FieldReader, typeName } from './field-reader.js'
import type { EndpointObject, FlatnetObject, NamespaceObject, PolicyObject } from './model.js'
import { policyKey } from './model.js'
import { readClusterNetworkPolicy } from './read-cluster-network-policy.js'
import { readHostEndpoint, readNamespace, readPod } from './read-inventory.js'
import { readNetworkPolicy } from './read-network-policy.js'
import { fastParseSource, formatPath, parseSource, type PathSegment, type SourceDocument } from './source.js'

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
    const what = prefix.length > 0 ? 'a list item' : 'a document'
    const hint = Array.isArray(value) && prefix.length === 0 ? '; put several objects in a List or separate them with ---' : ''
    r.fail(prefix, `${what} must be an object with apiVersion and kind, got ${typeName(value)}${hint}`)
    return
  }
  const doc = value as Record<string, unknown>
  const apiVersion = doc.apiVersion
  const kind = doc.kind
  if (kind == null || kind === '') return void r.fail([...prefix, 'kind'], 'required field is missing')
  if (typeof kind !== 'string') return void r.fail([...prefix, 'kind'], `must be a string, got ${typeName(kind)}`)
  if (apiVersion == null || apiVersion === '') return void r.fail([...prefix, 'apiVersion'], 'required field is missing')
  if (typeof apiVersion !== 'string') return void r.fail([...prefix, 'apiVersion'], `must be a string, got ${typeName(apiVersion)}`)
  if (kind === 'List' || (kind.endsWith('List') && Array.isArray(doc.items))) {
    r.object(doc, prefix, ['apiVersion', 'kind', 'metadata', 'items'])
    const items = r.array(doc.items, [...prefix, 'items'])
    items?.forEach((item, i) => readObject(r, item, [...prefix, 'items', i], opts, out))
    return
  }
  const known = KINDS.find((k) => k.kind === kind)
  if (!known) {
    const retired = Object.hasOwn(RETIRED_KINDS, kind) ? RETIRED_KINDS[kind] : undefined
    // Kinds are case-sensitive to the API server; a case slip deserves a pointer, not a list.
    const nearly = KINDS.find((k) => k.kind.toLowerCase() === kind.toLowerCase())
    const supported = KINDS.map((k) => k.kind).join(', ')
    const message = nearly ? `unsupported kind "${kind}"; did you mean "${nearly.kind}"?` : `unsupported kind "${kind}"; flatnet reads ${supported}`
    return void r.fail([...prefix, 'kind'], retired ?? message)
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
  // `status` is written by the cluster, so `kubectl get -o yaml` output has it; it is ignored.
  const allowedTop = ['apiVersion', 'kind', 'metadata', 'spec', ...(kind === 'HostEndpoint' ? [] : ['status'])]
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
  const itemPrefix = formatPath(prefix)
  for (const issue of scoped.issues) {
    r.issues.push(itemPrefix ? { ...issue, path: issue.path ? `${itemPrefix}.${issue.path}` : itemPrefix } : issue)
  }
  if (object && scoped.issues.length === 0) {
    const pos = r.doc.locate(prefix)
    out.push({ object: { ...object, origin: { ...pos, documentIndex: r.doc.index } }, doc: r.doc, path: prefix })
  }
}

/** Where the i-th IP of a loaded endpoint was written; the readers keep the written order. */
function ipFieldPath(kind: 'Pod' | 'HostEndpoint', doc: SourceDocument, at: readonly PathSegment[], i: number): PathSegment[] {
  if (kind === 'HostEndpoint') return ['spec', 'ips', i]
  let value: unknown = doc.value
  for (const seg of at) value = (value as Record<string | number, unknown>)[seg]
  const status = (value as { status?: { podIPs?: unknown } }).status
  return status?.podIPs != null ? ['status', 'podIPs', i, 'ip'] : ['status', 'podIP']
}

function objectIdentity(o: FlatnetObject): string {
  if (o.kind === 'NetworkPolicy' || o.kind === 'ClusterNetworkPolicy') return `${o.kind} ${policyKey(o)}`
  if (o.kind === 'Namespace') return `Namespace ${o.name}`
  return `endpoint ${endpointKey(o)}`
}

export function loadObjects(sources: readonly SourceText[], options: LoadOptions = {}): LoadedObjects {
  const opts: Required<LoadOptions> = { defaultNamespace: options.defaultNamespace ?? 'default', accept: options.accept ?? 'any' }
  // Valid input, the common case, goes through the fast parser; any problem at all and the
  // whole load runs again through the full parser, so every issue carries its position.
  const fast: SourceDocument[] = []
  for (const source of sources) {
    const docs = fastParseSource(source.file, source.text)
    if (!docs) return loadFrom(sources.map((s) => parseSource(s.file, s.text)), opts)
    fast.push(...docs)
  }
  try {
    return loadFrom([{ documents: fast, issues: [] }], opts)
  } catch (err) {
    if (err instanceof ValidationError) return loadFrom(sources.map((s) => parseSource(s.file, s.text)), opts)
    throw err
  }
}

function loadFrom(parsedSources: readonly { documents: readonly SourceDocument[]; issues: readonly ValidationIssue[] }[], opts: Required<LoadOptions>): LoadedObjects {
  const issues: ValidationIssue[] = []
  const found: { object: FlatnetObject; doc: SourceDocument; path: readonly PathSegment[] }[] = []
  for (const parsed of parsedSources) {
    issues.push(...parsed.issues)
    for (const doc of parsed.documents) readObject(new FieldReader(doc, issues), doc.value, [], opts, found)
  }
  // The same object twice, or two endpoints claiming one IP, make identity ambiguous.
  const seen = new Map<string, FlatnetObject>()
  const ipOwner = new Map<string, string>()
  for (const { object, doc, path } of found) {
    const id = objectIdentity(object)
    const prior = seen.get(id)
    if (prior) {
      const namePath = [...path, 'metadata', 'name']
      const where = prior.origin ? `${prior.origin.file}:${prior.origin.line}` : 'another document'
      issues.push({ ...doc.locate(namePath), path: formatPath(namePath), message: `${id} is defined twice (also at ${where})` })
      continue
    }
    seen.set(id, object)
    if (object.kind === 'Pod' || object.kind === 'HostEndpoint') {
      object.ips.forEach((ip, i) => {
        const text = formatIp(ip)
        const owner = ipOwner.get(text)
        if (owner === undefined) return void ipOwner.set(text, endpointKey(object))
        const ipPath = [...path, ...ipFieldPath(object.kind, doc, path, i)]
        issues.push({ ...doc.locate(ipPath), path: formatPath(ipPath), message: `IP ${text} of ${object.kind} ${endpointKey(object)} is also the IP of ${owner}` })
      })
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
