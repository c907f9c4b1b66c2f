/**
 * CNI spec versions: which the plugin speaks, which commands each allows, and which result
 * format each expects. Pure.
 */
import { CniVersionError } from './cni-errors.js'

/** Every version the plugin answers, oldest first (VERSION lists them). */
export const SUPPORTED_VERSIONS = Object.freeze(['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const)
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number]

/** The newest version: used when a request names none the plugin could answer in. */
export const CURRENT_VERSION: CniVersion = '1.1.0'

/** What libcni assumes when a config has no cniVersion. */
export const VERSION_WHEN_ABSENT: CniVersion = '0.1.0'

/** The oldest version each command exists in (CHECK came with 0.4.0, STATUS and GC with 1.1.0). */
const COMMAND_SINCE: Readonly<Record<string, CniVersion>> = Object.freeze({ CHECK: '0.4.0', STATUS: '1.1.0', GC: '1.1.0' })

/**
 * Result layouts: `legacy` (0.1.0, 0.2.0: `ip4`/`ip6` objects), `versioned-ips` (0.3.x, 0.4.0:
 * `ips[].version`), `current` (1.x: no `version` in `ips`).
 */
export type ResultFormat = 'legacy' | 'versioned-ips' | 'current'

export function isSupportedVersion(v: unknown): v is CniVersion {
  return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v)
}

/** The version a request speaks, or CniVersionError naming the supported ones. */
export function requestVersion(v: unknown): CniVersion {
  if (v === undefined) return VERSION_WHEN_ABSENT
  if (isSupportedVersion(v)) return v
  throw new CniVersionError(`incompatible CNI versions: config is ${JSON.stringify(v)}, plugin supports ${SUPPORTED_VERSIONS.join(', ')}`, `supported versions: ${JSON.stringify(SUPPORTED_VERSIONS)}`)
}

function compare(a: string, b: string): number {
  const pa = a.split('.').map(Number)
  const pb = b.split('.').map(Number)
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

/** Refuses a command the request's version does not have (as libcni's skel does, with code 1). */
export function checkCommandVersion(command: string, version: CniVersion): void {
  const since = COMMAND_SINCE[command]
  if (since !== undefined && compare(version, since) < 0) {
    throw new CniVersionError(`config version ${version} does not allow ${command}; it needs ${since} or later`)
  }
}

export function resultFormat(version: CniVersion): ResultFormat {
  if (compare(version, '0.3.0') < 0) return 'legacy'
  if (compare(version, '1.0.0') < 0) return 'versioned-ips'
  return 'current'
}
