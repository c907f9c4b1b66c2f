/**
 * Constants fixed by the WireGuard protocol (whitepaper §5 and §6). Changing any of them breaks
 * interoperability with other WireGuard implementations; knobs of this implementation live in
 * tuning.ts instead.
 *
 * Durations are in milliseconds (the `_MS` suffix says so), because every `now` this package
 * takes is a millisecond clock.
 */

export const NOISE_CONSTRUCTION = 'Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s'
export const WG_IDENTIFIER = 'WireGuard v1 zx2c4 Jason@zx2c4.com'
export const WG_LABEL_MAC1 = 'mac1----'
export const WG_LABEL_COOKIE = 'cookie--'

export const MESSAGE_INITIATION_TYPE = 1
export const MESSAGE_RESPONSE_TYPE = 2
export const MESSAGE_COOKIE_REPLY_TYPE = 3
export const MESSAGE_TRANSPORT_TYPE = 4

export const KEY_SIZE = 32
export const HASH_SIZE = 32
export const MAC_SIZE = 16
export const AEAD_TAG_SIZE = 16
export const TIMESTAMP_SIZE = 12
export const COOKIE_SIZE = 16
export const COOKIE_NONCE_SIZE = 24

export const MESSAGE_INITIATION_SIZE = 148
export const MESSAGE_RESPONSE_SIZE = 92
export const MESSAGE_COOKIE_REPLY_SIZE = 64
export const MESSAGE_TRANSPORT_HEADER_SIZE = 16
/** An empty transport message: header and tag. A keepalive is exactly this. */
export const MESSAGE_TRANSPORT_MIN_SIZE = MESSAGE_TRANSPORT_HEADER_SIZE + AEAD_TAG_SIZE
export const MESSAGE_KEEPALIVE_SIZE = MESSAGE_TRANSPORT_MIN_SIZE
/** Largest UDP payload a transport message may fill. */
export const MAX_MESSAGE_SIZE = 65535
export const MAX_CONTENT_SIZE = MAX_MESSAGE_SIZE - MESSAGE_TRANSPORT_MIN_SIZE
/** Transport plaintext is zero-padded to a multiple of this, so lengths leak less. */
export const PADDING_MULTIPLE = 16

export const MESSAGE_TRANSPORT_OFFSET_RECEIVER = 4
export const MESSAGE_TRANSPORT_OFFSET_COUNTER = 8
export const MESSAGE_TRANSPORT_OFFSET_CONTENT = 16

export const REKEY_AFTER_MESSAGES = 2 ** 60
/** 2^64 - 2^13 - 1: not representable as a double, hence bigint. */
export const REJECT_AFTER_MESSAGES = (1n << 64n) - (1n << 13n) - 1n
export const REKEY_AFTER_TIME_MS = 120_000
export const REJECT_AFTER_TIME_MS = 180_000
export const REKEY_ATTEMPT_TIME_MS = 90_000
export const REKEY_TIMEOUT_MS = 5_000
export const REKEY_TIMEOUT_JITTER_MAX_MS = 334
/** Handshake retransmissions allowed before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME_MS / REKEY_TIMEOUT_MS
export const KEEPALIVE_TIMEOUT_MS = 10_000
export const COOKIE_REFRESH_TIME_MS = 120_000
/** Initiations from one peer closer together than this are dropped as a flood (1/50 s). */
export const HANDSHAKE_INITIATION_RATE_MS = 20
/**
 * The receiving side of an initiator-owned session asks for a new handshake once the session is
 * this old, so a fresh one is ready before REJECT_AFTER_TIME (Linux's REKEY_AFTER_TIME_RECV).
 */
export const REKEY_AFTER_TIME_RECEIVING_MS = REJECT_AFTER_TIME_MS - KEEPALIVE_TIMEOUT_MS - REKEY_TIMEOUT_MS

/** Size of the receive replay bitmap in bits, and the usable window (one 64-bit word less). */
export const REPLAY_BITMAP_BITS = 8192
export const REPLAY_WINDOW_SIZE = REPLAY_BITMAP_BITS - 64
