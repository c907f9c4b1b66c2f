/**
 * Knobs of this implementation, not of the protocol: changing them alters memory use, latency
 * and throughput but never what goes on the wire. Protocol constants are in constants.ts.
 * Starting values follow wireguard-go's defaults for Linux where it has one.
 */

/** Packets moved per batched syscall (recvmmsg/sendmmsg) and per JS call into the addon. */
export const BATCH_SIZE = 64
/** Largest datagram or TUN read a pooled buffer must hold. */
export const MAX_SEGMENT_SIZE = 65535
/** Buffers preallocated per pool; a pool that runs dry drops rather than allocating. */
export const BUFFERS_PER_POOL = 4096

/** Bound of the queue of packets waiting to be encrypted and sent; beyond it packets are dropped. */
export const QUEUE_OUTBOUND_SIZE = 1024
/** Bound of the queue of received packets waiting to be decrypted. */
export const QUEUE_INBOUND_SIZE = 1024
/** Bound of the queue of handshake messages waiting to be processed. */
export const QUEUE_HANDSHAKE_SIZE = 1024
/** Packets a peer keeps while it has no session yet (sent once a handshake completes). */
export const QUEUE_STAGED_SIZE = 128

/**
 * The device counts as under load (answers initiations without a valid mac2 with a cookie
 * reply) while its handshake queue is at least this full...
 */
export const UNDER_LOAD_QUEUE_FRACTION = 1 / 8
/** ...and for this long after it last was. */
export const UNDER_LOAD_AFTER_TIME_MS = 1_000

/** Handshakes per second one source IP may start, and the burst it may save up. */
export const HANDSHAKES_PER_SECOND_PER_IP = 20
export const HANDSHAKE_BURST_PER_IP = 5

/** Peers one device accepts. */
export const MAX_PEERS = 1 << 16

/**
 * Relay fallback (relay-path.ts): a peer moves to its relay link once this many handshake
 * retransmits went unanswered on the direct path (one lost initiation, e.g. to a peer that is
 * still being configured, is not enough), or at once when data got no answer in time.
 */
export const RELAY_AFTER_HANDSHAKE_RETRANSMITS = 2
/**
 * While a peer is relayed, its direct endpoint is probed with a
 * keepalive this often; the first authenticated packet that arrives there moves it back.
 */
export const RELAY_DIRECT_PROBE_INTERVAL_MS = 5_000
/**
 * For this long after an authenticated packet arrived on a peer's direct path, relayed packets
 * from it do not move it to the relay: datagrams still in flight on the relay after a switch
 * back to direct must not pull the peer back.
 */
export const DIRECT_PATH_FRESH_MS = 3_000
