/** `host:port` addresses for the agent's TCP listeners (metrics and health). Pure. */
import { InvalidArgumentError } from '@flatnet/core'

export interface ListenAddress {
  readonly host: string
  readonly port: number
}

/**
 * `127.0.0.1:9469`, `[::1]:9469`, `0.0.0.0:9469`; port 0 picks a free port. An empty string
 * means "disabled" (undefined). `field` names the setting in the error.
 */
export function parseListenAddress(text: string, field: string): ListenAddress | undefined {
  const t = text.trim()
  if (t === '') return undefined
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(t)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535) {
    throw new InvalidArgumentError(`${field}: "${text}" is not a listen address; write host:port (e.g. 127.0.0.1:9469, [::1]:9469), or leave it empty to disable`)
  }
  return { host: (m[1] ?? m[2]) as string, port }
}

export function formatListenAddress(a: ListenAddress): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`
}
