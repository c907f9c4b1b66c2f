/**
 * wg-quick style configuration files: `[Interface]` and `[Peer]` sections of `Key = Value` lines.
 *
 * The parser is strict. Every problem is reported with file, line, column and key, and all of
 * them at once (one ValidationError), so that a bad file is fixed in one pass:
 * - keys and section names match case-insensitively, as `wg setconf` does;
 * - unknown keys and sections are refused, so a typo cannot silently drop a setting;
 * - wg-quick's host-side settings (DNS, Table, PreUp, PostUp, PreDown, PostDown, SaveConfig) and
 *   FwMark are refused, not ignored: flatnet does not run hook commands, change the resolver or
 *   routing tables, and a file that looks like it does something it does not is worse than an error;
 * - keys must be base64 of exactly 32 bytes, in canonical form;
 * - endpoints must be IP literals (`192.0.2.1:51820`, `[2001:db8::1]:51820`): hostnames are
 *   refused because flatnet performs no DNS lookups on the data plane;
 * - AllowedIPs must not have host bits set (`10.0.0.1/24` is refused, `10.0.0.0/24` is meant).
 *   Interface addresses keep their host bits: `10.0.0.1/24` is an address in a /24.
 *   A bare address means /32 or /128 in both.
 * Values are returned in canonical form (RFC 5952 IPv6, no redundant spaces) so that
 * `parseConfig(formatConfig(c))` equals `c`.
 */
import { createPrivateKey, createPublicKey, randomBytes } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { formatIp, InputReadError, InvalidArgumentError, parseCidr, parseIp, ValidationError, type ValidationIssue } from '@flatnet/core'

export interface WireguardInterfaceConfig {
  /** base64, 32 bytes. */
  readonly privateKey: string
  /** Interface addresses with their prefix length, e.g. `10.0.0.1/24`. */
  readonly addresses: readonly string[]
  /** 0 means "pick a free port". */
  readonly listenPort?: number
  readonly mtu?: number
}

export interface WireguardPeerConfig {
  /** base64, 32 bytes. */
  readonly publicKey: string
  readonly presharedKey?: string
  /** `ipv4:port` or `[ipv6]:port`. */
  readonly endpoint?: string
  /** Canonical CIDRs, host bits clear. */
  readonly allowedIps: readonly string[]
  /** Seconds, 1..65535; absent means off. */
  readonly persistentKeepalive?: number
}

export interface WireguardConfig {
  readonly interface: WireguardInterfaceConfig
  readonly peers: readonly WireguardPeerConfig[]
}

export const MIN_INTERFACE_MTU = 576
export const MAX_INTERFACE_MTU = 65535

/** wg-quick keys flatnet refuses, with the reason shown to the user. */
const REFUSED_INTERFACE_KEYS: Readonly<Record<string, string>> = {
  dns: 'DNS is a wg-quick setting not supported by flatnet wg: flatnet does not change the host resolver; remove the line',
  table: 'Table is a wg-quick setting not supported by flatnet wg: flatnet manages routes itself; remove the line',
  preup: 'PreUp is a wg-quick setting not supported by flatnet wg: flatnet runs no hook commands; remove the line',
  postup: 'PostUp is a wg-quick setting not supported by flatnet wg: flatnet runs no hook commands; remove the line',
  predown: 'PreDown is a wg-quick setting not supported by flatnet wg: flatnet runs no hook commands; remove the line',
  postdown: 'PostDown is a wg-quick setting not supported by flatnet wg: flatnet runs no hook commands; remove the line',
  saveconfig: 'SaveConfig is a wg-quick setting not supported by flatnet wg: flatnet never rewrites its configuration file; remove the line',
  fwmark: 'FwMark is not supported by flatnet wg: flatnet does not mark tunnel packets; remove the line',
}

const INTERFACE_KEYS = ['PrivateKey', 'Address', 'ListenPort', 'MTU'] as const
const PEER_KEYS = ['PublicKey', 'PresharedKey', 'Endpoint', 'AllowedIPs', 'PersistentKeepalive'] as const
type InterfaceKey = (typeof INTERFACE_KEYS)[number]
type PeerKey = (typeof PEER_KEYS)[number]
const LIST_KEYS = new Set<string>(['Address', 'AllowedIPs'])

/** True when `text` is the canonical base64 form of exactly 32 bytes, as `wg genkey` prints. */
export function isWireguardKey(text: string): boolean {
  return /^[A-Za-z0-9+/]{43}=$/.test(text) && Buffer.from(text, 'base64').toString('base64') === text
}

function keyProblem(text: string): string | undefined {
  if (isWireguardKey(text)) return undefined
  return 'must be a base64 WireGuard key (32 bytes, 44 characters ending in "=", as `wg genkey` prints)'
}

/** Canonical `addr/prefix`; a bare address gets the full-length prefix. */
function parseAddressOrCidr(text: string, allowHostBits: boolean): { value?: string; problem?: string } {
  const bare = text.includes('/') ? undefined : parseIp(text)
  const withPrefix = bare ? `${text}/${bare.family === 4 ? 32 : 128}` : text
  const cidr = parseCidr(withPrefix)
  if (!cidr) return { problem: `"${text}" is not an IP address or CIDR (e.g. 10.0.0.1/24, fd00::1/64)` }
  if (allowHostBits) {
    const slash = withPrefix.indexOf('/')
    return { value: `${formatIp(parseIp(withPrefix.slice(0, slash))!)}/${cidr.prefix}` }
  }
  const canonical = `${formatIp(cidr.network)}/${cidr.prefix}`
  if (cidr.hostBitsSet) return { problem: `"${text}" has host bits set; did you mean ${canonical}?` }
  return { value: canonical }
}

/** Canonical `ipv4:port` / `[ipv6]:port`. */
function parseEndpoint(text: string): { value?: string; problem?: string } {
  let host: string
  let portText: string
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(text)
  if (bracketed) {
    host = bracketed[1]!
    portText = bracketed[2]!
  } else {
    const colon = text.lastIndexOf(':')
    if (colon === -1) return { problem: `"${text}" has no port; write host:port, e.g. 192.0.2.1:51820` }
    host = text.slice(0, colon)
    portText = text.slice(colon + 1)
    if (host.includes(':')) return { problem: `"${text}": an IPv6 endpoint must be bracketed, e.g. [2001:db8::1]:51820` }
  }
  const ip = parseIp(host)
  if (!ip) {
    if (/^[A-Za-z0-9.-]+$/.test(host) && /[A-Za-z]/.test(host)) {
      return { problem: `"${host}" is a hostname; flatnet wg does no DNS lookups, give an IP address` }
    }
    return { problem: `"${host}" is not an IP address` }
  }
  if (bracketed && ip.family !== 6) return { problem: `"${text}": only IPv6 addresses go in brackets` }
  const port = parseInteger(portText, 1, 65535)
  if (port === undefined) return { problem: `port "${portText}" must be an integer from 1 to 65535` }
  return { value: ip.family === 6 ? `[${formatIp(ip)}]:${port}` : `${formatIp(ip)}:${port}` }
}

function parseInteger(text: string, min: number, max: number): number | undefined {
  if (!/^(0|[1-9][0-9]{0,5})$/.test(text)) return undefined
  const n = Number(text)
  return n >= min && n <= max ? n : undefined
}

interface Located {
  readonly value: string
  readonly line: number
  readonly column: number
}

interface SectionDraft {
  readonly kind: 'Interface' | 'Peer'
  readonly line: number
  /** Index among peers, for issue paths. */
  readonly index: number
  readonly single: Map<string, Located>
  readonly lists: Map<string, Located[]>
}

/**
 * Parses the text of a wg-quick style file. `file` only names the input in issues.
 * Throws ValidationError listing every problem.
 */
export function parseConfig(text: string, file = '<config>'): WireguardConfig {
  const issues: ValidationIssue[] = []
  const issue = (line: number, column: number, path: string, message: string): void => {
    issues.push({ file, line, column, path, message })
  }
  const sections: SectionDraft[] = []
  let peerCount = 0
  const lines = text.split(/\r?\n/)
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1
    const raw = lines[i]!
    const hash = raw.indexOf('#')
    const content = hash === -1 ? raw : raw.slice(0, hash)
    const trimmed = content.trim()
    if (trimmed === '') continue
    const lead = content.length - content.trimStart().length
    if (trimmed.startsWith('[')) {
      const m = /^\[\s*([^\]]*?)\s*\]$/.exec(trimmed)
      const name = m?.[1]?.toLowerCase()
      if (name === 'interface' || name === 'peer') {
        const kind = name === 'interface' ? 'Interface' : 'Peer'
        sections.push({ kind, line: lineNo, index: kind === 'Peer' ? peerCount++ : 0, single: new Map(), lists: new Map() })
      } else {
        issue(lineNo, lead + 1, '', `unknown section ${trimmed}; expected [Interface] or [Peer]`)
        // A placeholder section swallows its lines, so one typo in a header gives one issue.
        sections.push({ kind: 'Peer', line: lineNo, index: -1, single: new Map(), lists: new Map() })
      }
      continue
    }
    const eq = content.indexOf('=')
    if (eq === -1) {
      issue(lineNo, lead + 1, '', `expected "Key = Value" or a [Section] header, found "${trimmed}"`)
      continue
    }
    const keyText = content.slice(0, eq).trim()
    const valueStart = eq + 1 + (content.slice(eq + 1).length - content.slice(eq + 1).trimStart().length)
    const value = content.slice(eq + 1).trim()
    const section = sections[sections.length - 1]
    if (!section) {
      issue(lineNo, lead + 1, keyText, `"${keyText}" appears before any [Interface] or [Peer] section`)
      continue
    }
    if (section.index === -1) continue
    const sectionPath = section.kind === 'Interface' ? 'Interface' : `Peer[${section.index}]`
    const known: readonly string[] = section.kind === 'Interface' ? INTERFACE_KEYS : PEER_KEYS
    const key = known.find((k) => k.toLowerCase() === keyText.toLowerCase())
    if (!key) {
      const refused = section.kind === 'Interface' ? REFUSED_INTERFACE_KEYS[keyText.toLowerCase()] : undefined
      const other = (section.kind === 'Interface' ? PEER_KEYS : INTERFACE_KEYS) as readonly string[]
      const misplaced = other.find((k) => k.toLowerCase() === keyText.toLowerCase())
      const message =
        refused ??
        (misplaced
          ? `${misplaced} belongs in ${section.kind === 'Interface' ? '[Peer]' : '[Interface]'}, not [${section.kind}]`
          : `unknown key "${keyText}" in [${section.kind}]; known keys: ${known.join(', ')}`)
      issue(lineNo, lead + 1, `${sectionPath}.${keyText}`, message)
      continue
    }
    const path = `${sectionPath}.${key}`
    if (value === '') {
      issue(lineNo, valueStart + 1, path, `${key} has no value`)
      continue
    }
    if (LIST_KEYS.has(key)) {
      const items = section.lists.get(key) ?? []
      let offset = 0
      for (const part of value.split(',')) {
        const itemLead = part.length - part.trimStart().length
        const item = part.trim()
        const column = valueStart + offset + itemLead + 1
        if (item === '') issue(lineNo, column, path, `${key} has an empty item in its list`)
        else items.push({ value: item, line: lineNo, column })
        offset += part.length + 1
      }
      section.lists.set(key, items)
    } else {
      const first = section.single.get(key)
      if (first) issue(lineNo, lead + 1, path, `${key} given twice in this section (first on line ${first.line})`)
      else section.single.set(key, { value, line: lineNo, column: valueStart + 1 })
    }
  }

  const interfaces = sections.filter((s) => s.kind === 'Interface')
  for (const extra of interfaces.slice(1)) {
    issue(extra.line, 1, 'Interface', `a second [Interface] section (the first is on line ${interfaces[0]!.line}); a file configures one interface`)
  }
  const iface = interfaces[0]
  let parsedInterface: WireguardInterfaceConfig | undefined
  if (!iface) {
    const where = text.trim() === '' ? 0 : 1
    issue(where, where, 'Interface', 'no [Interface] section; it must give at least PrivateKey')
  } else {
    parsedInterface = finishInterface(iface, issue)
  }
  const peers: WireguardPeerConfig[] = []
  const seen = new Map<string, number>()
  for (const s of sections) {
    if (s.kind !== 'Peer' || s.index === -1) continue
    const peer = finishPeer(s, issue)
    if (!peer) continue
    const loc = s.single.get('PublicKey')!
    const dup = seen.get(peer.publicKey)
    if (dup !== undefined) {
      issue(loc.line, loc.column, `Peer[${s.index}].PublicKey`, `the same peer appears twice (first [Peer] on line ${dup})`)
      continue
    }
    seen.set(peer.publicKey, s.line)
    peers.push(peer)
  }
  if (parsedInterface) {
    // WireGuard ignores a peer that carries the interface's own key: always a copy-paste slip.
    const own = publicKeyFromPrivateKey(parsedInterface.privateKey)
    for (const s of sections) {
      const loc = s.kind === 'Peer' && s.index !== -1 ? s.single.get('PublicKey') : undefined
      if (loc?.value === own) issue(loc.line, loc.column, `Peer[${s.index}].PublicKey`, "is this interface's own public key, not a peer's")
    }
  }
  if (issues.length > 0 || !parsedInterface) throw new ValidationError(issues.sort((a, b) => a.line - b.line || a.column - b.column))
  return { interface: parsedInterface, peers }
}

type IssueFn = (line: number, column: number, path: string, message: string) => void

function finishInterface(s: SectionDraft, issue: IssueFn): WireguardInterfaceConfig | undefined {
  let ok = true
  const fail = (loc: Located, key: InterfaceKey, message: string): void => {
    ok = false
    issue(loc.line, loc.column, `Interface.${key}`, message)
  }
  const pk = s.single.get('PrivateKey')
  if (!pk) {
    ok = false
    issue(s.line, 1, 'Interface.PrivateKey', '[Interface] has no PrivateKey')
  } else {
    const problem = keyProblem(pk.value)
    if (problem) fail(pk, 'PrivateKey', problem)
  }
  const addresses: string[] = []
  for (const loc of s.lists.get('Address') ?? []) {
    const r = parseAddressOrCidr(loc.value, true)
    if (r.problem) fail(loc, 'Address', r.problem)
    else if (addresses.includes(r.value!)) fail(loc, 'Address', `${r.value} is listed twice`)
    else addresses.push(r.value!)
  }
  let listenPort: number | undefined
  const lp = s.single.get('ListenPort')
  if (lp) {
    listenPort = parseInteger(lp.value, 0, 65535)
    if (listenPort === undefined) fail(lp, 'ListenPort', `"${lp.value}" must be an integer from 0 to 65535 (0 picks a free port)`)
  }
  let mtu: number | undefined
  const m = s.single.get('MTU')
  if (m) {
    mtu = parseInteger(m.value, MIN_INTERFACE_MTU, MAX_INTERFACE_MTU)
    if (mtu === undefined) fail(m, 'MTU', `"${m.value}" must be an integer from ${MIN_INTERFACE_MTU} to ${MAX_INTERFACE_MTU}`)
  }
  if (!ok || !pk) return undefined
  return {
    privateKey: pk.value,
    addresses,
    ...(listenPort !== undefined ? { listenPort } : {}),
    ...(mtu !== undefined ? { mtu } : {}),
  }
}

function finishPeer(s: SectionDraft, issue: IssueFn): WireguardPeerConfig | undefined {
  let ok = true
  const base = `Peer[${s.index}]`
  const fail = (loc: Located, key: PeerKey, message: string): void => {
    ok = false
    issue(loc.line, loc.column, `${base}.${key}`, message)
  }
  const pub = s.single.get('PublicKey')
  if (!pub) {
    ok = false
    issue(s.line, 1, `${base}.PublicKey`, '[Peer] has no PublicKey')
  } else {
    const problem = keyProblem(pub.value)
    if (problem) fail(pub, 'PublicKey', problem)
  }
  const psk = s.single.get('PresharedKey')
  if (psk) {
    const problem = keyProblem(psk.value)
    if (problem) fail(psk, 'PresharedKey', problem)
  }
  let endpoint: string | undefined
  const ep = s.single.get('Endpoint')
  if (ep) {
    const r = parseEndpoint(ep.value)
    if (r.problem) fail(ep, 'Endpoint', r.problem)
    endpoint = r.value
  }
  const allowedIps: string[] = []
  for (const loc of s.lists.get('AllowedIPs') ?? []) {
    const r = parseAddressOrCidr(loc.value, false)
    if (r.problem) fail(loc, 'AllowedIPs', r.problem)
    else if (allowedIps.includes(r.value!)) fail(loc, 'AllowedIPs', `${r.value} is listed twice`)
    else allowedIps.push(r.value!)
  }
  let persistentKeepalive: number | undefined
  const ka = s.single.get('PersistentKeepalive')
  if (ka) {
    if (ka.value.toLowerCase() !== 'off') {
      const n = parseInteger(ka.value, 0, 65535)
      if (n === undefined) fail(ka, 'PersistentKeepalive', `"${ka.value}" must be "off" or an integer number of seconds from 0 to 65535`)
      else if (n > 0) persistentKeepalive = n
    }
  }
  if (!ok || !pub) return undefined
  return {
    publicKey: pub.value,
    ...(psk ? { presharedKey: psk.value } : {}),
    ...(endpoint !== undefined ? { endpoint } : {}),
    allowedIps,
    ...(persistentKeepalive !== undefined ? { persistentKeepalive } : {}),
  }
}

/** Reads and parses a configuration file. Throws InputReadError or ValidationError. */
export async function readConfigFile(path: string): Promise<WireguardConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (e) {
    throw new InputReadError(path, (e as NodeJS.ErrnoException).code ?? String(e))
  }
  return parseConfig(text, path)
}

/**
 * The configuration as file text, in canonical key order. Values are checked as the parser
 * checks them (throws InvalidArgumentError), so the output always parses back to `config`
 * and a value can never smuggle in another line.
 */
export function formatConfig(config: WireguardConfig): string {
  const bad = (what: string, value: unknown): never => {
    throw new InvalidArgumentError(`formatConfig: ${what} ${JSON.stringify(value)} is not valid`)
  }
  const { interface: iface, peers } = config
  const out: string[] = ['[Interface]']
  if (!isWireguardKey(iface.privateKey)) bad('interface private key', '(hidden)')
  out.push(`PrivateKey = ${iface.privateKey}`)
  const addresses = iface.addresses.map((a) => parseAddressOrCidr(a, true).value ?? bad('interface address', a))
  if (addresses.length > 0) out.push(`Address = ${addresses.join(', ')}`)
  if (iface.listenPort !== undefined) {
    if (!Number.isInteger(iface.listenPort) || iface.listenPort < 0 || iface.listenPort > 65535) bad('listen port', iface.listenPort)
    out.push(`ListenPort = ${iface.listenPort}`)
  }
  if (iface.mtu !== undefined) {
    if (!Number.isInteger(iface.mtu) || iface.mtu < MIN_INTERFACE_MTU || iface.mtu > MAX_INTERFACE_MTU) bad('MTU', iface.mtu)
    out.push(`MTU = ${iface.mtu}`)
  }
  for (const peer of peers) {
    out.push('', '[Peer]')
    if (!isWireguardKey(peer.publicKey)) bad('peer public key', peer.publicKey)
    out.push(`PublicKey = ${peer.publicKey}`)
    if (peer.presharedKey !== undefined) {
      if (!isWireguardKey(peer.presharedKey)) bad('peer preshared key', '(hidden)')
      out.push(`PresharedKey = ${peer.presharedKey}`)
    }
    const allowed = peer.allowedIps.map((a) => parseAddressOrCidr(a, false).value ?? bad('allowed IP', a))
    if (allowed.length > 0) out.push(`AllowedIPs = ${allowed.join(', ')}`)
    if (peer.endpoint !== undefined) out.push(`Endpoint = ${parseEndpoint(peer.endpoint).value ?? bad('endpoint', peer.endpoint)}`)
    if (peer.persistentKeepalive !== undefined) {
      const ka = peer.persistentKeepalive
      if (!Number.isInteger(ka) || ka < 1 || ka > 65535) bad('persistent keepalive', ka)
      out.push(`PersistentKeepalive = ${ka}`)
    }
  }
  return out.join('\n') + '\n'
}

function checked(r: { value?: string; problem?: string }, what: string): string {
  if (r.value === undefined) throw new InvalidArgumentError(`${what}: ${r.problem ?? 'invalid'}`)
  return r.value
}

/** Canonical interface address (`10.0.0.1/24`; a bare address gets /32 or /128). Throws InvalidArgumentError. */
export function canonicalAddress(text: string): string {
  return checked(parseAddressOrCidr(text, true), 'interface address')
}

/** Canonical allowed-IPs CIDR (host bits clear; a bare address gets /32 or /128). Throws InvalidArgumentError. */
export function canonicalAllowedIp(text: string): string {
  return checked(parseAddressOrCidr(text, false), 'allowed IP')
}

/** Canonical endpoint, `ipv4:port` or `[ipv6]:port`; hostnames are refused. Throws InvalidArgumentError. */
export function canonicalEndpoint(text: string): string {
  return checked(parseEndpoint(text), 'endpoint')
}

/** The base64 public key of a base64 private key (X25519, as `wg pubkey`). */
export function publicKeyFromPrivateKey(privateKey: string): string {
  if (!isWireguardKey(privateKey)) throw new InvalidArgumentError('private key: not a base64 WireGuard key (32 bytes)')
  const der = Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(privateKey, 'base64')])
  const pub = createPublicKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }))
  return pub.export({ format: 'der', type: 'spki' }).subarray(-32).toString('base64')
}

/** A new random private key, clamped as `wg genkey` prints it. */
export function generatePrivateKeyBase64(): string {
  const k = randomBytes(32)
  k[0]! &= 248
  k[31] = (k[31]! & 127) | 64
  return k.toString('base64')
}

/** DER header of a PKCS#8 X25519 private key; the 32 raw key bytes follow it. */
const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex')
