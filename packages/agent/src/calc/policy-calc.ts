/**
 * Calculation: store objects -> PolicySnapshot, incrementally (the policy package's
 * PolicyCompiler touches only what a change can affect), and the list of this node's own
 * endpoints, which are all the data plane enforces for. No I/O.
 *
 * A stored object that no longer validates is left out and reported, never allowed to stop the
 * enforcement of the others.
 */
import type { ValidationIssue } from '@flatnet/core'
import { PolicyCompiler, type EndpointRecord, type ObjectRef, type PolicySnapshot } from '@flatnet/policy'
import { decodeStored, type StoredObject } from '@flatnet/store'
import type { MirrorChange } from '../sync/store-mirror.js'

export class PolicyCalculation {
  private readonly compiler = new PolicyCompiler()
  private readonly problems = new Map<string, readonly ValidationIssue[]>()

  /** Feeds changed store objects to the compiler; Node objects are not policy input. */
  update(changes: readonly MirrorChange[]): void {
    for (const c of changes) {
      if (c.kind === 'Node') continue
      const id = `${c.kind}/${c.key}`
      if (c.object === undefined) {
        this.problems.delete(id)
        this.compiler.delete(refFor(c.kind, c.key))
        continue
      }
      const { loaded, issues } = decodeStored([c.object as StoredObject])
      const object = loaded.policies[0] ?? loaded.namespaces[0] ?? loaded.endpoints[0]
      if (issues.length > 0 || object === undefined) {
        this.problems.set(id, issues)
        this.compiler.delete(refFor(c.kind, c.key))
      } else {
        this.problems.delete(id)
        this.compiler.upsert(object)
      }
    }
  }

  commit(): PolicySnapshot {
    return this.compiler.commit()
  }

  get snapshot(): PolicySnapshot {
    return this.compiler.snapshot
  }

  /** Stored objects left out because they do not validate, with why. */
  invalidObjects(): { object: string; issues: readonly ValidationIssue[] }[] {
    return [...this.problems].map(([object, issues]) => ({ object, issues }))
  }
}

function refFor(kind: Exclude<MirrorChange['kind'], 'Node'>, key: string): ObjectRef {
  if (kind === 'Namespace' || kind === 'ClusterNetworkPolicy') return { kind, name: key }
  const slash = key.indexOf('/')
  const ref = { namespace: key.slice(0, slash), name: key.slice(slash + 1) }
  return kind === 'NetworkPolicy' ? { kind, ...ref } : { kind: 'HostEndpoint', ...ref }
}

/** The endpoints of the snapshot that run on `nodeName`: the only ones this node enforces for. */
export function localEndpoints(snapshot: PolicySnapshot, nodeName: string): EndpointRecord[] {
  const out: EndpointRecord[] = []
  for (const r of snapshot.endpoints.values()) if (r.endpoint.node === nodeName) out.push(r)
  return out.sort((a, b) => (a.key < b.key ? -1 : 1))
}
