/**
 * Which store objects the syncer owns. Every object it writes carries the annotation
 * `flatnet.dev/source: <source>` (default `kubernetes`) in its stored manifest; on a (re)list it
 * deletes only objects with that mark that the API no longer has. Objects written by
 * `flatnet policy apply`, agents or another syncer (another source) carry no such mark (or
 * another value) and are never deleted by it, nor overwritten — with one exception: an unmarked
 * Pod endpoint under the key of a pod the API has is adopted (the node agent writes one on CNI
 * ADD, before the API has the pod's IP; see store-mirror.ts).
 *
 * The mark lives in the object itself, so ownership and content change in one atomic write, and
 * `flatnet policy get -o yaml` shows where an object came from.
 */
export const SOURCE_ANNOTATION = 'flatnet.dev/source'
export const DEFAULT_SOURCE = 'kubernetes'

/** The manifest with the ownership mark (and no other annotation). */
export function markOwned(manifest: Record<string, unknown>, source: string): Record<string, unknown> {
  const metadata = { ...(manifest.metadata as Record<string, unknown>), annotations: { [SOURCE_ANNOTATION]: source } }
  return { ...manifest, metadata }
}

/** The source a stored manifest names, if any. */
export function sourceOf(value: unknown): string | undefined {
  const annotations = (value as { metadata?: { annotations?: Record<string, unknown> } } | undefined)?.metadata?.annotations
  const source = annotations?.[SOURCE_ANNOTATION]
  return typeof source === 'string' ? source : undefined
}
