/**
 * Packets the device dropped, by reason. Counted, never thrown or logged per packet: a flood of
 * garbage must cost one increment each, and the counts are what operators (and metrics) read.
 */
export class DropCounters {
  /** Inside: no peer's AllowedIPs hold the destination. */
  noRoute = 0
  /** Inside: the peer has no endpoint to send to yet. */
  noEndpoint = 0
  /** Inside: waiting for a handshake and the staged queue was full (oldest dropped). */
  stagedOverflow = 0
  /** Inside: not an IPv4/IPv6 packet, or larger than the MTU allows. */
  badInnerPacket = 0
  /** Outside: not a WireGuard message (wrong type, size or reserved bytes). */
  malformed = 0
  /** Outside: handshake message with a bad mac1 (we answer nothing: silence to strangers). */
  badMac1 = 0
  /** Outside: under load without a valid mac2; a cookie reply was sent instead. */
  cookieSent = 0
  /** Outside: too many handshakes from one source address. */
  rateLimited = 0
  /** Outside: a handshake that did not verify (unknown key, replayed timestamp, flood, bad state). */
  handshakeRejected = 0
  /** Outside: transport or response for an index we do not have. */
  unknownIndex = 0
  /** Outside: session older than REJECT_AFTER_TIME. */
  expiredSession = 0
  /** Outside: did not authenticate. */
  authFailed = 0
  /** Outside: counter already seen or behind the window (checked after authentication). */
  replayed = 0
  /** Outside: decrypted packet whose source is not in the sending peer's AllowedIPs. */
  sourceNotAllowed = 0
  /** Outside: a relay link delivered a packet that authenticated as a different peer than the link's. */
  relayPeerMismatch = 0
  /** Sends the kernel refused. */
  sendFailed = 0

  snapshot(): Record<string, number> {
    return { ...this } as unknown as Record<string, number>
  }
}
