/**
 * From a Kubernetes API object to the store object flatnet keeps for it. Pure: no I/O.
 *
 *   - only the fields flatnet reads are taken (API-server bookkeeping, status noise, other
 *     annotations are left out, so a pod's condition flapping never rewrites the store);
 *   - the result goes through the same validating loader as `flatnet policy apply`, and is
 *     stored in the same normalised form (`storedManifest`), plus the ownership mark;
 *   - hostNetwork pods (they are the node, not an endpoint) and pods in a terminal phase
 *     (Succeeded/Failed: their IP may already belong to another pod) are not mirrored at all;
 *   - a scheduled pod without an IP yet is mirrored only over a node agent's attachment of it
 *     (`ifAttached`: the agent owns its addresses, the API its labels; see pod-attachment.ts).
 */
import { ValidationError, type ValidationIssue } from '@flatnet/core'
import { loadObjects } from '@flatnet/policy'
import { storedManifest } from '@flatnet/store'
import { markOwned } from './ownership.js'
import type { K8sResource } from './resources.js'

export type Translation =
  /** Mirror this object as `value` under `key`. */
  | { readonly type: 'object'; readonly key: string; readonly value: Record<string, unknown> }
  /**
   * The object exists but is not mirrored (no store object for `key`); except `ifAttached`: a
   * scheduled pod the API shows without an IP, to be written only over a node agent's
   * attachment of it (pod-attachment.ts).
   */
  | { readonly type: 'skip'; readonly key: string; readonly reason: string; readonly ifAttached?: Record<string, unknown> }
  /** flatnet's validator refuses it: reported, and the store's copy (if any) is left as it is. */
  | { readonly type: 'invalid'; readonly key: string; readonly issues: readonly ValidationIssue[] }

type Json = Record<string, unknown>

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v)
const field = (o: unknown, name: string): unknown => (isObject(o) ? o[name] : undefined)

/** `namespace/name` for namespaced resources, `name` otherwise; undefined without a name. */
export function objectKey(resource: K8sResource, object: unknown): string | undefined {
  const meta = field(object, 'metadata')
  const name = field(meta, 'name')
  if (typeof name !== 'string' || name === '') return undefined
  if (!resource.namespaced) return name
  const namespace = field(meta, 'namespace')
  return `${typeof namespace === 'string' && namespace !== '' ? namespace : 'default'}/${name}`
}

export function translate(resource: K8sResource, object: unknown, source: string): Translation {
  const key = objectKey(resource, object) ?? ''
  const meta = field(object, 'metadata')
  const metadata: Json = { name: field(meta, 'name') }
  if (resource.namespaced) metadata.namespace = field(meta, 'namespace')
  if (field(meta, 'labels') !== undefined) metadata.labels = field(meta, 'labels')
  let doc: Json
  switch (resource.kind) {
    case 'Pod': {
      const spec = field(object, 'spec')
      const status = field(object, 'status')
      if (field(spec, 'hostNetwork') === true) return { type: 'skip', key, reason: 'hostNetwork pod (the node itself)' }
      const phase = field(status, 'phase')
      if (phase === 'Succeeded' || phase === 'Failed') return { type: 'skip', key, reason: `terminal phase ${phase}` }
      const podIPs = field(status, 'podIPs')
      const podIP = field(status, 'podIP')
      const ips = Array.isArray(podIPs) && podIPs.length > 0 ? podIPs.map((p) => field(p, 'ip')) : podIP !== undefined && podIP !== '' ? [podIP] : []
      const containers = (group: string): unknown =>
        Array.isArray(field(spec, group))
          ? (field(spec, group) as unknown[]).map((c) => {
              const ports = field(c, 'ports')
              const out: Json = { name: field(c, 'name') }
              if (Array.isArray(ports)) out.ports = ports.map((p) => pick(p, ['name', 'containerPort', 'protocol']))
              return out
            })
          : undefined
      const podSpec: Json = {}
      if (typeof field(spec, 'nodeName') === 'string' && field(spec, 'nodeName') !== '') podSpec.nodeName = field(spec, 'nodeName')
      for (const group of ['containers', 'initContainers']) {
        const list = containers(group)
        if (list !== undefined) podSpec[group] = list
      }
      doc = { apiVersion: resource.apiVersion, kind: resource.kind, metadata, spec: podSpec, status: { podIPs: ips.map((ip) => ({ ip })) } }
      if (ips.length === 0) {
        // Not an endpoint by the API's account yet; but the node's agent may have attached it.
        if (podSpec.nodeName === undefined) return { type: 'skip', key, reason: 'no IP yet (not scheduled)' }
        const t = loadOne(resource, key, doc, source)
        return t.type === 'object' ? { type: 'skip', key, reason: 'no IP yet', ifAttached: t.value } : t
      }
      break
    }
    case 'Namespace':
      doc = { apiVersion: resource.apiVersion, kind: resource.kind, metadata }
      break
    default:
      doc = { apiVersion: resource.apiVersion, kind: resource.kind, metadata, spec: field(object, 'spec') }
  }
  return loadOne(resource, key, doc, source)
}

/** The reduced document through the validating loader, in stored form with the ownership mark. */
function loadOne(resource: K8sResource, key: string, doc: Json, source: string): Translation {
  try {
    const loaded = loadObjects([{ file: `kubernetes:${resource.kind} ${key || '(no name)'}`, text: JSON.stringify(doc) }], { accept: 'any' })
    const one = [...loaded.namespaces, ...loaded.endpoints, ...loaded.policies][0]
    if (!one) return { type: 'invalid', key, issues: [{ file: `kubernetes:${resource.kind} ${key}`, line: 0, column: 0, path: '', message: 'not understood' }] }
    return { type: 'object', key, value: markOwned(storedManifest(one), source) }
  } catch (err) {
    // Lines and columns would point into the reduced document built above, not at anything a
    // person can open: the field path says where.
    if (err instanceof ValidationError) return { type: 'invalid', key, issues: err.issues.map((i) => ({ ...i, line: 0, column: 0 })) }
    throw err
  }
}

function pick(o: unknown, names: readonly string[]): unknown {
  if (!isObject(o)) return o
  const out: Json = {}
  for (const n of names) if (o[n] !== undefined) out[n] = o[n]
  return out
}
