/**
 * Annotations flatnet writes on stored objects to say who owns which part of them. They live in
 * the object itself, so an owner and the content it owns change in one atomic store write.
 *
 *   flatnet.dev/source       the Kubernetes syncer that mirrors the object (its `--source`,
 *                            default `kubernetes`): labels, ports and existence come from that
 *                            cluster's API (docs/k8s-sync.md)
 *   flatnet.dev/agent-node   on a Pod endpoint: the node whose flatnet agent attached the pod
 *                            (CNI ADD). That agent owns `spec.nodeName` and `status.podIPs`; a
 *                            Pod with the mark and no addresses was detached (CNI DEL)
 */
export const SOURCE_ANNOTATION = 'flatnet.dev/source'
export const AGENT_NODE_ANNOTATION = 'flatnet.dev/agent-node'

/** A string annotation of a stored document, if it has one. */
export function annotationOf(value: unknown, name: string): string | undefined {
  const annotations = (value as { metadata?: { annotations?: Record<string, unknown> } } | null | undefined)?.metadata?.annotations
  const v = annotations !== null && typeof annotations === 'object' ? annotations[name] : undefined
  return typeof v === 'string' ? v : undefined
}
