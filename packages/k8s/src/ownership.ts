/**
 * Which store objects the syncer owns. Every object it writes carries the annotation
 * `flatnet.dev/source: <source>` (default `kubernetes`) in its stored manifest; on a (re)list it
 * deletes only objects with that mark that the API no longer has. Objects written by
 * `flatnet policy apply`, agents or another syncer (another source) carry no such mark (or
 * another value) and are never deleted by it, nor overwritten — with two exceptions for unmarked
 * Pod endpoints, which node agents write: one under the key of a pod the API has is adopted (the
 * agent writes it on CNI ADD, before the API has the pod's IP), and one an agent attached and
 * detached again under the key of a pod the API does not have is deleted (store-mirror.ts).
 *
 * The mark lives in the object itself, so ownership and content change in one atomic write, and
 * `flatnet policy get -o yaml` shows where an object came from.
 *
 * A Pod has a second owner on a node with a flatnet agent: the agent's attachment
 * (`flatnet.dev/agent-node`) owns its node and addresses; see pod-attachment.ts.
 */
import { annotationOf, SOURCE_ANNOTATION } from '@flatnet/core'

export { SOURCE_ANNOTATION }
export const DEFAULT_SOURCE = 'kubernetes'

/** The manifest with the ownership mark (and no other annotation). */
export function markOwned(manifest: Record<string, unknown>, source: string): Record<string, unknown> {
  const metadata = { ...(manifest.metadata as Record<string, unknown>), annotations: { [SOURCE_ANNOTATION]: source } }
  return { ...manifest, metadata }
}

/** The source a stored manifest names, if any. */
export function sourceOf(value: unknown): string | undefined {
  return annotationOf(value, SOURCE_ANNOTATION)
}
