/**
 * Checks of single configuration values. Each returns the reason a value is wrong, or
 * undefined; the caller adds where the value came from (file position, variable or flag). The
 * same checks serve the file, the environment and the flags, so a value is judged alike
 * whichever way it arrives.
 */
import { checkDns1123Subdomain, formatCidr, formatIp, parseCidr, parseIp, type IpFamily } from '@flatnet/core'
import { quoted } from '@flatnet/policy'
import { checkNodePeerId, parseJoinToken, parseRedisUrl } from '@flatnet/store'

/** Linux `sun_path` holds 108 bytes including the terminating NUL. */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107

/** Linux limits a path to PATH_MAX (4096) bytes including the NUL. */
const MAX_PATH_BYTES = 4095

export function checkAbsolutePath(text: string): string | undefined {
  if (text.includes('\0')) return 'must not contain a NUL character'
  // The agent runs with / as its working directory under systemd: a relative path would
  // silently mean something else in a shell.
  if (!text.startsWith('/')) return `must be an absolute path (starting with "/"), got ${quoted(text)}`
  if (Buffer.byteLength(text) > MAX_PATH_BYTES) return `must be no more than ${MAX_PATH_BYTES} bytes`
  return undefined
}

export function checkSocketPath(text: string): string | undefined {
  const bad = checkAbsolutePath(text)
  if (bad) return bad
  const bytes = Buffer.byteLength(text)
  if (bytes > MAX_UNIX_SOCKET_PATH_BYTES) return `a unix socket path must be no more than ${MAX_UNIX_SOCKET_PATH_BYTES} bytes, got ${bytes}`
  return undefined
}

/** Interface names as the kernel takes them: at most 15 bytes (IFNAMSIZ - 1), no '/', no white space. */
export function checkInterfaceName(text: string): string | undefined {
  if (text.length === 0) return 'must not be empty'
  if (text.length > 15) return `must be no more than 15 characters, got ${text.length}`
  if (!/^[A-Za-z0-9_.-]+$/.test(text)) return "must consist of letters, digits, '_', '-' and '.'"
  if (text === '.' || text === '..') return `${quoted(text)} is not a usable interface name`
  return undefined
}

export function checkNodeName(text: string): string | undefined {
  const bad = checkDns1123Subdomain(text)
  return bad ? `invalid node name ${quoted(text)}: ${bad}` : undefined
}

/** A Redis URL in any of the forms of docs/store.md; the reason never shows a password. */
export function checkRedisUrl(text: string): string | undefined {
  try {
    parseRedisUrl(text)
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

/** `fnt_<id>.<secret>`. The reason never repeats the value: it is a secret. */
export function checkJoinToken(text: string): string | undefined {
  try {
    parseJoinToken(text)
    return undefined
  } catch (err) {
    return (err as Error).message
  }
}

function checkPort(text: string, min: number): string | undefined {
  if (!/^(0|[1-9][0-9]{0,4})$/.test(text)) return `port ${quoted(text)} must be a number without leading zeros`
  const n = Number(text)
  if (n < min || n > 65535) return `port ${n} must be between ${min} and 65535`
  return undefined
}

function checkIpLiteral(text: string, family?: IpFamily): string | undefined {
  const ip = parseIp(text)
  if (!ip || (family !== undefined && ip.family !== family)) {
    const what = family === 4 ? 'an IPv4 address' : family === 6 ? 'an IPv6 address' : 'an IPv4 or IPv6 address'
    return `${quoted(text)} is not ${what}`
  }
  return undefined
}

/** `ip:port` or `[ipv6]:port`: a TCP listen address (what api/listen-address.ts takes, IP literals only). */
export function checkListenAddress(text: string): string | undefined {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(text)
  if (!m) return `${quoted(text)} is not 'ip:port' or '[ipv6]:port'`
  const host = m[1] ?? (m[2] as string)
  if (m[1] === undefined && !parseIp(host)) return `${quoted(text)}: the host must be an IP address (e.g. 127.0.0.1:9469 or [::1]:9469), not a name`
  const bad = m[1] !== undefined ? checkIpLiteral(m[1], 6) : undefined
  // Port 0 picks a free port, as the listener itself allows (tests, a lab of many agents).
  return bad ?? checkPort(m[3] as string, 0)
}

/** An underlay address: an IP literal, `ipv4:port` or `[ipv6]:port`. */
export function checkUnderlayAddress(text: string): string | undefined {
  if (parseIp(text)) return undefined
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(text)
  if (!m) return `${quoted(text)} is not an IP address, 'ipv4:port' or '[ipv6]:port'`
  const bad = m[1] !== undefined ? checkIpLiteral(m[1], 6) : checkIpLiteral(m[2] as string, 4)
  return bad ?? checkPort(m[3] as string, 1)
}

/** A CIDR without host bits: a failsafe rule's peer range. */
export function checkCidr(text: string): string | undefined {
  const cidr = parseCidr(text)
  if (!cidr) return `invalid CIDR ${quoted(text)}: must be an IPv4 or IPv6 address, '/', and a prefix length (e.g. 10.0.0.0/16 or fd00::/64)`
  if (cidr.hostBitsSet) return `CIDR ${quoted(text)} has host bits set: did you mean ${formatCidr(cidr)}?`
  return undefined
}

export function checkIp(text: string): string | undefined {
  if (parseIp(text)) return undefined
  return `invalid IP address ${quoted(text)}: must be an IPv4 address (e.g. 10.0.0.1) or an IPv6 address (e.g. fd00::1), without a prefix length`
}

/** The canonical text of an IP address, for comparing two spellings of one address. */
export function canonicalIp(text: string): string {
  const ip = parseIp(text)
  return ip ? formatIp(ip) : text
}

/** Which multiaddrs a field takes: what the agent listens on, announces, or dials. */
export type MultiaddrUse = 'listen' | 'announce' | 'dial'

/**
 * The multiaddr forms flatnet's mesh uses: `/ip4|ip6/<address>/tcp/<port>`, for announce and
 * dial also `/dns|dns4|dns6/<name>/tcp/<port>`, and for dial a trailing `/p2p/<PeerId>`.
 */
export function checkMultiaddr(text: string, use: MultiaddrUse): string | undefined {
  // Shown whole up to a generous length: the PeerId at the end is often what tells two apart.
  const fail = (why: string): string => `invalid multiaddr ${text.length <= 200 ? JSON.stringify(text) : quoted(text)}: ${why}`
  const parts = text.split('/')
  if (parts[0] !== '' || parts.length < 5) {
    const example = use === 'listen' ? '/ip4/0.0.0.0/tcp/7946' : use === 'announce' ? '/dns4/node-a.example/tcp/7946' : '/ip4/192.0.2.10/tcp/7946/p2p/12D3KooW...'
    return fail(`expected a form like ${example}`)
  }
  const [, proto, host, transport, portText, ...rest] = parts as [string, string, string, string, string, ...string[]]
  const names = use === 'listen' ? ['ip4', 'ip6'] : ['ip4', 'ip6', 'dns', 'dns4', 'dns6']
  if (!names.includes(proto)) return fail(`must start with ${names.map((n) => `/${n}`).join(', ')}`)
  if (proto === 'ip4' || proto === 'ip6') {
    const bad = checkIpLiteral(host, proto === 'ip4' ? 4 : 6)
    if (bad) return fail(bad)
  } else {
    const bad = checkDns1123Subdomain(host.toLowerCase())
    if (bad) return fail(`host name ${quoted(host)} ${bad}`)
  }
  if (transport !== 'tcp') return fail('the mesh runs over TCP: the address must continue with /tcp/<port>')
  // Port 0 asks the kernel for a free port: fine to listen on, useless to announce or dial.
  const badPort = checkPort(portText, use === 'listen' ? 0 : 1)
  if (badPort) return fail(badPort)
  if (rest.length === 0) return undefined
  if (use !== 'dial') return fail(`nothing may follow the port in a${use === 'announce' ? 'n announce' : ' listen'} address`)
  if (rest[0] !== 'p2p' || rest.length !== 2) return fail('only /p2p/<PeerId> may follow the port')
  const badPeer = checkNodePeerId(rest[1])
  return badPeer ? fail(badPeer) : undefined
}
