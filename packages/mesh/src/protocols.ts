/** Protocol ids and wire limits of the flatnet control mesh (documented in docs/mesh.md). */

/** Node-record exchange: each side sends its signed record once per connection. */
export const PEER_PROTOCOL = '/flatnet/peer/1.0.0'

/** Relay fallback for WireGuard: a one-way stream of length-prefixed opaque datagrams. */
export const WG_RELAY_PROTOCOL = '/flatnet/wg-relay/1.0.0'

/** A signed record is well under 8 KiB (16 endpoints, 64 blocks, 64 labels); anything larger is refused unread. */
export const MAX_RECORD_BYTES = 64 * 1024

/** Frame lengths are 16-bit: a UDP payload never exceeds 65,507 bytes, so one frame fits any WireGuard message. */
export const MAX_DATAGRAM_BYTES = 0xffff

/** First byte of every wg-relay stream; bump when the framing changes. */
export const WG_RELAY_VERSION = 1

/** version (1 byte) + sender epoch (uint32, big endian). */
export const WG_RELAY_HEADER_BYTES = 5
