/**
 * Addresses for lab endpoints. The lab asks a caller-supplied `allocate` for each endpoint's
 * addresses; `lab up` answers from the agents' IPAM blocks. perHostAllocator is the simple
 * stand-in for tests and for a lab without agents: one /24 per host, in topology order, the
 * host's own endpoint at .1 and its workloads from .2 on.
 */
import { formatIp, InvalidArgumentError, parseCidr } from '@flatnet/core'
import type { LabHost, Topology } from './topology.js'

export interface AllocationRequest {
  readonly host: LabHost
  readonly endpoint: { readonly role: 'host' | 'workload'; readonly namespace: string; readonly name: string; readonly key: string }
}

/** Addresses for one endpoint: `10.64.1.7/32`, `fd00::7/128` or bare addresses. */
export type Allocate = (request: AllocationRequest) => readonly string[] | Promise<readonly string[]>

export interface PerHostAllocator {
  readonly allocate: Allocate
  /** The prefix each host's endpoints come from, for plain routes between hosts. */
  prefixesOf(host: string): readonly string[]
}

export const DEFAULT_LAB_POOL = '10.99.0.0/16'

export function perHostAllocator(topology: Topology, pool = DEFAULT_LAB_POOL): PerHostAllocator {
  const cidr = parseCidr(pool)
  if (!cidr || cidr.family !== 4 || cidr.prefix > 16) throw new InvalidArgumentError(`pool "${pool}": an IPv4 network of /16 or larger`)
  if (topology.hosts.length > 255) throw new InvalidArgumentError(`pool "${pool}": one /24 per host, and there are ${topology.hosts.length} hosts`)
  const base = cidr.network.words[0]
  const at = (hostIndex: number, n: number): string => formatIp({ family: 4, words: [(base + (hostIndex + 1) * 256 + n) >>> 0, 0, 0, 0] })
  const addresses = new Map<string, string>()
  const prefixes = new Map<string, string>()
  topology.hosts.forEach((h, i) => {
    prefixes.set(h.name, `${at(i, 0)}/24`)
    addresses.set(`${h.namespace}/${h.name}`, at(i, 1))
    const mine = topology.workloads.filter((w) => w.host === h.name)
    if (mine.length > 253) throw new InvalidArgumentError(`host "${h.name}" has ${mine.length} workloads; a /24 holds 253`)
    mine.forEach((w, j) => addresses.set(`${w.namespace}/${w.name}`, at(i, j + 2)))
  })
  return {
    allocate: ({ endpoint }) => {
      const address = addresses.get(endpoint.key)
      if (address === undefined) throw new InvalidArgumentError(`no address for ${endpoint.key}: not in the topology`)
      return [`${address}/32`]
    },
    prefixesOf: (host) => {
      const prefix = prefixes.get(host)
      return prefix === undefined ? [] : [prefix]
    },
  }
}
