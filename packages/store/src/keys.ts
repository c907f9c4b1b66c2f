/**
 * The Redis key layout of one flatnet cluster. Every key carries the same hash tag
 * (`{<cluster>}`), so all of them live in one slot: multi-key Lua scripts and MULTI work the
 * same on standalone Redis, Sentinel and Redis Cluster.
 *
 *   flatnet:{c}:rev              STRING  global revision, bumped once per write transaction
 *   flatnet:{c}:feed             STREAM  one entry per changed object, id <rev>-<seq>,
 *                                        fields kind, key, op (put|delete), value, created
 *   flatnet:{c}:obj:<Kind>       HASH    key -> "<modRevision>\n<createRevision>\n<json>"
 *   flatnet:{c}:status           HASH    node -> JSON of the policy revision it applied (no revision bump)
 *   flatnet:{c}:ipam:...                 address management (ipam.ts)
 *   flatnet:{c}:node:...                 admission: tokens, revoked node ids (node-registry.ts)
 */
export const STORE_KINDS = ['Namespace', 'Endpoint', 'NetworkPolicy', 'ClusterNetworkPolicy', 'Node'] as const
export type StoreKind = (typeof STORE_KINDS)[number]

export const DEFAULT_CLUSTER = 'default'

export interface StoreKeys {
  readonly prefix: string
  readonly revision: string
  readonly feed: string
  readonly status: string
  objects(kind: StoreKind): string
}

export function storeKeys(cluster: string): StoreKeys {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(cluster)) {
    throw new Error(`invalid cluster name "${cluster}": use lower case letters, digits and '-'`)
  }
  const prefix = `flatnet:{${cluster}}:`
  return {
    prefix,
    revision: `${prefix}rev`,
    feed: `${prefix}feed`,
    status: `${prefix}status`,
    objects: (kind) => `${prefix}obj:${kind}`,
  }
}
