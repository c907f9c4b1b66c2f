/**
 * Who owns which part of a Pod endpoint, and how the syncer writes a Pod without taking what a
 * node agent owns. Pure: no I/O.
 *
 * On a node with a flatnet agent, the agent's attachment is the truth for a pod's node and
 * addresses. On CNI ADD it writes `spec.nodeName`, `status.podIPs` and
 * `flatnet.dev/agent-node: <node>` into the Pod endpoint; on CNI DEL it takes the addresses out
 * and keeps the mark (the Pod stays, detached, for the pod's next sandbox). The API server's
 * podIPs lag behind both: the kubelet reports an address only after CNI ADD, and goes on
 * reporting the address of a sandbox that is already torn down. Written over the agent's, they
 * would
 *   - drop the addresses of an attached pod (policy would stop matching its traffic), or
 *   - put back the address of a detached sandbox, which the node may already have given to
 *     another pod: two endpoints would claim one IP, and policy for the old pod's labels would
 *     apply to the new pod's traffic.
 * The Kubernetes API is the truth for labels, ports and whether the pod exists.
 */
import { AGENT_NODE_ANNOTATION, annotationOf, SOURCE_ANNOTATION } from '@flatnet/core'

type Json = Record<string, unknown>

export interface PodAttachment {
  /** The node whose agent attached the pod. */
  readonly node: string
  /** Its addresses; none when the agent detached the pod (it then stores no `podIPs`). */
  readonly podIPs: readonly { readonly ip: string }[]
}

const isObject = (v: unknown): v is Json => v !== null && typeof v === 'object' && !Array.isArray(v)

/** The agent's attachment recorded in a stored Pod endpoint, if it has one. */
export function podAttachment(stored: unknown): PodAttachment | undefined {
  if (!isObject(stored) || stored.kind !== 'Pod') return undefined
  const node = annotationOf(stored, AGENT_NODE_ANNOTATION)
  if (node === undefined || node === '') return undefined
  const podIPs = isObject(stored.status) && Array.isArray(stored.status.podIPs) ? stored.status.podIPs : []
  return { node, podIPs: podIPs.filter((p): p is { ip: string } => isObject(p) && typeof p.ip === 'string').map((p) => ({ ip: p.ip })) }
}

/**
 * What the syncer writes for a pod (`want`: the API's Pod, translated and marked), given what the
 * store holds under its key:
 *
 *   the store holds an attachment by the agent on the pod's node -> the API's labels, ports and
 *       ownership mark, with the agent's node, addresses (none if detached) and mark;
 *   otherwise -> `want` as it is; but a pod the API shows without an IP (`onlyOverAttachment`)
 *       -> undefined: not mirrored.
 *
 * An attachment on another node than the API's pod is from an earlier pod of the same name (a
 * StatefulSet pod recreated elsewhere) and is not kept.
 */
export function podOverAttachment(want: Json, stored: unknown, onlyOverAttachment: boolean): Json | undefined {
  const attachment = podAttachment(stored)
  const spec = isObject(want.spec) ? want.spec : {}
  if (attachment === undefined || spec.nodeName !== attachment.node) return onlyOverAttachment ? undefined : want
  const metadata = isObject(want.metadata) ? want.metadata : {}
  const annotations = isObject(metadata.annotations) ? metadata.annotations : {}
  return {
    ...want,
    metadata: { ...metadata, annotations: { ...annotations, [AGENT_NODE_ANNOTATION]: attachment.node } },
    spec: { ...spec, nodeName: attachment.node },
    // Detached: no podIPs at all, as the agent leaves it.
    status: attachment.podIPs.length > 0 ? { podIPs: attachment.podIPs.map((p) => ({ ip: p.ip })) } : {},
  }
}

/**
 * A Pod an agent attached and detached (no addresses) before any syncer took it over (no
 * `flatnet.dev/source`): when the API has no such pod, nobody else will ever delete it.
 */
export function detachedLeftover(stored: unknown): boolean {
  const attachment = podAttachment(stored)
  return attachment !== undefined && attachment.podIPs.length === 0 && annotationOf(stored, SOURCE_ANNOTATION) === undefined
}
