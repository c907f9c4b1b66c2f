/**
 * The CNI_* environment variables of one invocation, checked as the spec and libcni's skel
 * check them: every missing or malformed variable is named, in one error (code 4). Pure.
 */
import { CniEnvironmentError } from './cni-errors.js'

export const CNI_COMMANDS = Object.freeze(['ADD', 'DEL', 'CHECK', 'VERSION', 'STATUS', 'GC'] as const)
export type CniCommand = (typeof CNI_COMMANDS)[number]

export interface CniEnvironment {
  readonly command: CniCommand
  /** ADD, DEL, CHECK. */
  readonly containerId: string
  /** ADD, CHECK; optional on DEL (the namespace may be gone). */
  readonly netns: string | undefined
  /** ADD, DEL, CHECK. */
  readonly ifname: string
  /** CNI_ARGS, `K1=V1;K2=V2`. */
  readonly args: ReadonlyMap<string, string>
}

const REQUIRED: Readonly<Record<CniCommand, readonly string[]>> = Object.freeze({
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  VERSION: [],
  STATUS: [],
  GC: [],
})

/** Container IDs as the spec allows them. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/

export function isCniCommand(c: unknown): c is CniCommand {
  return typeof c === 'string' && (CNI_COMMANDS as readonly string[]).includes(c)
}

/** Why `name` cannot be a Linux interface name (the spec's rules), or undefined. */
export function interfaceNameProblem(name: string): string | undefined {
  if (name === '') return 'is empty'
  if (Buffer.byteLength(name) > 15) return 'is longer than 15 bytes'
  if (name === '.' || name === '..') return 'is "." or ".."'
  if (/[/:\s]/.test(name)) return 'contains "/", ":" or white space'
  return undefined
}

/** `K1=V1;K2=V2` (empty pieces are skipped; a piece without `=` is an error). */
export function parseCniArgs(text: string): Map<string, string> {
  const args = new Map<string, string>()
  for (const piece of text.split(';')) {
    if (piece === '') continue
    const eq = piece.indexOf('=')
    if (eq <= 0) throw new CniEnvironmentError(`invalid CNI_ARGS: "${piece}" is not KEY=VALUE`, `CNI_ARGS=${JSON.stringify(text)}`)
    args.set(piece.slice(0, eq), piece.slice(eq + 1))
  }
  return args
}

/** The command alone: a missing or unknown CNI_COMMAND is refused before anything is read. */
export function readCommand(env: Readonly<Record<string, string | undefined>>): CniCommand {
  const command = env.CNI_COMMAND
  if (command === undefined || command === '') throw new CniEnvironmentError('missing environment variable CNI_COMMAND', `set CNI_COMMAND to one of ${CNI_COMMANDS.join(', ')}`)
  if (!isCniCommand(command)) throw new CniEnvironmentError(`unknown CNI_COMMAND: ${JSON.stringify(command)}`, `CNI_COMMAND must be one of ${CNI_COMMANDS.join(', ')}`)
  return command
}

export function readEnvironment(env: Readonly<Record<string, string | undefined>>): CniEnvironment {
  const command = readCommand(env)
  const missing = REQUIRED[command].filter((name) => env[name] === undefined || env[name] === '')
  if (missing.length > 0) {
    throw new CniEnvironmentError(`missing environment variable${missing.length > 1 ? 's' : ''} ${missing.join(', ')}`, `${command} needs ${REQUIRED[command].join(', ')}`)
  }
  const containerId = env.CNI_CONTAINERID ?? ''
  const ifname = env.CNI_IFNAME ?? ''
  const netns = env.CNI_NETNS === '' ? undefined : env.CNI_NETNS
  const problems: string[] = []
  if (containerId !== '' && !CONTAINER_ID.test(containerId)) problems.push(`CNI_CONTAINERID ${JSON.stringify(containerId)} must start with a letter or digit, then letters, digits, "_", "." or "-"`)
  if (ifname !== '') {
    const bad = interfaceNameProblem(ifname)
    if (bad) problems.push(`CNI_IFNAME ${JSON.stringify(ifname)} ${bad}`)
  }
  if (netns !== undefined && !netns.startsWith('/')) problems.push(`CNI_NETNS ${JSON.stringify(netns)} must be an absolute path (e.g. /run/netns/<name>)`)
  if (problems.length > 0) throw new CniEnvironmentError(`invalid environment variable${problems.length > 1 ? 's' : ''}: ${problems.join('; ')}`)
  const args = env.CNI_ARGS === undefined ? new Map<string, string>() : parseCniArgs(env.CNI_ARGS)
  return { command, containerId, netns, ifname, args }
}
