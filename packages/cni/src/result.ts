/**
 * The Success result of ADD, in the layout of the version the runtime asked for, and the
 * addresses CHECK reads back from a prevResult. Pure.
 *
 * Every flatnet attachment looks the same (workload-link.ts in the agent): the host side of the
 * veth (MAC ee:ee:ee:ee:ee:ee), the container side with one /32 (and /128) per address, and a
 * default route through the link-local gateway the host answers for.
 */
import { CniConfigError } from './cni-errors.js'
import type { CniDns } from './net-config.js'
import { resultFormat, type CniVersion } from './versions.js'

export const GATEWAY = Object.freeze({ 4: '169.254.1.1', 6: 'fe80::1' })

export interface AttachmentFacts {
  readonly hostIfname: string
  readonly hostMac: string
  readonly ifname: string
  readonly mac?: string | undefined
  readonly mtu: number
  readonly netns: string
  readonly ips: readonly string[]
}

interface Interface {
  name: string
  mac?: string
  mtu?: number
  sandbox?: string
}
interface IpConfig {
  version?: '4' | '6'
  address: string
  gateway: string
  interface?: number
}
interface Route {
  dst: string
  gw?: string
}

const familyOf = (ip: string): 4 | 6 => (ip.includes(':') ? 6 : 4)
const withPrefix = (ip: string): string => `${ip}/${familyOf(ip) === 4 ? 32 : 128}`

function listOf<T>(prev: Readonly<Record<string, unknown>> | undefined, key: string): T[] {
  const v = prev?.[key]
  if (v === undefined) return []
  if (!Array.isArray(v)) throw new CniConfigError(`invalid network config: prevResult.${key} must be a list`)
  return v as T[]
}

/**
 * The result for `version`. A `prevResult` (a plugin earlier in the chain) is passed through
 * with this attachment's interfaces, addresses and routes added after its own.
 */
export function addResult(version: CniVersion, facts: AttachmentFacts, options: { dns?: CniDns | undefined; prevResult?: Readonly<Record<string, unknown>> | undefined } = {}): Record<string, unknown> {
  const format = resultFormat(version)
  const families = [...new Set(facts.ips.map(familyOf))].sort()
  const routes: Route[] = families.map((f) => ({ dst: f === 4 ? '0.0.0.0/0' : '::/0', gw: GATEWAY[f] }))
  if (format === 'legacy') {
    const result: Record<string, unknown> = { cniVersion: version }
    for (const f of families) {
      const ip = facts.ips.find((a) => familyOf(a) === f) as string
      result[`ip${f}`] = { ip: withPrefix(ip), gateway: GATEWAY[f], routes: routes.filter((r) => familyOf(r.dst) === f) }
    }
    if (options.dns) result.dns = options.dns
    return result
  }
  // `mtu` on interfaces is new in 1.1.0; older parsers get the fields they know.
  const mtu = version === '1.1.0' ? { mtu: facts.mtu } : {}
  const prevInterfaces = listOf<Interface>(options.prevResult, 'interfaces')
  const interfaces: Interface[] = [
    ...prevInterfaces,
    { name: facts.hostIfname, mac: facts.hostMac, ...mtu },
    { name: facts.ifname, ...(facts.mac ? { mac: facts.mac } : {}), ...mtu, sandbox: facts.netns },
  ]
  const containerIndex = prevInterfaces.length + 1
  const ips: IpConfig[] = [
    ...listOf<IpConfig>(options.prevResult, 'ips'),
    ...facts.ips.map((ip) => ({
      ...(format === 'versioned-ips' ? { version: String(familyOf(ip)) as '4' | '6' } : {}),
      address: withPrefix(ip),
      gateway: GATEWAY[familyOf(ip)],
      interface: containerIndex,
    })),
  ]
  const dns = options.dns ?? (options.prevResult?.dns as CniDns | undefined)
  return {
    cniVersion: version,
    interfaces,
    ips,
    routes: [...listOf<Route>(options.prevResult, 'routes'), ...routes],
    ...(dns ? { dns } : {}),
  }
}

/** The addresses a result (prevResult of DEL or CHECK) gives, without prefix length; any layout. */
export function resultAddresses(result: Readonly<Record<string, unknown>> | undefined): string[] {
  if (!result) return []
  const out: string[] = []
  const take = (v: unknown): void => {
    if (typeof v === 'string' && v.includes('/')) out.push(v.slice(0, v.indexOf('/')))
  }
  if (Array.isArray(result.ips)) for (const ip of result.ips as { address?: unknown }[]) take(ip?.address)
  for (const key of ['ip4', 'ip6']) take((result[key] as { ip?: unknown } | undefined)?.ip)
  return out
}
