/**
 * Names of everything a lab makes. Network namespaces: `fn-lab-<id>-ul` (the underlay),
 * `fn-lab-<id>-<host>` per host and `fn-lab-<id>-<namespace>.<name>` per workload. Host,
 * namespace and workload names are DNS labels (no dots), so the dot keeps workload names apart
 * from host names and from each other (`x-a/b` and `x/a-b` differ), and `ul` is reserved.
 */
import { InvalidArgumentError } from '@flatnet/core'
import { workloadInterfaceName } from '@flatnet/agent/workload-link'

export const LAB_NETNS_PREFIX = 'fn-lab-'
export const DEFAULT_LAB_ID = '1'
const LAB_ID = /^[a-z0-9]{1,8}$/

/** Interfaces inside the lab's namespaces; names need only be unique within one namespace. */
export const UNDERLAY_BRIDGE = 'br0'
export const HOST_UNDERLAY_IF = 'ul0'

export function checkLabId(id: string): string {
  if (!LAB_ID.test(id)) throw new InvalidArgumentError(`lab id "${id}": 1 to 8 lowercase letters or digits`)
  return id
}

/** Every network namespace of lab `id` starts with this. */
export function labNetnsPrefix(id: string): string {
  return `${LAB_NETNS_PREFIX}${id}-`
}

export function underlayNetns(id: string): string {
  return `${labNetnsPrefix(id)}ul`
}

export function hostNetns(id: string, host: string): string {
  return `${labNetnsPrefix(id)}${host}`
}

export function workloadNetns(id: string, namespace: string, name: string): string {
  return `${labNetnsPrefix(id)}${namespace}.${name}`
}

/** The underlay bridge's port for host number `index` (inside the underlay namespace). */
export function underlayPortName(index: number): string {
  return `h${index}`
}

/** The host-side veth of a workload: `fnl` and a hash of namespace/name, 15 characters. */
export function workloadHostIfname(namespace: string, name: string): string {
  return workloadInterfaceName(`${namespace}/${name}`, 'fnl')
}
