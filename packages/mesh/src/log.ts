/**
 * The logger the mesh writes to: the subset of a pino logger it uses, so the agent can pass its
 * `component: 'mesh'` child logger and the mesh needs no logging dependency of its own.
 */
export interface MeshLog {
  debug(obj: Record<string, unknown>, msg: string): void
  info(obj: Record<string, unknown>, msg: string): void
  warn(obj: Record<string, unknown>, msg: string): void
}

const noop = (): void => {}

export const silentLog: MeshLog = Object.freeze({ debug: noop, info: noop, warn: noop })
