/**
 * The address peers should send WireGuard to when the configuration names none: the first
 * global IPv4 address of an interface that is not the overlay's (then IPv6 if there is no IPv4).
 */
import { networkInterfaces } from 'node:os'
import { FlatnetError } from '@flatnet/core'

/** No usable underlay address; set `underlay.addresses` in the configuration. */
export class UnderlayUndetectedError extends FlatnetError {
  readonly code = 'ERR_AGENT_UNDERLAY'
}

export function detectUnderlayAddress(options: { exclude?: readonly string[] } = {}): string {
  const exclude = new Set(options.exclude ?? [])
  const candidates: { family: 4 | 6; address: string; name: string }[] = []
  for (const [name, addrs] of Object.entries(networkInterfaces())) {
    if (exclude.has(name) || name.startsWith('fnw')) continue
    for (const a of addrs ?? []) {
      if (a.internal) continue
      if (a.family === 'IPv4' && !a.address.startsWith('169.254.')) candidates.push({ family: 4, address: a.address, name })
      if (a.family === 'IPv6' && !a.address.toLowerCase().startsWith('fe80')) candidates.push({ family: 6, address: a.address, name })
    }
  }
  candidates.sort((x, y) => x.family - y.family || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
  const first = candidates[0]
  if (!first) throw new UnderlayUndetectedError('no global address on any interface to offer peers; set underlay.addresses in the agent configuration')
  return first.address
}
