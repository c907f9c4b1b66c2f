/**
 * One invocation of the plugin: environment and standard input in, standard output and exit
 * status out. The plugin keeps no state and touches no kernel object: every command is one
 * request to the agent's socket, and the agent does IPAM, veth, routes and the endpoint.
 *
 *   CNI_COMMAND ─> stdin (bounded) ─> JSON ─> version ─> env vars ─> config ─> command
 *     ADD      POST   /v1/cni/attachments      -> Success result in the request's version
 *     DEL      DELETE /v1/cni/attachments/...  -> nothing (also when already gone)
 *     CHECK    POST   /v1/cni/check            -> nothing, or 103 listing what is broken
 *     GC       POST   /v1/cni/gc               -> nothing, or 104 listing what failed
 *     STATUS   GET    /v1/cni/status           -> nothing, or 50 with the agent's reasons
 *     VERSION  (no agent)                      -> {cniVersion, supportedVersions}
 *
 * Any failure is the spec's error JSON on standard output and exit status 1.
 */
import type { AgentProtocolError, AgentRequestError, AgentUnreachableError } from '@flatnet/agent/client'
import type { AttachAnswer, AttachBody, CheckAnswer, CheckBody, GcAnswer, StatusAnswer } from './agent-protocol.js'
import type * as AgentProtocol from './agent-protocol.js'
import { CNI_CODES, CniAgentAnswerError, CniAgentUnreachableError, CniCheckFailedError, CniConfigError, CniError, CniGcFailedError, CniNotReadyError } from './cni-errors.js'
import { readCommand, readEnvironment, type CniCommand, type CniEnvironment } from './environment.js'
import { endpointIdentity } from './identity.js'
import { parseJsonObject, readNetConfig, type NetConfig } from './net-config.js'
import { addResult, resultAddresses } from './result.js'
import { CURRENT_VERSION, SUPPORTED_VERSIONS, checkCommandVersion, isSupportedVersion, type CniVersion } from './versions.js'

export interface PluginOutcome {
  /** What to print on standard output (JSON, or empty). */
  readonly stdout: string
  readonly exitCode: number
  /** Free-form diagnostics for standard error (a bug's stack), or empty. */
  readonly stderr: string
}

export interface PluginInput {
  readonly env: Readonly<Record<string, string | undefined>>
  /** Reads standard input; rejects with CniInputError. */
  readonly readStdin: () => Promise<string>
}

interface ErrorJson {
  cniVersion: string
  code: number
  msg: string
  details?: string
}

function errorOutcome(version: string, err: unknown, command: CniCommand | undefined): PluginOutcome {
  const e = asCniError(err, command)
  const json: ErrorJson = e ? { cniVersion: version, code: e.cniCode, msg: e.message, ...(e.details ? { details: e.details } : {}) } : { cniVersion: version, code: CNI_CODES.agentFailed, msg: `internal error in the flatnet plugin: ${err instanceof Error ? err.message : String(err)}` }
  return { stdout: `${JSON.stringify(json)}\n`, exitCode: 1, stderr: e ? '' : `${err instanceof Error ? err.stack : String(err)}\n` }
}

/**
 * The CNI error for anything a command throws; undefined for a bug. The agent client's errors
 * are told apart by code: the client is loaded only by commands that talk to the agent.
 */
function asCniError(err: unknown, command: CniCommand | undefined): CniError | undefined {
  if (err instanceof CniError) return err
  const code = (err as { code?: unknown } | null)?.code
  if (code === 'ERR_AGENT_UNREACHABLE') {
    const e = err as AgentUnreachableError
    return new CniAgentUnreachableError(`the flatnet agent is not reachable at ${e.socketPath}`, e.reason, command ?? 'ADD')
  }
  if (code === 'ERR_AGENT_PROTOCOL') return new CniAgentAnswerError(code, (err as AgentProtocolError).message, 'the socket does not speak the flatnet agent\'s API')
  if (typeof code === 'string' && typeof (err as { status?: unknown }).status === 'number') {
    const e = err as AgentRequestError
    return new CniAgentAnswerError(e.code, e.message, `the agent answered ${e.code} (HTTP ${e.status})`)
  }
  return undefined
}

/** The agent's client and the plugin's requests (node:http), loaded on first use. */
const agentApi = (): Promise<typeof AgentProtocol> => import('./agent-protocol.js')

export async function runPlugin(input: PluginInput): Promise<PluginOutcome> {
  let version: string = CURRENT_VERSION
  let command: CniCommand | undefined
  try {
    command = readCommand(input.env)
    const text = await input.readStdin()
    // VERSION may come without a config (some tools probe a plugin with </dev/null).
    if (command === 'VERSION' && text.trim() === '') return success(versionAnswer(CURRENT_VERSION))
    const doc = parseJsonObject(text)
    if (isSupportedVersion(doc.cniVersion)) version = doc.cniVersion
    if (command === 'VERSION') return success(versionAnswer(version))
    const env = readEnvironment(input.env)
    const config = readNetConfig(doc, { needsName: true })
    checkCommandVersion(command, config.cniVersion)
    return success(await COMMANDS[command](env, config))
  } catch (err) {
    return errorOutcome(version, err, command)
  }
}

function success(answer: Record<string, unknown> | undefined): PluginOutcome {
  return { stdout: answer === undefined ? '' : `${JSON.stringify(answer)}\n`, exitCode: 0, stderr: '' }
}

function versionAnswer(version: string): Record<string, unknown> {
  return { cniVersion: version, supportedVersions: [...SUPPORTED_VERSIONS] }
}

type Command = (env: CniEnvironment, config: NetConfig) => Promise<Record<string, unknown> | undefined>

const COMMANDS: Readonly<Record<Exclude<CniCommand, 'VERSION'>, Command>> = {
  async ADD(env, config) {
    const identity = endpointIdentity(env.args, env.containerId, config.namespace)
    const body: AttachBody = {
      network: config.name,
      containerId: env.containerId,
      ifname: env.ifname,
      netns: env.netns as string,
      namespace: identity.namespace,
      name: identity.name,
      labels: identity.labelsFrom === 'config' ? config.labels : {},
      labelsFrom: identity.labelsFrom,
      policyWaitMs: config.policyWaitMs,
    }
    const client = (await agentApi()).cniAgentClient(config.agentSocket, config.timeoutMs + config.policyWaitMs)
    const { attachment: a } = await client.post<AttachAnswer>('/v1/cni/attachments', body)
    return addResult(config.cniVersion as CniVersion, { ...a, ifname: env.ifname, netns: env.netns as string }, { dns: config.dns, prevResult: config.prevResult })
  },

  async DEL(env, config) {
    const api = await agentApi()
    await api.cniAgentClient(config.agentSocket, config.timeoutMs).delete(api.attachmentPath(config.name, env.containerId, env.ifname))
    return undefined
  },

  async CHECK(env, config) {
    const body: CheckBody = { network: config.name, containerId: env.containerId, ifname: env.ifname, netns: env.netns as string, ips: resultAddresses(config.prevResult) }
    const answer = await (await agentApi()).cniAgentClient(config.agentSocket, config.timeoutMs).post<CheckAnswer>('/v1/cni/check', body)
    if (!answer.ok) {
      const list = answer.problems.map((p) => `${p.what}: ${p.detail}`)
      throw new CniCheckFailedError(`flatnet attachment ${env.containerId}/${env.ifname} on network ${config.name} is broken: ${list.join('; ')}`, list.join('\n'))
    }
    return undefined
  },

  async GC(_env, config) {
    if (config.validAttachments === undefined) {
      throw new CniConfigError('invalid network config: GC needs cni.dev/valid-attachments', 'without the list every attachment of the network would look stale; nothing was removed')
    }
    const answer = await (await agentApi()).cniAgentClient(config.agentSocket, config.timeoutMs).post<GcAnswer>('/v1/cni/gc', { network: config.name, valid: config.validAttachments })
    if (answer.failed.length > 0) {
      const list = answer.failed.map((f) => `${f.attachment}: ${f.error}`)
      throw new CniGcFailedError(`${answer.failed.length} stale attachment${answer.failed.length === 1 ? '' : 's'} of network ${config.name} could not be removed (${answer.removed.length} removed)`, list.join('\n'))
    }
    return undefined
  },

  async STATUS(_env, config) {
    const answer = await (await agentApi()).cniAgentClient(config.agentSocket, config.timeoutMs).get<StatusAnswer>('/v1/cni/status')
    if (!answer.ready) throw new CniNotReadyError(`the flatnet agent cannot serve ADD yet: ${answer.reasons.join('; ')}`, answer.reasons.join('\n'))
    return undefined
  },
}
