/**
 * Which endpoint a container becomes: `namespace/name`, and who owns its labels. Pure.
 *
 *   CNI_ARGS has K8S_POD_NAMESPACE and K8S_POD_NAME   (kubelet, CRI-O, containerd)
 *       -> that pod; labels and ports come from the Kubernetes syncer's Pod in the store
 *   CNI_ARGS has K8S_POD_NAME only                     (podman: the container's name)
 *       -> the network config's namespace (default "default"), that name; the config's labels
 *   neither
 *       -> the config's namespace, `c-<first 12 characters of the container ID>`; the config's labels
 *
 * Names that are not Kubernetes object names (podman allows `My_App`) are made into one: lower
 * case, other characters replaced by `-`, and a short hash of the original appended, so that
 * two names that differ only there do not meet.
 *
 * Pure, and free of node:crypto on purpose: the plugin starts once per call, and the suffix
 * only has to tell names apart, not resist anyone.
 */
import { checkDns1123Label, checkDns1123Subdomain } from '@flatnet/core'
import { CniEnvironmentError } from './cni-errors.js'

export interface EndpointIdentity {
  readonly namespace: string
  readonly name: string
  /** `kubernetes`: labels and ports are the syncer's; `config`: labels from the network config. */
  readonly labelsFrom: 'kubernetes' | 'config'
}

/** FNV-1a over the UTF-16 code units: 32 bits, as 8 hex digits. */
function fnv1a(text: string): string {
  let h = 0x811c9dc5
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return (h >>> 0).toString(16).padStart(8, '0')
}

/** A Kubernetes object name for `raw`, unchanged when it already is one. */
export function objectName(raw: string): string {
  if (checkDns1123Subdomain(raw) === undefined) return raw
  const suffix = fnv1a(raw).slice(0, 6)
  const labels = raw
    .toLowerCase()
    .replace(/[^a-z0-9.-]/g, '-')
    .split('.')
    .map((label) => label.replace(/^-+|-+$/g, '').slice(0, 63).replace(/-+$/, ''))
    .filter((label) => label !== '')
  // The suffix joins the last label, which must stay within 63 characters, the name within 253.
  while (labels.join('.').length > 253 - 7) labels.shift()
  const last = (labels.pop() ?? 'c').slice(0, 63 - 7).replace(/-+$/, '')
  return [...labels, `${last}-${suffix}`].join('.')
}

export function endpointIdentity(args: ReadonlyMap<string, string>, containerId: string, namespace: string): EndpointIdentity {
  const podNamespace = args.get('K8S_POD_NAMESPACE')
  const podName = args.get('K8S_POD_NAME')
  if (podNamespace !== undefined && podNamespace !== '') {
    const bad = checkDns1123Label(podNamespace)
    if (bad) throw new CniEnvironmentError(`invalid CNI_ARGS: K8S_POD_NAMESPACE ${JSON.stringify(podNamespace)} ${bad}`)
    if (podName === undefined || podName === '') throw new CniEnvironmentError('invalid CNI_ARGS: K8S_POD_NAMESPACE is set but K8S_POD_NAME is not')
    const badName = checkDns1123Subdomain(podName)
    if (badName) throw new CniEnvironmentError(`invalid CNI_ARGS: K8S_POD_NAME ${JSON.stringify(podName)} ${badName}`)
    return { namespace: podNamespace, name: podName, labelsFrom: 'kubernetes' }
  }
  if (podName !== undefined && podName !== '') return { namespace, name: objectName(podName), labelsFrom: 'config' }
  return { namespace, name: `c-${containerId.toLowerCase().replace(/[^a-z0-9]/g, '0').slice(0, 12)}`, labelsFrom: 'config' }
}
