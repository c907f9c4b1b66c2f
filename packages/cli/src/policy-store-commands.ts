/** `flatnet policy apply|get|list|delete|diff`: policies in the live store, kubectl-style. */
import type { Command } from 'commander'
import { collect, outputOption } from './cli-options.js'
import { stringify } from 'yaml'
import { FlatnetError, InvalidArgumentError } from '@flatnet/core'
import { loadObjects } from '@flatnet/policy'
import type { DocumentRef, FlatnetStore, StoredObject, StoreKind } from '@flatnet/store'
import { loadStoreLib, type StoreLib } from './store-connection.js'
import { readSources } from './inputs.js'
import { formatData, paint, table, type Out, type OutputFormat } from './output.js'
import { withConnectionOptions, withStore, type ConnectionOptions } from './store-connection.js'
import { unifiedDiff } from './text-diff.js'


const KIND_ALIASES: Record<string, StoreKind> = {
  networkpolicy: 'NetworkPolicy',
  networkpolicies: 'NetworkPolicy',
  netpol: 'NetworkPolicy',
  clusternetworkpolicy: 'ClusterNetworkPolicy',
  clusternetworkpolicies: 'ClusterNetworkPolicy',
  cnp: 'ClusterNetworkPolicy',
}

function parseKind(text: string): StoreKind {
  const kind = KIND_ALIASES[text.toLowerCase()]
  if (!kind) throw new InvalidArgumentError(`--kind must be NetworkPolicy or ClusterNetworkPolicy, got "${text}"`)
  return kind
}

interface FileOptions extends ConnectionOptions {
  readonly filename: string[]
  readonly namespace: string
}

function loadFiles(opts: FileOptions): ReturnType<typeof loadObjects> {
  return loadObjects(readSources(opts.filename), { defaultNamespace: opts.namespace, accept: 'any' })
}

function resultWord(out: Out, result: string): string {
  const style = result === 'created' ? 'green' : result === 'configured' || result === 'deleted' ? 'yellow' : result === 'notfound' ? 'red' : 'dim'
  return paint(out, style, result === 'notfound' ? 'not found' : result)
}

async function manifestDiffs(store: FlatnetStore, lib: StoreLib, loaded: ReturnType<typeof loadObjects>): Promise<{ ref: DocumentRef; diff: string; isNew: boolean }[]> {
  const objects = [...loaded.namespaces, ...loaded.endpoints, ...loaded.policies]
  return Promise.all(
    objects.map(async (o) => {
      const ref = lib.refOf(o)
      const current = await store.get(ref.kind, ref.key)
      // Both sides in canonical key order, so that only real changes show.
      const oldText = current ? stringify(JSON.parse(lib.canonicalJson(current.value))) : ''
      const diff = unifiedDiff(oldText, stringify(JSON.parse(lib.canonicalJson(lib.storedManifest(o)))), { old: current ? `${ref.display} (revision ${current.revision})` : '/dev/null', new: `${ref.display} (new)` })
      return { ref, diff, isNew: !current }
    }),
  )
}

function colourDiff(out: Out, diff: string): string {
  return diff
    .split('\n')
    .map((l) => (l.startsWith('+') ? paint(out, 'green', l) : l.startsWith('-') ? paint(out, 'red', l) : l.startsWith('@@') ? paint(out, 'dim', l) : l))
    .join('\n')
}

function summarise(o: StoredObject): string[] {
  const m = o.value as { metadata?: { namespace?: string; name?: string }; spec?: Record<string, unknown> }
  const spec = m.spec ?? {}
  if (o.kind === 'ClusterNetworkPolicy') {
    const subject = Object.keys((spec.subject as object | undefined) ?? {})[0] ?? ''
    return [m.metadata?.name ?? o.key, String(spec.tier), String(spec.priority), subject, String((spec.ingress as unknown[] | undefined)?.length ?? 0), String((spec.egress as unknown[] | undefined)?.length ?? 0), String(o.revision)]
  }
  const sel = spec.podSelector as { matchLabels?: Record<string, string>; matchExpressions?: unknown[] } | undefined
  const selector = sel && (Object.keys(sel.matchLabels ?? {}).length > 0 || (sel.matchExpressions?.length ?? 0) > 0)
    ? Object.entries(sel.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).concat(sel.matchExpressions?.length ? [`+${sel.matchExpressions.length} expr`] : []).join(',')
    : '<all>'
  const types = (spec.policyTypes as string[] | undefined)?.join(',') ?? (spec.egress ? 'Ingress,Egress' : 'Ingress')
  return [m.metadata?.namespace ?? '', m.metadata?.name ?? o.key, selector, types, String(o.revision)]
}

export function addPolicyStoreCommands(policy: Command, out: Out): void {
  withConnectionOptions(
    policy
      .command('apply')
      .description('validate every document, then write them all as one revision (or nothing)')
      .requiredOption('-f, --filename <path>', 'file or directory (repeatable; - for stdin)', collect)
      .option('-n, --namespace <ns>', 'namespace for objects that name none', 'default')
      .option('--dry-run', 'show what would change, with a diff, and write nothing')
      .option('--if-revision <rev>', 'write only if the store is still at this revision'),
  ).action(async (opts: FileOptions & { dryRun?: boolean; ifRevision?: string }) => {
    const loaded = loadFiles(opts)
    const ifRevision = opts.ifRevision === undefined ? undefined : Number(opts.ifRevision)
    if (ifRevision !== undefined && !Number.isInteger(ifRevision)) throw new InvalidArgumentError(`--if-revision must be an integer, got "${opts.ifRevision}"`)
    await withStore(opts, async (store, lib) => {
      if (opts.dryRun) {
        for (const d of await manifestDiffs(store, lib, loaded)) {
          out.write(`${d.ref.display} ${resultWord(out, d.isNew ? 'created' : d.diff ? 'configured' : 'unchanged')} (dry run)`)
          if (d.diff && !d.isNew) out.write(colourDiff(out, d.diff))
        }
        return
      }
      const outcome = await lib.applyObjects(store, loaded, ifRevision === undefined ? {} : { ifRevision })
      for (const d of outcome.documents) out.write(`${d.display} ${resultWord(out, d.result)}`)
      out.write(paint(out, 'dim', `revision ${outcome.revision}`))
    })
  })

  withConnectionOptions(
    policy
      .command('diff')
      .description('show how the store would change if these files were applied; exit 1 when it would')
      .requiredOption('-f, --filename <path>', 'file or directory (repeatable; - for stdin)', collect)
      .option('-n, --namespace <ns>', 'namespace for objects that name none', 'default'),
  ).action(async (opts: FileOptions) => {
    const loaded = loadFiles(opts)
    const changed = await withStore(opts, async (store, lib) => {
      let n = 0
      for (const d of await manifestDiffs(store, lib, loaded)) {
        if (!d.diff) continue
        n++
        out.write(colourDiff(out, d.diff))
      }
      return n
    })
    if (changed > 0) throw new DiffFoundError(changed)
  })

  for (const name of ['get', 'list']) {
    withConnectionOptions(
      policy
        .command(`${name} [name]`)
        .description(name === 'get' ? 'show policies from the store' : 'list policies in the store (like get without a name)')
        .option('-n, --namespace <ns>', 'namespace of NetworkPolicies', 'default')
        .option('-A, --all-namespaces', 'NetworkPolicies of every namespace')
        .option('--kind <kind>', 'NetworkPolicy (default) or ClusterNetworkPolicy', 'NetworkPolicy')
        .addOption(outputOption()),
    ).action(async (nameArg: string | undefined, opts: ConnectionOptions & { namespace: string; allNamespaces?: boolean; kind: string; output: OutputFormat }) => {
      const kind = parseKind(opts.kind)
      await withStore(opts, async (store, lib) => {
        let objects: StoredObject[]
        if (nameArg) {
          const key = kind === 'NetworkPolicy' ? `${opts.namespace}/${nameArg}` : nameArg
          const one = await store.get(kind, key)
          if (!one) throw new lib.NotFoundError(`${kind} ${key}`)
          objects = [one]
        } else {
          objects = (await store.list(kind)).filter((o) => kind !== 'NetworkPolicy' || opts.allNamespaces || o.key.startsWith(`${opts.namespace}/`))
        }
        if (opts.output !== 'table') {
          const docs = objects.map((o) => o.value)
          out.write(formatData(nameArg ? docs[0] : { apiVersion: 'v1', kind: 'List', items: docs }, opts.output))
          return
        }
        if (objects.length === 0) {
          out.error(kind === 'NetworkPolicy' && !opts.allNamespaces ? `no NetworkPolicies in namespace ${opts.namespace}` : `no ${kind === 'NetworkPolicy' ? 'NetworkPolicies' : 'ClusterNetworkPolicies'}`)
          return
        }
        const header = kind === 'ClusterNetworkPolicy' ? ['NAME', 'TIER', 'PRIORITY', 'SUBJECT', 'INGRESS', 'EGRESS', 'REVISION'] : ['NAMESPACE', 'NAME', 'POD-SELECTOR', 'POLICY-TYPES', 'REVISION']
        out.write(table(objects.map(summarise), header))
      })
    })
  }

  withConnectionOptions(
    policy
      .command('delete [name]')
      .description('delete policies named on the command line or in files, as one revision')
      .option('-f, --filename <path>', 'delete the objects these files define', collect)
      .option('-n, --namespace <ns>', 'namespace of the NetworkPolicy', 'default')
      .option('--kind <kind>', 'NetworkPolicy (default) or ClusterNetworkPolicy', 'NetworkPolicy')
      .option('--if-revision <rev>', 'delete only if the store is still at this revision'),
  ).action(async (nameArg: string | undefined, opts: ConnectionOptions & { filename?: string[]; namespace: string; kind: string; ifRevision?: string }) => {
    let refs: DocumentRef[]
    if (opts.filename?.length) {
      const loaded = loadObjects(readSources(opts.filename), { defaultNamespace: opts.namespace, accept: 'any' })
      const { refOf } = await loadStoreLib()
      refs = [...loaded.namespaces, ...loaded.endpoints, ...loaded.policies].map(refOf)
    } else if (nameArg) {
      const kind = parseKind(opts.kind)
      const key = kind === 'NetworkPolicy' ? `${opts.namespace}/${nameArg}` : nameArg
      refs = [{ kind, key, display: `${kind} ${key}` }]
    } else throw new InvalidArgumentError('name what to delete: a NAME, or -f FILE')
    const ifRevision = opts.ifRevision === undefined ? undefined : Number(opts.ifRevision)
    await withStore(opts, async (store, lib) => {
      const outcome = await lib.deleteRefs(store, refs, ifRevision === undefined ? {} : { ifRevision })
      for (const d of outcome.documents) out.write(`${d.display} ${resultWord(out, d.result)}`)
      out.write(paint(out, 'dim', `revision ${outcome.revision}`))
      const missing = outcome.documents.filter((d) => d.result === 'notfound')
      if (missing.length > 0) throw new lib.NotFoundError(missing.map((d) => d.display).join(', '))
    })
  })
}

/** `policy diff` found differences: exit 1, as `kubectl diff` does. */
export class DiffFoundError extends FlatnetError {
  readonly code = 'ERR_DIFF_FOUND'
  constructor(readonly changed: number) {
    super(`${changed} object${changed === 1 ? '' : 's'} would change`)
  }
}
