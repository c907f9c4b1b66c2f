/**
 * The single-valued fields of the agent's configuration (strings, numbers, booleans, lists of
 * strings): their type, range, check, and the environment variable and command-line flag that
 * can set them. Structured fields (labels, ports, workloads, failsafe rules) are set in the file
 * only and read in read-file.ts.
 *
 * The CLI declares its `flatnet agent` options from this table, and docs/agent.md lists it (a
 * test checks that every variable and flag is documented).
 */
import { checkDns1123Label, checkDns1123Subdomain } from '@flatnet/core'
import { MAX_INTERFACE_MTU, MIN_INTERFACE_MTU } from '@flatnet/wireguard'
import type { PathSegment } from '@flatnet/policy'
import { quoted, typeName } from '@flatnet/policy'
import {
  checkAbsolutePath,
  checkInterfaceName,
  checkJoinToken,
  checkListenAddress,
  checkMultiaddr,
  checkNodeName,
  checkRedisUrl,
  checkSocketPath,
  checkUnderlayAddress,
} from './values.js'

export type FieldKind = 'string' | 'int' | 'bool' | 'enum' | 'list'

export interface ConfigField {
  /** Dotted path in the configuration, e.g. `wireguard.listenPort`. */
  readonly path: string
  readonly kind: FieldKind
  /** The environment variable that sets it, if any. */
  readonly env?: string
  /** The `flatnet agent` flag that sets it (without `--`), if any. */
  readonly flag?: string
  /** One line for `--help`. */
  readonly help: string
  /** int: the range. */
  readonly min?: number
  readonly max?: number
  /** enum: the allowed values. */
  readonly values?: readonly string[]
  /** string: whether '' is allowed (it then means none, or derive the value). */
  readonly allowEmpty?: boolean
  /** string, or each item of a list: the reason the value is wrong. */
  readonly check?: (text: string) => string | undefined
  readonly maxItems?: number
  /** Never shown in messages, whatever is wrong with it. */
  readonly secret?: boolean
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export const WIREGUARD_BACKENDS = ['auto', 'kernel', 'userspace'] as const

const MAX_ADDRESSES = 16

export const AGENT_CONFIG_FIELDS: readonly ConfigField[] = Object.freeze([
  { path: 'nodeName', kind: 'string', env: 'FLATNET_NODE_NAME', flag: 'node-name', allowEmpty: true, check: checkNodeName, help: 'node name (default: the host name)' },
  { path: 'cluster', kind: 'string', env: 'FLATNET_CLUSTER', flag: 'cluster', check: named('cluster name', checkDns1123Label), help: 'flatnet cluster name (key prefix in Redis)' },
  { path: 'stateDir', kind: 'string', env: 'FLATNET_STATE_DIR', flag: 'state-dir', check: checkAbsolutePath, help: 'state directory: node key, embedded Redis, local snapshot' },
  { path: 'runDir', kind: 'string', env: 'FLATNET_RUN_DIR', flag: 'run-dir', check: checkAbsolutePath, help: 'runtime directory: API socket' },
  { path: 'store.url', kind: 'string', env: 'FLATNET_REDIS_URL', flag: 'redis', allowEmpty: true, check: checkRedisUrl, help: 'Redis URL (default: the embedded redis-server)' },
  { path: 'store.timeoutMs', kind: 'int', env: 'FLATNET_STORE_TIMEOUT_MS', flag: 'timeout', min: 100, max: 600_000, help: 'bound on every store operation, in milliseconds' },
  { path: 'join.token', kind: 'string', env: 'FLATNET_JOIN_TOKEN', flag: 'join-token', allowEmpty: true, secret: true, check: checkJoinToken, help: 'join token fnt_<id>.<secret> (admits the node at once)' },
  { path: 'join.tokenFile', kind: 'string', env: 'FLATNET_JOIN_TOKEN_FILE', flag: 'join-token-file', allowEmpty: true, check: checkAbsolutePath, help: 'file holding the join token' },
  { path: 'wireguard.backend', kind: 'enum', env: 'FLATNET_WG_BACKEND', flag: 'wg-backend', values: WIREGUARD_BACKENDS, help: 'WireGuard backend: auto, kernel or userspace' },
  { path: 'wireguard.interfaceName', kind: 'string', env: 'FLATNET_WG_INTERFACE', flag: 'wg-interface', check: checkInterfaceName, help: 'WireGuard interface name' },
  { path: 'wireguard.listenPort', kind: 'int', env: 'FLATNET_WG_PORT', flag: 'wg-port', min: 1, max: 65535, help: 'WireGuard UDP port' },
  { path: 'wireguard.mtu', kind: 'int', env: 'FLATNET_WG_MTU', flag: 'wg-mtu', min: MIN_INTERFACE_MTU, max: MAX_INTERFACE_MTU, help: 'WireGuard interface MTU' },
  { path: 'mesh.listen', kind: 'list', env: 'FLATNET_MESH_LISTEN', flag: 'mesh-listen', maxItems: MAX_ADDRESSES, check: (t) => checkMultiaddr(t, 'listen'), help: 'mesh listen multiaddrs' },
  { path: 'mesh.announce', kind: 'list', env: 'FLATNET_MESH_ANNOUNCE', flag: 'mesh-announce', maxItems: MAX_ADDRESSES, check: (t) => checkMultiaddr(t, 'announce'), help: 'mesh addresses to advertise' },
  { path: 'mesh.bootstrap', kind: 'list', env: 'FLATNET_MESH_BOOTSTRAP', flag: 'mesh-bootstrap', maxItems: 64, check: (t) => checkMultiaddr(t, 'dial'), help: 'agents to dial at start' },
  { path: 'mesh.relayServer', kind: 'bool', env: 'FLATNET_MESH_RELAY_SERVER', flag: 'mesh-relay-server', help: 'run a circuit relay server for admitted peers' },
  { path: 'underlay.addresses', kind: 'list', env: 'FLATNET_UNDERLAY_ADDRESSES', flag: 'underlay-address', maxItems: MAX_ADDRESSES, check: checkUnderlayAddress, help: 'where peers send WireGuard to (default: detected)' },
  { path: 'hostEndpoint.enabled', kind: 'bool', env: 'FLATNET_HOST_ENDPOINT', help: 'register this host as an endpoint' },
  { path: 'hostEndpoint.namespace', kind: 'string', check: named('namespace', checkDns1123Label), help: 'namespace of the host endpoint' },
  { path: 'hostEndpoint.name', kind: 'string', allowEmpty: true, check: named('endpoint name', checkDns1123Subdomain), help: 'name of the host endpoint (default: the node name)' },
  { path: 'policy.conntrackCut', kind: 'bool', help: 'cut connections a policy change no longer allows' },
  { path: 'policy.keepRulesOnStop', kind: 'bool', help: 'keep the nftables ruleset when the agent stops' },
  { path: 'dataplane.procSysNet', kind: 'string', check: checkAbsolutePath, help: "the host's /proc/sys/net (a read-write mount of it in a container)" },
  { path: 'api.socket', kind: 'string', env: 'FLATNET_API_SOCKET', flag: 'api-socket', allowEmpty: true, check: checkSocketPath, help: 'local API unix socket (default: <runDir>/agent.sock)' },
  { path: 'metrics.listen', kind: 'string', env: 'FLATNET_METRICS_LISTEN', flag: 'metrics-listen', allowEmpty: true, check: checkListenAddress, help: "metrics and health listener ip:port ('' disables)" },
  { path: 'log.level', kind: 'enum', env: 'FLATNET_LOG_LEVEL', flag: 'log-level', values: LOG_LEVELS, help: 'log level' },
  { path: 'reconnect.minMs', kind: 'int', min: 10, max: 600_000, help: 'first reconnect delay, in milliseconds' },
  { path: 'reconnect.maxMs', kind: 'int', min: 10, max: 3_600_000, help: 'longest reconnect delay, in milliseconds' },
] satisfies ConfigField[])

export const FIELD_BY_PATH: ReadonlyMap<string, ConfigField> = new Map(AGENT_CONFIG_FIELDS.map((f) => [f.path, f]))

/** The key a flag has in the options object commander builds: `--wg-port` -> `wgPort`. */
export function flagKey(flag: string): string {
  return flag.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())
}

/** `what` names the value in the message: `invalid namespace "Ops": ...`. */
function named(what: string, check: (text: string) => string | undefined): (text: string) => string | undefined {
  return (text) => {
    const bad = check(text)
    return bad ? `invalid ${what} ${quoted(text)}: ${bad}` : undefined
  }
}

/** A problem with one value: `sub` extends the field's path (a list index). */
export interface ValueProblem {
  readonly sub: readonly PathSegment[]
  readonly message: string
}

/** What a value is, for "got ...": secrets are named by type only. */
function got(field: ConfigField, value: unknown): string {
  if (field.secret && value !== null && typeof value !== 'object') return `a ${typeof value}`
  return typeName(value)
}

/**
 * Checks a value of the field's type (from the file, or a typed flag); returns its problems.
 * `null` is not handled here: the file reader treats it as "not set".
 */
export function checkFieldValue(field: ConfigField, value: unknown): ValueProblem[] {
  const one = (message: string): ValueProblem[] => [{ sub: [], message }]
  switch (field.kind) {
    case 'string': {
      if (typeof value !== 'string') return one(`must be a string, got ${got(field, value)}`)
      if (value === '') return field.allowEmpty ? [] : one('must not be empty')
      const bad = field.check?.(value)
      return bad ? one(bad) : []
    }
    case 'int': {
      if (typeof value !== 'number' || !Number.isInteger(value)) return one(`must be an integer, got ${got(field, value)}`)
      const min = field.min ?? Number.MIN_SAFE_INTEGER
      const max = field.max ?? Number.MAX_SAFE_INTEGER
      return value < min || value > max ? one(`must be between ${min} and ${max}, got ${value}`) : []
    }
    case 'bool':
      return typeof value === 'boolean' ? [] : one(`must be true or false, got ${got(field, value)}`)
    case 'enum': {
      const values = field.values ?? []
      if (typeof value === 'string' && values.includes(value)) return []
      return one(`must be one of ${values.map((v) => `"${v}"`).join(', ')}, got ${got(field, value)}`)
    }
    case 'list': {
      if (!Array.isArray(value)) return one(`must be a list, got ${got(field, value)}`)
      if (field.maxItems !== undefined && value.length > field.maxItems) return one(`must have at most ${field.maxItems} items, got ${value.length}`)
      const problems: ValueProblem[] = []
      value.forEach((item, i) => {
        if (typeof item !== 'string') problems.push({ sub: [i], message: `must be a string, got ${got(field, item)}` })
        else {
          const bad = field.check?.(item)
          if (bad) problems.push({ sub: [i], message: bad })
        }
      })
      const seen = new Set<string>()
      value.forEach((item, i) => {
        if (typeof item !== 'string') return
        if (seen.has(item)) problems.push({ sub: [i], message: `${quoted(item)} is listed twice` })
        seen.add(item)
      })
      return problems
    }
  }
}

export type ParsedText = { readonly value: unknown } | { readonly problem: string }

/**
 * The value of a field given as text (an environment variable, or a flag as commander passes
 * it): numbers in decimal, booleans as `true`/`false`, lists separated by commas.
 */
export function parseFieldText(field: ConfigField, text: string): ParsedText {
  const shown = field.secret ? 'the given value' : quoted(text)
  switch (field.kind) {
    case 'int':
      if (!/^-?[0-9]{1,16}$/.test(text.trim())) return { problem: `must be an integer, got ${shown}` }
      return { value: Number(text.trim()) }
    case 'bool':
      if (text === 'true' || text === 'false') return { value: text === 'true' }
      return { problem: `must be "true" or "false", got ${shown}` }
    case 'list':
      return { value: text.split(',').map((s) => s.trim()).filter((s) => s !== '') }
    case 'string':
    case 'enum':
      return { value: text }
  }
}
