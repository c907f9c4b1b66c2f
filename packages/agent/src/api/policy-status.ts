/**
 * What an agent reports to the store (`store.setStatus(nodeName, record)`) about the policy it
 * enforces, and how readers (`flatnet policy status`) read it back. Readers are lenient: a
 * report written by another version, or by hand, shows up as a problem on its own line and does
 * not hide the other nodes.
 *
 * Pure (no imports): loaded by the CLI through `@flatnet/agent/client`.
 */

export interface NodePolicyStatus {
  /** The store revision whose policy state the node enforces: its last successful apply. */
  readonly revision: number
  /** When that apply finished (ISO 8601, the node's clock). */
  readonly appliedAt: string
  /**
   * The newest store revision the node has seen. Greater than `revision` while an apply is
   * pending or failing; absent means the same as `revision`.
   */
  readonly observedRevision?: number
  /** When the node first saw `observedRevision` (ISO 8601). */
  readonly observedAt?: string
  /** When the node wrote this report (ISO 8601). Agents refresh it periodically: an old one means a silent node. */
  readonly reportedAt?: string
  /** Why `observedRevision` is not applied, when the last apply failed. */
  readonly error?: string
  readonly hostname?: string
  /** The node's PeerId, which names its Node record (the report itself may be keyed by node name). */
  readonly peerId?: string
  /** The agent's version. */
  readonly version?: string
}

/** The plain object to hand to `store.setStatus` (no undefined fields). */
export function nodePolicyStatusRecord(status: NodePolicyStatus): Record<string, unknown> {
  return Object.fromEntries(Object.entries(status).filter(([, v]) => v !== undefined))
}

export type ReadStatus = { readonly status: NodePolicyStatus; readonly problem?: undefined } | { readonly status?: undefined; readonly problem: string }

const isRevision = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v))

/**
 * Reads one stored report. `revision` and `appliedAt` are required; optional fields of the wrong
 * type are dropped rather than failing the report; unknown fields are ignored.
 */
export function readNodePolicyStatus(raw: unknown): ReadStatus {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return { problem: 'the report is not an object' }
  const r = raw as Record<string, unknown>
  if (!isRevision(r.revision)) return { problem: `revision must be a non-negative integer, got ${JSON.stringify(r.revision)}` }
  if (!isTime(r.appliedAt)) return { problem: `appliedAt must be an ISO 8601 time, got ${JSON.stringify(r.appliedAt)}` }
  const status: NodePolicyStatus = {
    revision: r.revision,
    appliedAt: r.appliedAt,
    ...(isRevision(r.observedRevision) ? { observedRevision: r.observedRevision } : {}),
    ...(isTime(r.observedAt) ? { observedAt: r.observedAt } : {}),
    ...(isTime(r.reportedAt) ? { reportedAt: r.reportedAt } : {}),
    ...(typeof r.error === 'string' && r.error !== '' ? { error: r.error } : {}),
    ...(typeof r.hostname === 'string' && r.hostname !== '' ? { hostname: r.hostname } : {}),
    ...(typeof r.peerId === 'string' && r.peerId !== '' ? { peerId: r.peerId } : {}),
    ...(typeof r.version === 'string' && r.version !== '' ? { version: r.version } : {}),
  }
  return { status }
}
