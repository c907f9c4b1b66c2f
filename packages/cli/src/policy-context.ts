/** Loads `-f` policies and `-i` inventory into a compiled snapshot, for the offline commands. */
import { loadObjects, PolicyCompiler, type LoadedObjects, type PolicySnapshot } from '@flatnet/policy'
import { readSources } from './inputs.js'

export interface OfflineInputs {
  readonly filename: string[]
  readonly inventory?: string[] | undefined
  readonly namespace: string
}

export interface OfflineState {
  readonly policies: LoadedObjects
  readonly inventory: LoadedObjects
  readonly snapshot: PolicySnapshot
}

export function loadOffline(opts: OfflineInputs): OfflineState {
  const policies = loadObjects(readSources(opts.filename), { defaultNamespace: opts.namespace, accept: 'policy' })
  const inventory = opts.inventory?.length
    ? loadObjects(readSources(opts.inventory), { defaultNamespace: opts.namespace, accept: 'inventory' })
    : { policies: [], namespaces: [], endpoints: [] }
  const snapshot = new PolicyCompiler().load({ policies: policies.policies, namespaces: inventory.namespaces, endpoints: inventory.endpoints })
  return { policies, inventory, snapshot }
}
