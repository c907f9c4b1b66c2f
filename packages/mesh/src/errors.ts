/** Errors of the control mesh, each with a stable code (listed in docs/errors.md). */
import { FlatnetError } from '@flatnet/core'

/** The mesh node is not running: call start() first (or it was stopped). */
export class MeshNotRunningError extends FlatnetError {
  readonly code = 'ERR_MESH_NOT_RUNNING'
  constructor(what: string) {
    super(`cannot ${what}: the mesh node is not running (start it first)`)
  }
}

/** A peer could be reached neither directly nor through any relay the node is connected to. */
export class MeshPeerUnreachableError extends FlatnetError {
  readonly code = 'ERR_MESH_PEER_UNREACHABLE'
  constructor(
    readonly target: string,
    /** One line per attempt: the address tried and why it failed. */
    readonly attempts: readonly string[],
  ) {
    super(
      `cannot reach ${target} directly or through a relay` +
        (attempts.length === 0 ? ': no address and no relay to try' : `:\n${attempts.map((a) => `  ${a}`).join('\n')}`),
    )
  }
}

export type RecordRejectReason = 'malformed' | 'forged' | 'wrong-peer' | 'not-admitted' | 'stale'

/**
 * A peer's node record arrived over an authenticated connection but was refused: malformed,
 * not signed by the key in its PeerId, for a PeerId other than the connection's remote peer,
 * from a peer that is not admitted, or older than the record already confirmed.
 */
export class MeshRecordRejectedError extends FlatnetError {
  readonly code = 'ERR_MESH_RECORD_REJECTED'
  constructor(
    /** The authenticated remote peer of the connection the record came over. */
    readonly remotePeer: string,
    readonly reason: RecordRejectReason,
    detail: string,
  ) {
    super(`node record from ${remotePeer} refused (${reason}): ${detail}`)
  }
}

export const MESH_ERROR_CODES = ['ERR_MESH_NOT_RUNNING', 'ERR_MESH_PEER_UNREACHABLE', 'ERR_MESH_RECORD_REJECTED'] as const
