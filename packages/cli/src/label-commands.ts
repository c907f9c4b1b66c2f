/**
 * `flatnet namespace label NS k=v k2- [--overwrite]` and `flatnet endpoint label NS/NAME ...`:
 * kubectl's label semantics on objects in the store.
 *
 * A label change is a read-modify-write. It is written with `ifRevision` set to the revision
 * read, so a concurrent write (of any object) makes it fail instead of being overwritten; it is
 * then read and applied again, a few times, before giving up with ERR_REVISION_MISMATCH. Only the
 * labels change: the stored document is written back as it was read otherwise (annotations such
 * as the syncer's `flatnet.dev/source` included).
 *
 * Objects whose labels come from Kubernetes (mirrored by the syncer, or a pod a node agent
 * attached for it) are refused, as calicoctl refuses Kubernetes-backed resources: the syncer
 * would put Kubernetes' labels back at its next write. `--force` writes anyway.
 */
import { Command } from 'commander'
import { AGENT_NODE_ANNOTATION, annotationOf, checkDns1123Label, checkLabelKey, checkLabelValue, FlatnetError, InvalidArgumentError, NAMESPACE_NAME_LABEL, SOURCE_ANNOTATION } from '@flatnet/core'
import { loadObjects } from '@flatnet/policy'
import type { FlatnetStore, StoredObject, StoreKind } from '@flatnet/store'
import { paint, type Out } from './output.js'
import { withConnectionOptions, withStore, type ConnectionOptions, type StoreLib } from './store-connection.js'

export const LABEL_DEFAULTS = Object.freeze({
  /** Read-modify-write rounds before a label change gives up on concurrent writers. */
  attempts: 8,
  /** Base pause between rounds; grows with each round, with jitter so that writers spread out. */
  retryPauseMs: 20,
})

/** What the arguments ask for: labels to set and labels to remove. */
export interface LabelChanges {
  readonly set: ReadonlyMap<string, string>
  readonly remove: ReadonlySet<string>
}

/** A label already has another value and --overwrite was not given (as kubectl). */
export class LabelExistsError extends FlatnetError {
  readonly code = 'ERR_LABEL_EXISTS'
  constructor(
    readonly what: string,
    readonly conflicts: readonly { key: string; value: string }[],
  ) {
    super(`${what}: ${conflicts.map((c) => `'${c.key}' already has a value (${c.value})`).join(', ')}, and --overwrite is false; nothing was written`)
  }
}

/**
 * The object's labels come from Kubernetes: the syncer mirrors it, or a node agent attached it for
 * a Kubernetes pod (the syncer takes that over). A label set in the store would be put back.
 */
export class KubernetesOwnedError extends FlatnetError {
  readonly code = 'ERR_OWNED_BY_KUBERNETES'
  constructor(
    readonly what: string,
    readonly owner: string,
    readonly kubectl: string,
  ) {
    super(
      `${what} is mirrored from Kubernetes (${owner}): its labels come from the Kubernetes API, and a label set here would be overwritten at the next sync; nothing was written. ` +
        `Label it in Kubernetes: ${kubectl} (or pass --force to change the stored copy anyway)`,
    )
  }
}

/** Who the labels of a stored document belong to, when that is Kubernetes; undefined otherwise. */
export function kubernetesOwner(doc: unknown): string | undefined {
  const source = annotationOf(doc, SOURCE_ANNOTATION)
  if (source !== undefined) return `${SOURCE_ANNOTATION}: ${source}`
  const node = annotationOf(doc, AGENT_NODE_ANNOTATION)
  if (node !== undefined) return `a pod the flatnet agent on node ${node} attached, ${AGENT_NODE_ANNOTATION}: ${node}`
  return undefined
}

/** `k=v` sets, `k-` removes; every key and value is checked before anything is read or written. */
export function parseLabelChanges(args: readonly string[]): LabelChanges {
  if (args.length === 0) throw new InvalidArgumentError('name at least one label change: key=value to set, key- to remove')
  const set = new Map<string, string>()
  const remove = new Set<string>()
  for (const arg of args) {
    const eq = arg.indexOf('=')
    const key = eq >= 0 ? arg.slice(0, eq) : arg.endsWith('-') ? arg.slice(0, -1) : undefined
    if (key === undefined) throw new InvalidArgumentError(`"${arg}" is not a label change: write key=value to set a label, key- to remove one`)
    const badKey = checkLabelKey(key)
    if (badKey) throw new InvalidArgumentError(`invalid label key "${key}" in "${arg}": ${badKey}`)
    if (set.has(key) || remove.has(key)) throw new InvalidArgumentError(`label "${key}" is changed twice on the command line`)
    if (eq >= 0) {
      const value = arg.slice(eq + 1)
      const badValue = checkLabelValue(value)
      if (badValue) throw new InvalidArgumentError(`invalid value "${value}" for label "${key}": ${badValue}`)
      set.set(key, value)
    } else remove.add(key)
  }
  return { set, remove }
}

/**
 * The labels after the changes. Changing a value needs `overwrite` (setting the value it already
 * has does not); removing a label that is not there changes nothing and is reported in `absent`.
 */
export function applyLabelChanges(what: string, current: Readonly<Record<string, string>>, changes: LabelChanges, overwrite: boolean): { labels: Record<string, string>; absent: string[] } {
  const conflicts = [...changes.set].filter(([k, v]) => k in current && current[k] !== v).map(([key]) => ({ key, value: current[key] as string }))
  if (conflicts.length > 0 && !overwrite) throw new LabelExistsError(what, conflicts)
  const labels: Record<string, string> = { ...current }
  const absent: string[] = []
  for (const k of changes.remove) {
    if (k in labels) delete labels[k]
    else absent.push(k)
  }
  for (const [k, v] of changes.set) labels[k] = v
  return { labels, absent }
}

const sameLabels = (a: Readonly<Record<string, string>>, b: Readonly<Record<string, string>>): boolean =>
  Object.keys(a).length === Object.keys(b).length && Object.entries(a).every(([k, v]) => b[k] === v)

interface LabelTarget {
  readonly kind: StoreKind
  readonly key: string
  /** `Namespace shop`, `endpoint shop/web`. */
  readonly display: string
  /** The object as kubectl names it: `namespace shop`, `pod web -n shop`. */
  readonly kubectlObject: string
  /**
   * The object's document as it should be labelled (read at the current revision), or
   * NotFoundError. `implicit`: the object exists only by reference and is created by the label.
   */
  load(store: FlatnetStore, lib: StoreLib): Promise<{ doc: Record<string, unknown>; implicit: boolean }>
  /** Refuses changes the object kind does not allow. */
  check?(changes: LabelChanges, current: Readonly<Record<string, string>>): void
}

export interface LabelOutcome {
  readonly result: 'labeled' | 'unchanged'
  /** The store's revision after the write (or the one read, when nothing changed). */
  readonly revision: number
  /** Labels asked to be removed that were not there. */
  readonly absent: readonly string[]
  /** The namespace existed only by reference and was created. */
  readonly created: boolean
  /** Whose labels they are when they come from Kubernetes (written anyway: `force`). */
  readonly owner?: string | undefined
}

function kubectlLabel(target: LabelTarget, changes: LabelChanges, overwrite: boolean): string {
  const args = [...[...changes.set].map(([k, v]) => `${k}=${v}`), ...[...changes.remove].map((k) => `${k}-`)]
  return `kubectl label ${target.kubectlObject} ${args.join(' ')}${overwrite ? ' --overwrite' : ''}`
}

/**
 * Read, change, validate through the same loader as `policy apply`, write if the store did not
 * move; retry if it did. What is written is the document read with other labels, nothing else.
 */
async function labelObject(store: FlatnetStore, lib: StoreLib, target: LabelTarget, changes: LabelChanges, overwrite: boolean, force: boolean): Promise<LabelOutcome> {
  for (let attempt = 1; ; attempt++) {
    // Read the revision first: anything written after it makes the write below fail.
    const revision = await store.revision()
    const { doc, implicit } = await target.load(store, lib)
    const owner = kubernetesOwner(doc)
    if (owner !== undefined && !force) throw new KubernetesOwnedError(target.display, owner, kubectlLabel(target, changes, overwrite))
    const metadata = doc.metadata as { labels?: Record<string, string> }
    const current = metadata.labels ?? {}
    target.check?.(changes, current)
    const { labels, absent } = applyLabelChanges(target.display, current, changes, overwrite)
    if (sameLabels(labels, current)) return { result: 'unchanged', revision, absent, created: false, owner }
    const value = { ...doc, metadata: { ...metadata, labels } }
    const loaded = loadObjects([{ file: target.display, text: JSON.stringify(value) }], { accept: 'any' })
    if (!loaded.namespaces[0] && !loaded.endpoints[0]) throw new InvalidArgumentError(`${target.display}: the stored object is not a Namespace, Pod or HostEndpoint`)
    try {
      const outcome = await store.write([{ op: 'put', kind: target.kind, key: target.key, value }], { ifRevision: revision })
      return { result: 'labeled', revision: outcome.revision, absent, created: implicit, owner }
    } catch (err) {
      if (!(err instanceof lib.RevisionMismatchError) || attempt >= LABEL_DEFAULTS.attempts) throw err
      await new Promise((r) => setTimeout(r, LABEL_DEFAULTS.retryPauseMs * attempt * (0.5 + Math.random())))
    }
  }
}

/** Whether any endpoint or NetworkPolicy lives in the namespace: then it exists without a Namespace object. */
async function referencedNamespace(store: FlatnetStore, ns: string): Promise<boolean> {
  for (const kind of ['Endpoint', 'NetworkPolicy'] as const) {
    if ((await store.list(kind)).some((o: StoredObject) => o.key.startsWith(`${ns}/`))) return true
  }
  return false
}

function namespaceTarget(ns: string): LabelTarget {
  const bad = checkDns1123Label(ns)
  if (bad) throw new InvalidArgumentError(`invalid namespace "${ns}": ${bad}`)
  return {
    kind: 'Namespace',
    key: ns,
    display: `Namespace ${ns}`,
    kubectlObject: `namespace ${ns}`,
    async load(store, lib) {
      const stored = await store.get('Namespace', ns)
      if (stored) return { doc: { ...(stored.value as Record<string, unknown>) }, implicit: false }
      if (!(await referencedNamespace(store, ns))) throw new lib.NotFoundError(`Namespace ${ns} (no Namespace object, and no endpoint or NetworkPolicy in it)`)
      return { doc: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { [NAMESPACE_NAME_LABEL]: ns } } }, implicit: true }
    },
    check(changes) {
      // Kubernetes keeps this label equal to the name; flatnet's loader does the same.
      if (changes.remove.has(NAMESPACE_NAME_LABEL) || (changes.set.has(NAMESPACE_NAME_LABEL) && changes.set.get(NAMESPACE_NAME_LABEL) !== ns)) {
        throw new InvalidArgumentError(`the label ${NAMESPACE_NAME_LABEL} always holds the namespace's name (${ns}); it cannot be changed or removed`)
      }
    },
  }
}

function endpointTarget(ref: string): LabelTarget {
  const m = /^([^/]+)\/([^/]+)$/.exec(ref)
  if (!m) throw new InvalidArgumentError(`"${ref}" is not an endpoint: write NAMESPACE/NAME`)
  const badNs = checkDns1123Label(m[1] as string)
  if (badNs) throw new InvalidArgumentError(`invalid namespace "${m[1]}" in "${ref}": ${badNs}`)
  return {
    kind: 'Endpoint',
    key: ref,
    display: `endpoint ${ref}`,
    kubectlObject: `pod ${m[2] as string} -n ${m[1] as string}`,
    async load(store, lib) {
      const stored = await store.get('Endpoint', ref)
      if (!stored) throw new lib.NotFoundError(`endpoint ${ref}`)
      return { doc: { ...(stored.value as Record<string, unknown>) }, implicit: false }
    },
  }
}

/**
 * `flatnet namespace label` as a function: changes the labels of namespace `ns` (creating it if
 * it exists only by reference). `force`: also when its labels come from Kubernetes.
 */
export function labelNamespace(store: FlatnetStore, lib: StoreLib, ns: string, changes: LabelChanges, overwrite: boolean, force = false): Promise<LabelOutcome> {
  return labelObject(store, lib, namespaceTarget(ns), changes, overwrite, force)
}

/** `flatnet endpoint label` as a function, for `namespace/name`. */
export function labelEndpoint(store: FlatnetStore, lib: StoreLib, ref: string, changes: LabelChanges, overwrite: boolean, force = false): Promise<LabelOutcome> {
  return labelObject(store, lib, endpointTarget(ref), changes, overwrite, force)
}

type LabelOptions = ConnectionOptions & { overwrite?: boolean; force?: boolean }

function labelAction(out: Out, target: (name: string) => LabelTarget) {
  return async (name: string, args: string[], opts: LabelOptions): Promise<void> => {
    const t = target(name)
    const changes = parseLabelChanges(args)
    const r = await withStore(opts, (store, lib) => labelObject(store, lib, t, changes, opts.overwrite === true, opts.force === true))
    for (const k of r.absent) out.error(paint(out, 'dim', `label "${k}" not found`))
    if (r.owner !== undefined && r.result === 'labeled') {
      out.error(`warning: ${t.display} is mirrored from Kubernetes (${r.owner}): the syncer puts Kubernetes' labels back when it next writes it (at the latest at its next resync)`)
    }
    if (r.result === 'unchanged') out.write(`${t.display} not labeled (no change)`)
    else out.write(`${t.display} ${r.created ? 'created and labeled' : 'labeled'} ${paint(out, 'dim', `(revision ${r.revision})`)}`)
  }
}

function labelCommand(parent: Command, what: string, argName: string): Command {
  return withConnectionOptions(
    parent
      .command(`label <${argName}> <changes...>`)
      .description(`set (key=value) or remove (key-) labels of ${what}`)
      .option('--overwrite', 'allow changing the value of a label that is already set')
      .option('--force', 'change the labels even of an object mirrored from Kubernetes (the syncer puts them back; use kubectl label)'),
  )
}

export function namespaceCommand(out: Out): Command {
  const ns = new Command('namespace').alias('ns').description('namespaces in the store')
  labelCommand(ns, 'a namespace (created if it exists only by reference)', 'namespace').action(labelAction(out, namespaceTarget))
  return ns
}

/** Adds `label` to the existing `flatnet endpoint` command; returns it. */
export function addEndpointLabelCommand(endpoint: Command, out: Out): Command {
  labelCommand(endpoint, 'a Pod or HostEndpoint', 'namespace/name').action(labelAction(out, endpointTarget))
  return endpoint
}
