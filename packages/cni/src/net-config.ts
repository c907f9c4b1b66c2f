/**
 * The network config the runtime gives the plugin on standard input: the plugin's entry of
 * the conflist, with `cniVersion` and `name` inserted by the runtime, and `prevResult`,
 * `runtimeConfig` or `cni.dev/valid-attachments` where they apply. Pure.
 *
 *   {
 *     "cniVersion": "1.0.0", "name": "flatnet", "type": "flatnet",
 *     "agentSocket": "/run/flatnet/agent.sock",   the agent's API socket (default shown)
 *     "namespace": "default",                     endpoint namespace outside Kubernetes
 *     "labels": {"app": "web"},                   endpoint labels outside Kubernetes
 *     "timeoutMs": 30000,                         bound on each call to the agent
 *     "policyWaitMs": 10000,                      ADD waits until the endpoint's policy is enforced (0: don't)
 *     "dns": {...}                                handed back in the result as given
 *   }
 *
 * Unknown keys are refused (code 2) so that a typo does not silently do nothing; keys the
 * spec reserves (`args`, `cni.dev/...`) and the runtime's own are accepted.
 */
import { checkDns1123Label, checkLabelKey, checkLabelValue } from '@flatnet/core'
import { CniConfigError, CniDecodeError, CniUnsupportedFieldError } from './cni-errors.js'
import { requestVersion, type CniVersion } from './versions.js'

export const NET_CONFIG_DEFAULTS = Object.freeze({
  /** The agent's default (AGENT_SOCKET_PATH of @flatnet/agent/client), not imported: VERSION loads no client. */
  agentSocket: '/run/flatnet/agent.sock',
  namespace: 'default',
  timeoutMs: 30_000,
  policyWaitMs: 10_000,
})

export interface ValidAttachment {
  readonly containerId: string
  readonly ifname: string
}

export interface CniDns {
  readonly nameservers?: readonly string[]
  readonly domain?: string
  readonly search?: readonly string[]
  readonly options?: readonly string[]
}

export interface NetConfig {
  readonly cniVersion: CniVersion
  /** The network's name (every command but VERSION has one). */
  readonly name: string
  readonly type: string
  readonly agentSocket: string
  readonly namespace: string
  readonly labels: Readonly<Record<string, string>>
  readonly timeoutMs: number
  readonly policyWaitMs: number
  readonly dns: CniDns | undefined
  /** The result of the previous plugin (ADD in a chain), or the final ADD result (DEL, CHECK). */
  readonly prevResult: Readonly<Record<string, unknown>> | undefined
  /** GC only: the attachments the runtime still has on this network. */
  readonly validAttachments: readonly ValidAttachment[] | undefined
}

/** Keys of the plugin's own (above) and those a runtime may insert. */
const OWN_KEYS = new Set(['cniVersion', 'name', 'type', 'agentSocket', 'namespace', 'labels', 'timeoutMs', 'policyWaitMs', 'dns', 'prevResult', 'runtimeConfig', 'args', 'capabilities'])

/** The spec's network names (libcni's ValidateNetworkName). */
const NETWORK_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

/** Parses standard input; the version alone is checked first so that errors answer in it. */
export function parseJsonObject(text: string): Record<string, unknown> {
  if (text.trim() === '') throw new CniDecodeError('no network configuration on standard input', 'the runtime must send the network configuration as JSON on standard input')
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (err) {
    throw new CniDecodeError('the network configuration on standard input is not valid JSON', `${err instanceof Error ? err.message : String(err)} (${text.length} bytes read)`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CniDecodeError(`the network configuration must be a JSON object, not ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}`)
  return value as Record<string, unknown>
}

function integer(doc: Record<string, unknown>, key: string, min: number, max: number, fallback: number): number {
  const v = doc[key]
  if (v === undefined) return fallback
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new CniConfigError(`invalid network config: ${key} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`)
  return v
}

function labelsOf(v: unknown): Record<string, string> {
  if (v === undefined) return {}
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CniConfigError(`invalid network config: labels must be an object of label keys to values, got ${JSON.stringify(v)}`)
  const out: Record<string, string> = {}
  for (const [k, value] of Object.entries(v)) {
    const bad = checkLabelKey(k) ?? (typeof value === 'string' ? checkLabelValue(value) : 'must be a string')
    if (bad) throw new CniConfigError(`invalid network config: labels.${k}: ${bad}`, `label ${JSON.stringify(k)}: ${JSON.stringify(value)}`)
    out[k] = value as string
  }
  return out
}

function stringList(v: unknown, field: string): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new CniConfigError(`invalid network config: ${field} must be a list of strings`)
  return v as string[]
}

function dnsOf(v: unknown): CniDns | undefined {
  if (v === undefined) return undefined
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new CniConfigError('invalid network config: dns must be an object {nameservers, domain, search, options}')
  const d = v as Record<string, unknown>
  if (d.domain !== undefined && typeof d.domain !== 'string') throw new CniConfigError('invalid network config: dns.domain must be a string')
  const dns: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] } = {}
  const nameservers = stringList(d.nameservers, 'dns.nameservers')
  const search = stringList(d.search, 'dns.search')
  const options = stringList(d.options, 'dns.options')
  if (nameservers) dns.nameservers = nameservers
  if (typeof d.domain === 'string') dns.domain = d.domain
  if (search) dns.search = search
  if (options) dns.options = options
  return dns
}

function validAttachmentsOf(v: unknown): ValidAttachment[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v)) throw new CniConfigError('invalid network config: cni.dev/valid-attachments must be a list of {containerID, ifname}')
  return v.map((a: unknown, i) => {
    const o = a as { containerID?: unknown; ifname?: unknown } | null
    if (typeof o !== 'object' || o === null || typeof o.containerID !== 'string' || typeof o.ifname !== 'string') {
      throw new CniConfigError(`invalid network config: cni.dev/valid-attachments[${i}] must be {"containerID": "...", "ifname": "..."}`, JSON.stringify(a))
    }
    return { containerId: o.containerID, ifname: o.ifname }
  })
}

/**
 * The whole config, checked. `needsName`: every command but VERSION. Errors: CniDecodeError
 * (6), CniVersionError (1), CniUnsupportedFieldError (2), CniConfigError (7).
 */
export function readNetConfig(doc: Record<string, unknown>, options: { needsName: boolean }): NetConfig {
  const cniVersion = requestVersion(doc.cniVersion)
  for (const [key, value] of Object.entries(doc)) {
    if (OWN_KEYS.has(key) || key.startsWith('cni.dev/')) continue
    if (key === 'ipam') throw new CniUnsupportedFieldError(`unsupported field in network config: ipam=${JSON.stringify(value)}`, 'flatnet allocates addresses itself, from the node\'s block; remove "ipam" from the network config')
    throw new CniUnsupportedFieldError(`unsupported field in network config: ${key}=${JSON.stringify(value)}`, `the flatnet plugin knows ${[...OWN_KEYS].join(', ')}`)
  }
  const name = doc.name
  if (options.needsName) {
    if (typeof name !== 'string' || name === '') throw new CniConfigError('invalid network config: missing network name ("name")')
    if (!NETWORK_NAME.test(name)) throw new CniConfigError(`invalid network config: network name ${JSON.stringify(name)} must start with a letter or digit, then letters, digits, "_", "." or "-"`)
  }
  if (options.needsName && (typeof doc.type !== 'string' || doc.type === '')) throw new CniConfigError('invalid network config: missing plugin type ("type")')
  const agentSocket = doc.agentSocket ?? NET_CONFIG_DEFAULTS.agentSocket
  if (typeof agentSocket !== 'string' || !agentSocket.startsWith('/') || Buffer.byteLength(agentSocket) > 107) {
    throw new CniConfigError(`invalid network config: agentSocket must be an absolute path of at most 107 bytes, got ${JSON.stringify(agentSocket)}`)
  }
  const namespace = doc.namespace ?? NET_CONFIG_DEFAULTS.namespace
  const badNs = typeof namespace === 'string' ? checkDns1123Label(namespace) : 'must be a string'
  if (badNs) throw new CniConfigError(`invalid network config: namespace ${JSON.stringify(namespace)} ${badNs}`)
  const prev = doc.prevResult
  if (prev !== undefined && (typeof prev !== 'object' || prev === null || Array.isArray(prev))) throw new CniConfigError('invalid network config: prevResult must be an object')
  return {
    cniVersion,
    name: typeof name === 'string' ? name : '',
    type: typeof doc.type === 'string' ? doc.type : '',
    agentSocket,
    namespace: namespace as string,
    labels: labelsOf(doc.labels),
    timeoutMs: integer(doc, 'timeoutMs', 100, 600_000, NET_CONFIG_DEFAULTS.timeoutMs),
    policyWaitMs: integer(doc, 'policyWaitMs', 0, 600_000, NET_CONFIG_DEFAULTS.policyWaitMs),
    dns: dnsOf(doc.dns),
    prevResult: prev as Record<string, unknown> | undefined,
    validAttachments: validAttachmentsOf(doc['cni.dev/valid-attachments']),
  }
}
