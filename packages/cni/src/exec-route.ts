/**
 * The agent's side of the native front end (native/flatnet-cni-shim.c): a CNI call handed over
 * as it came (the CNI_* environment and standard input), run by the same `runPlugin` the Node
 * plugin runs, answered with what the plugin would have printed and its exit status.
 *
 *   POST /v1/cni/exec   {"env": {"CNI_COMMAND": "ADD", ...}, "stdin": "<base64>"}
 *                    -> {"exitCode": 0, "stdout": "<base64>", "stderr": "<base64>"}
 *
 * Base64 both ways: standard input may be anything a runtime sends (garbage included, which
 * the plugin must answer with the spec's error), and the front end decodes no JSON escapes.
 * The plugin reaches the agent named by its network config over that agent's socket, exactly
 * as from its own process; this route only saves the process start.
 */
import type { ApiRoutes } from '@flatnet/agent'
import { CniExecRequestError } from './cni-errors.js'
import { runPlugin } from './plugin.js'

export const CNI_EXEC_PATH = '/v1/cni/exec'

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/

function execRequest(body: unknown): { env: Record<string, string>; stdin: string } {
  const o = body as { env?: unknown; stdin?: unknown } | null | undefined
  if (typeof o !== 'object' || o === null) throw new CniExecRequestError('the body must be {env, stdin}')
  if (typeof o.env !== 'object' || o.env === null || Array.isArray(o.env)) throw new CniExecRequestError('env must be an object of CNI_* variables')
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(o.env as Record<string, unknown>)) {
    if (!name.startsWith('CNI_')) throw new CniExecRequestError(`env.${name}: only CNI_* variables are handed over`)
    if (typeof value !== 'string') throw new CniExecRequestError(`env.${name} must be a string`)
    env[name] = value
  }
  if (typeof o.stdin !== 'string' || o.stdin.length % 4 !== 0 || !BASE64.test(o.stdin)) throw new CniExecRequestError('stdin must be base64')
  return { env, stdin: Buffer.from(o.stdin, 'base64').toString('utf8') }
}

/** The route `flatnet agent run` adds to the agent's local API. */
export function cniExecRoutes(): ApiRoutes {
  return {
    [`POST ${CNI_EXEC_PATH}`]: async (req) => {
      const { env, stdin } = execRequest(req.body)
      const outcome = await runPlugin({ env, readStdin: () => Promise.resolve(stdin) })
      const b64 = (text: string): string => Buffer.from(text, 'utf8').toString('base64')
      return { exitCode: outcome.exitCode, stdout: b64(outcome.stdout), stderr: b64(outcome.stderr) }
    },
  }
}
