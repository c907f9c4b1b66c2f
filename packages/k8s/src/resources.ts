/**
 * The Kubernetes resources the syncer mirrors, each into one kind of store object. Paths are the
 * cluster-wide collections (`/api/v1/pods` lists the pods of every namespace), so one list and
 * one watch per resource cover the cluster.
 */
import type { StoreKind } from '@flatnet/store'

export type ResourceName = 'namespaces' | 'pods' | 'networkpolicies' | 'clusternetworkpolicies'

export interface K8sResource {
  readonly name: ResourceName
  /** apiVersion and kind of one object (list items from the API server carry neither). */
  readonly apiVersion: string
  readonly kind: 'Namespace' | 'Pod' | 'NetworkPolicy' | 'ClusterNetworkPolicy'
  readonly path: string
  readonly namespaced: boolean
  readonly storeKind: StoreKind
  /**
   * A resource served by a CRD that may not be installed: a 404 on list then means "no objects",
   * and the list is tried again later.
   */
  readonly optional: boolean
}

export const K8S_RESOURCES: readonly K8sResource[] = Object.freeze([
  { name: 'namespaces', apiVersion: 'v1', kind: 'Namespace', path: '/api/v1/namespaces', namespaced: false, storeKind: 'Namespace', optional: false },
  { name: 'pods', apiVersion: 'v1', kind: 'Pod', path: '/api/v1/pods', namespaced: true, storeKind: 'Endpoint', optional: false },
  {
    name: 'networkpolicies',
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    path: '/apis/networking.k8s.io/v1/networkpolicies',
    namespaced: true,
    storeKind: 'NetworkPolicy',
    optional: false,
  },
  {
    name: 'clusternetworkpolicies',
    apiVersion: 'policy.networking.k8s.io/v1alpha2',
    kind: 'ClusterNetworkPolicy',
    path: '/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies',
    namespaced: false,
    storeKind: 'ClusterNetworkPolicy',
    optional: true,
  },
] satisfies K8sResource[])

export function resourceByName(name: ResourceName): K8sResource {
  return K8S_RESOURCES.find((r) => r.name === name) as K8sResource
}
