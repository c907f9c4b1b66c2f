/**
 * `flatnet lab env`: shell assignments that point flatnet at a running lab, e.g.
 * `eval "$(flatnet lab env)"`. `lab up` stores them in the state file (FLATNET_REDIS_URL once
 * its Redis runs); FLATNET_LAB_STATE_DIR is always there.
 */
import { InvalidArgumentError } from '@flatnet/core'
import { DEFAULT_LAB_STATE_DIR, LabNotFoundError, readLabState } from './state.js'

export function labEnv(stateDir: string = DEFAULT_LAB_STATE_DIR): Record<string, string> {
  const state = readLabState(stateDir)
  if (!state) throw new LabNotFoundError(stateDir)
  return { FLATNET_LAB_STATE_DIR: state.stateDir, ...state.env }
}

/** POSIX shell: `export NAME='value'` lines, values single-quoted (a ' inside becomes '\''). */
export function formatShellEnv(vars: Readonly<Record<string, string>>): string {
  return Object.entries(vars)
    .map(([name, value]) => {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new InvalidArgumentError(`"${name}" is not a shell variable name`)
      return `export ${name}='${value.replaceAll("'", `'\\''`)}'`
    })
    .join('\n')
}
