/**
 * loadAgentConfig: defaults < file < environment < flags, field by field, then the values that
 * derive from others, then the checks that span fields. Either every value is valid and the
 * result is frozen, or AgentConfigInvalidError lists every problem; nothing is half-loaded.
 */
import { readFileSync } from 'node:fs'
import { hostname as osHostname } from 'node:os'
import { posix } from 'node:path'
import { checkDns1123Subdomain, type ValidationIssue } from '@flatnet/core'
import { decodeUtf8, quoted } from '@flatnet/policy'
import { AGENT_CONFIG_DEFAULTS, API_SOCKET_NAME, DEFAULT_AGENT_CONFIG_FILE, deepFreeze } from './defaults.js'
import { AgentConfigInvalidError, AgentConfigReadError } from './errors.js'
import { issueAt, namedOrigin, segments, type ConfigLayer, type IssueOrigin } from './layer.js'
import { readEnvironment, readFlags, type AgentConfigFlags, type Environment } from './overrides.js'
import { readConfigText } from './read-file.js'
import type { AgentConfig } from './types.js'
import { checkSocketPath } from './values.js'

/** The environment variable that names the configuration file (as --config does). */
export const CONFIG_FILE_ENV = 'FLATNET_CONFIG'

export interface LoadAgentConfigOptions {
  /** The file to read; a file named here (or by FLATNET_CONFIG) must exist. */
  readonly file?: string | undefined
  /** Default: process.env. */
  readonly env?: Environment | undefined
  readonly flags?: AgentConfigFlags | undefined
}

export interface AgentConfigComponents {
  /** The host name, the default node name. Default: os.hostname(). */
  readonly hostname?: () => string
}

export interface LoadedAgentConfig {
  readonly config: AgentConfig
  /** The file that was read; undefined when the default file does not exist. */
  readonly file: string | undefined
}

export function loadAgentConfig(options: LoadAgentConfigOptions = {}, components: AgentConfigComponents = {}): AgentConfig {
  return loadAgentConfigWithSource(options, components).config
}

/** loadAgentConfig, also telling which file it read (for the agent's start-up log). */
export function loadAgentConfigWithSource(options: LoadAgentConfigOptions = {}, components: AgentConfigComponents = {}): LoadedAgentConfig {
  const env = options.env ?? process.env
  const named = options.file ?? (env[CONFIG_FILE_ENV] || undefined)
  const file = named ?? DEFAULT_AGENT_CONFIG_FILE
  const issues: ValidationIssue[] = []
  const layers: ConfigLayer[] = []

  const text = readConfigFile(file, named !== undefined, issues)
  if (text !== undefined) {
    const fromFile = readConfigText(file, text)
    issues.push(...fromFile.issues)
    layers.push(fromFile.layer)
  }
  for (const result of [readEnvironment(env), readFlags(options.flags ?? {})]) {
    issues.push(...result.issues)
    layers.push(result.layer)
  }
  if (issues.length > 0) throw new AgentConfigInvalidError(issues)

  const merged = mergeLayers(layers)
  const config = build(merged.values)
  resolve(config, merged.origin, components.hostname ?? osHostname, issues)
  checkAcrossFields(config, merged.origin, issues)
  if (issues.length > 0) throw new AgentConfigInvalidError(issues)
  return { config: deepFreeze(config), file: text === undefined ? undefined : file }
}

/** The file's text; undefined when the default file is absent. A named file must be readable. */
function readConfigFile(file: string, named: boolean, issues: ValidationIssue[]): string | undefined {
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (e.code === 'ENOENT' && !named) return undefined
    const reason =
      e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.code === 'EISDIR' ? 'it is a directory, not a file' : e.message
    throw new AgentConfigReadError(file, reason)
  }
  const decoded = decodeUtf8(file, bytes)
  if (decoded.issue) issues.push(decoded.issue)
  return decoded.text ?? ''
}

interface MergedLayers {
  readonly values: ReadonlyMap<string, unknown>
  /** Where the value of a field came from: the last layer that set it, or the defaults. */
  origin(path: string, sub?: readonly (string | number)[]): IssueOrigin
}

/** Later layers win, field by field; a list or a map is replaced whole, never merged. */
function mergeLayers(layers: readonly ConfigLayer[]): MergedLayers {
  const values = new Map<string, unknown>()
  const setBy = new Map<string, ConfigLayer>()
  for (const layer of layers) {
    for (const [path, value] of layer.values) {
      values.set(path, value)
      setBy.set(path, layer)
    }
  }
  return {
    values,
    origin: (path, sub = []) => setBy.get(path)?.where(path, sub) ?? namedOrigin('default', path, sub),
  }
}

/** The defaults with every merged value put in place; a mutable copy, frozen by the caller. */
function build(values: ReadonlyMap<string, unknown>): AgentConfig {
  const config = structuredClone(AGENT_CONFIG_DEFAULTS) as unknown as Record<string, unknown>
  for (const [path, value] of values) {
    const keys = segments(path)
    let target = config
    for (const key of keys.slice(0, -1)) target = target[key] as Record<string, unknown>
    target[keys[keys.length - 1] as string] = structuredClone(value)
  }
  return config as unknown as AgentConfig
}

type Mutable<T> = { -readonly [K in keyof T]: Mutable<T[K]> }

/** Fills in the values left empty to be derived: node name, host endpoint name, API socket. */
function resolve(
  config: AgentConfig,
  origin: (path: string, sub?: readonly (string | number)[]) => IssueOrigin,
  hostname: () => string,
  issues: ValidationIssue[],
): void {
  const c = config as Mutable<AgentConfig>
  if (c.nodeName === '') {
    // Host names are case-insensitive; node names are lower case. A trailing dot (FQDN) is dropped.
    const host = hostname().trim().toLowerCase().replace(/\.$/, '')
    const bad = checkDns1123Subdomain(host)
    if (bad) {
      const why = `is empty, so the node would be named after the host name ${quoted(host)}, which ${bad}`
      issues.push(issueAt(origin('nodeName'), `${why}: set nodeName (or FLATNET_NODE_NAME, --node-name)`))
    } else c.nodeName = host
  }
  if (c.hostEndpoint.name === '') c.hostEndpoint.name = c.nodeName
  if (c.api.socket === '') {
    const socket = posix.join(c.runDir, API_SOCKET_NAME)
    const bad = checkSocketPath(socket)
    // Blame runDir: api.socket was left to follow it.
    if (bad) issues.push(issueAt(origin('runDir'), `the API socket would be ${socket}, but ${bad}: choose a shorter runDir or set api.socket`))
    else c.api.socket = socket
  }
}

function describe(o: IssueOrigin): string {
  return o.line > 0 ? `${o.file}:${o.line}:${o.column}` : o.file
}

function checkAcrossFields(config: AgentConfig, origin: (path: string, sub?: readonly (string | number)[]) => IssueOrigin, issues: ValidationIssue[]): void {
  if (config.join.token !== '' && config.join.tokenFile !== '') {
    issues.push(issueAt(origin('join.token'), `join.token and join.tokenFile are both set (join.tokenFile by ${describe(origin('join.tokenFile'))}); set only one`))
  }
  if (config.reconnect.maxMs < config.reconnect.minMs) {
    issues.push(issueAt(origin('reconnect.maxMs'), `must be at least reconnect.minMs (${config.reconnect.minMs}), got ${config.reconnect.maxMs}`))
  }
  if (config.hostEndpoint.enabled) {
    const host = `${config.hostEndpoint.namespace}/${config.hostEndpoint.name}`
    config.workloads.forEach((w, i) => {
      if (`${w.namespace}/${w.name}` === host) {
        issues.push(issueAt(origin('workloads', [i, 'name']), `workload ${host} has the name of this host's own endpoint (hostEndpoint); rename one of them`))
      }
    })
  }
}
