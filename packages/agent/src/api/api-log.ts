/**
 * The logger the API and health servers write to: the subset of a pino logger they use, so the
 * agent passes its `component: 'api'` child logger and tests can pass a silent one.
 */
export interface ApiLog {
  debug(obj: Record<string, unknown>, msg: string): void
  info(obj: Record<string, unknown>, msg: string): void
  warn(obj: Record<string, unknown>, msg: string): void
  error(obj: Record<string, unknown>, msg: string): void
}

const noop = (): void => {}

export const silentApiLog: ApiLog = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop })
