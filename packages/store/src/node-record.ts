/**
 * Node records: what a node says about itself (WireGuard key, endpoints, blocks, labels), signed
 * with its Ed25519 libp2p key. The PeerId embeds the public key, so a record carries everything
 * needed to check it: no key distribution, and nothing written to Redis by someone else can pass
 * as a node's own word.
 *
 *   signed bytes = NODE_RECORD_DOMAIN + canonicalJson(record)
 *
 * The domain prefix keeps a node-record signature from being valid for any other message the
 * same key signs (and the reverse).
 *
 * Pure: no Redis here, so agents can verify what they read without a registry.
 */
import { FlatnetError, checkDns1123Subdomain, checkLabelKey, checkLabelValue, formatIp, parseCidr, parseIp } from '@flatnet/core'
import type { privateKeyToProtobuf } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey, peerIdFromString } from '@libp2p/peer-id'
import { canonicalJson } from './canonical-json.js'

/** A libp2p private key (the type is spelled through a function the package already imports). */
export type NodePrivateKey = Parameters<typeof privateKeyToProtobuf>[0]

export const NODE_RECORD_DOMAIN = 'flatnet-node-record/v1\n'

export const NODE_RECORD_LIMITS = Object.freeze({
  endpoints: 16,
  blocks: 64,
  meshAddrs: 16,
  labels: 64,
  /** Sequences are compared as Lua numbers (doubles) in Redis: stay exact. */
  maxSequence: Number.MAX_SAFE_INTEGER,
})

export interface NodeRecord {
  /** The node's Ed25519 libp2p PeerId, in its canonical base58 form (12D3KooW...). */
  readonly peerId: string
  /** Base64 of the 32-byte WireGuard public key. */
  readonly wireguardPublicKey: string
  /** Where peers can reach the node's WireGuard: 'host:port' or '[v6]:port'. */
  readonly endpoints: readonly string[]
  /** IPAM blocks the node routes (CIDRs); each must be assigned to this node. */
  readonly blocks: readonly string[]
  /**
   * Where other agents dial the node's mesh: multiaddrs without the `/p2p/<id>` suffix (the
   * record's own peerId is it), e.g. `/ip4/192.0.2.10/tcp/7946`. Optional: absent in records of
   * nodes that are only reachable by dialling out.
   */
  readonly meshAddrs?: readonly string[]
  readonly labels: Readonly<Record<string, string>>
  readonly hostname?: string
  /** ISO 8601 time the node signed the record. */
  readonly issuedAt: string
  /** Must be greater than the stored record's on every re-publish: an old record cannot be replayed. */
  readonly sequence: number
}

export interface SignedNodeRecord {
  readonly record: NodeRecord
  /** Base64 Ed25519 signature over NODE_RECORD_DOMAIN + canonicalJson(record). */
  readonly signature: string
}

export type AdmittedBy = 'approval' | `token:${string}`

/** The value of a store object of kind 'Node' (key = peerId). */
export interface NodeValue extends SignedNodeRecord {
  readonly admitted: boolean
  readonly admittedBy: AdmittedBy | null
}

/** A node record (or a stored Node value) is malformed; `issues` lists every problem found. */
export class NodeRecordInvalidError extends FlatnetError {
  readonly code = 'ERR_NODE_RECORD_INVALID'
  override readonly exitCode = 2
  constructor(
    readonly issues: readonly string[],
    what = 'node record',
  ) {
    super(`invalid ${what}: ${issues.length === 1 ? issues[0] : `${issues.length} problems:\n${issues.map((i) => `  ${i}`).join('\n')}`}`)
  }
}

/** The signature does not verify with the public key embedded in the record's PeerId. */
export class NodeRecordForgedError extends FlatnetError {
  readonly code = 'ERR_NODE_RECORD_FORGED'
  constructor(readonly peerId: string) {
    super(`node record for ${peerId} is not signed by that node's key: the signature does not verify with the public key in the PeerId (signed by another key, or altered after signing); refused`)
  }
}

/** The record is well formed and genuine, but the node has not been admitted (approved or joined with a token). */
export class NodeNotAdmittedError extends FlatnetError {
  readonly code = 'ERR_NODE_NOT_ADMITTED'
  constructor(readonly peerId: string) {
    super(`node ${peerId} is not admitted: approve it (flatnet node approve ${peerId}) or let it join with a join token`)
  }
}

const TOP_FIELDS = new Set(['peerId', 'wireguardPublicKey', 'endpoints', 'blocks', 'meshAddrs', 'labels', 'hostname', 'issuedAt', 'sequence'])
const VALUE_FIELDS = new Set(['record', 'signature', 'admitted', 'admittedBy'])
const SIGNED_FIELDS = new Set(['record', 'signature'])
const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/
const TOKEN_ID = /^[a-z0-9]{6,32}$/

const isPlainObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)

/** Decodes strict (canonical, padded) base64; undefined when `text` is anything else. */
function decodeBase64(text: string): Buffer | undefined {
  if (!BASE64.test(text) || text.length % 4 !== 0) return undefined
  const bytes = Buffer.from(text, 'base64')
  return bytes.toString('base64') === text ? bytes : undefined
}

/**
 * Checks that `id` is an Ed25519 PeerId in canonical form; returns a reason otherwise. Other key
 * types are refused: RSA ids do not embed their key, and one key type keeps one way to verify.
 */
export function checkNodePeerId(id: unknown): string | undefined {
  if (typeof id !== 'string' || id.length === 0) return 'must be a PeerId string'
  let parsed: ReturnType<typeof peerIdFromString>
  try {
    parsed = peerIdFromString(id)
  } catch (err) {
    return `"${id}" is not a PeerId (${(err as Error).message})`
  }
  if (parsed.type !== 'Ed25519') return `"${id}" is a ${parsed.type} PeerId; node ids must be Ed25519 PeerIds (12D3KooW...)`
  const canonical = parsed.toString()
  if (canonical !== id) return `"${id}" is not in canonical form: write it as ${canonical}`
  return undefined
}

/** 'host:port' with a DNS name or IPv4 address, or '[v6]:port'; returns a reason when it is not. */
function checkEndpoint(text: string): string | undefined {
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text)
  if (!m) return `"${text}" is not 'host:port' or '[ipv6]:port'`
  const port = Number(m[3])
  if (!/^[1-9]\d*$/.test(m[3] as string) || port > 65535) return `"${text}": port must be 1 to 65535 without leading zeros`
  if (m[1] !== undefined) {
    const ip = parseIp(m[1])
    if (!ip || ip.family !== 6) return `"${text}": "${m[1]}" is not an IPv6 address`
    if (formatIp(ip) !== m[1]) return `"${text}": write the address as [${formatIp(ip)}]`
    return undefined
  }
  const host = m[2] as string
  if (/^[0-9.]+$/.test(host)) {
    const ip = parseIp(host)
    return ip ? undefined : `"${text}": "${host}" is not an IPv4 address`
  }
  const bad = checkDns1123Subdomain(host)
  return bad ? `"${text}": host "${host}" ${bad}` : undefined
}

/** A TCP multiaddr (the mesh's transport) without a PeerId; the full parse happens where it is dialled. */
function checkMeshAddr(text: string): string | undefined {
  if (text.length > 256) return 'is longer than 256 characters'
  if (!/^\/(ip4|ip6|dns|dns4|dns6)\/[^/]+\/tcp\/\d{1,5}$/.test(text)) return `"${text}" is not a TCP multiaddr such as /ip4/192.0.2.10/tcp/7946`
  const port = Number(text.slice(text.lastIndexOf('/') + 1))
  return port >= 1 && port <= 65535 ? undefined : `"${text}": port must be 1 to 65535`
}

function checkBlock(text: string): string | undefined {
  const c = parseCidr(text)
  if (!c) return `"${text}" is not a CIDR`
  if (c.hostBitsSet) return `"${text}" has host bits set`
  const canonical = `${formatIp(c.network)}/${c.prefix}`
  return canonical === text ? undefined : `"${text}": write it as ${canonical}`
}

function stringList(v: unknown, field: string, max: number, check: (s: string) => string | undefined, issues: string[]): string[] {
  if (!Array.isArray(v)) {
    issues.push(`${field}: must be an array of strings`)
    return []
  }
  if (v.length > max) issues.push(`${field}: at most ${max} entries, not ${v.length}`)
  const seen = new Set<string>()
  v.forEach((s: unknown, i) => {
    if (typeof s !== 'string') return issues.push(`${field}[${i}]: must be a string`)
    const bad = check(s)
    if (bad) issues.push(`${field}[${i}]: ${bad}`)
    else if (seen.has(s)) issues.push(`${field}[${i}]: "${s}" is listed twice`)
    seen.add(s)
  })
  return v as string[]
}

/**
 * Validates every field of a node record strictly (unknown fields included) and returns it.
 * Nothing is normalised: a record that would need normalising is refused, because the signature
 * covers the text as sent.
 */
export function validateNodeRecord(input: unknown): NodeRecord {
  if (!isPlainObject(input)) throw new NodeRecordInvalidError(['must be an object'])
  const issues: string[] = []
  for (const k of Object.keys(input)) if (!TOP_FIELDS.has(k)) issues.push(`${k}: unknown field`)

  const peerBad = checkNodePeerId(input.peerId)
  if (peerBad) issues.push(`peerId: ${peerBad}`)

  const wg = input.wireguardPublicKey
  if (typeof wg !== 'string') issues.push('wireguardPublicKey: must be a base64 string')
  else {
    const bytes = decodeBase64(wg)
    if (!bytes || bytes.length !== 32) issues.push(`wireguardPublicKey: "${wg}" is not base64 of 32 bytes`)
    else if (bytes.every((b) => b === 0)) issues.push('wireguardPublicKey: the all-zero key is not a WireGuard public key')
  }

  stringList(input.endpoints, 'endpoints', NODE_RECORD_LIMITS.endpoints, checkEndpoint, issues)
  stringList(input.blocks, 'blocks', NODE_RECORD_LIMITS.blocks, checkBlock, issues)
  if (input.meshAddrs !== undefined) stringList(input.meshAddrs, 'meshAddrs', NODE_RECORD_LIMITS.meshAddrs, checkMeshAddr, issues)

  if (!isPlainObject(input.labels)) issues.push('labels: must be an object of string values')
  else {
    const entries = Object.entries(input.labels)
    if (entries.length > NODE_RECORD_LIMITS.labels) issues.push(`labels: at most ${NODE_RECORD_LIMITS.labels}, not ${entries.length}`)
    for (const [k, v] of entries) {
      const badKey = checkLabelKey(k)
      if (badKey) issues.push(`labels: key "${k}": ${badKey}`)
      if (typeof v !== 'string') issues.push(`labels.${k}: must be a string`)
      else {
        const badValue = checkLabelValue(v)
        if (badValue) issues.push(`labels.${k}: "${v}" ${badValue}`)
      }
    }
  }

  if (input.hostname !== undefined) {
    if (typeof input.hostname !== 'string') issues.push('hostname: must be a string')
    else {
      const bad = checkDns1123Subdomain(input.hostname)
      if (bad) issues.push(`hostname: "${input.hostname}" ${bad}`)
    }
  }

  const at = input.issuedAt
  if (typeof at !== 'string' || !ISO_TIME.test(at) || Number.isNaN(Date.parse(at))) {
    issues.push(`issuedAt: must be an ISO 8601 time such as 2024-05-01T12:00:00.000Z, not ${JSON.stringify(at)}`)
  }

  const seq = input.sequence
  if (typeof seq !== 'number' || !Number.isInteger(seq) || seq < 1 || seq > NODE_RECORD_LIMITS.maxSequence) {
    issues.push(`sequence: must be an integer from 1 to ${NODE_RECORD_LIMITS.maxSequence}, not ${JSON.stringify(seq)}`)
  }

  if (issues.length > 0) throw new NodeRecordInvalidError(issues)
  return input as unknown as NodeRecord
}

/** The exact bytes a node record's signature covers. */
export function nodeRecordSigningBytes(record: NodeRecord): Uint8Array {
  return Buffer.from(NODE_RECORD_DOMAIN + canonicalJson(record), 'utf8')
}

export interface NodeRecordFields {
  readonly wireguardPublicKey: string
  readonly endpoints: readonly string[]
  readonly blocks: readonly string[]
  readonly meshAddrs?: readonly string[]
  readonly labels?: Readonly<Record<string, string>>
  readonly hostname?: string
  readonly sequence: number
  /** Defaults to now. */
  readonly issuedAt?: string
}

/**
 * Builds and signs the record of the node whose key this is (peerId taken from the key). Throws
 * NodeRecordInvalidError when a field is malformed or the key is not Ed25519.
 */
export async function signNodeRecord(privateKey: NodePrivateKey, fields: NodeRecordFields): Promise<SignedNodeRecord> {
  if (privateKey.type !== 'Ed25519') throw new NodeRecordInvalidError([`the signing key is ${privateKey.type}; node keys must be Ed25519`])
  const record = validateNodeRecord({
    peerId: peerIdFromPrivateKey(privateKey).toString(),
    wireguardPublicKey: fields.wireguardPublicKey,
    endpoints: [...fields.endpoints],
    blocks: [...fields.blocks],
    ...(fields.meshAddrs === undefined ? {} : { meshAddrs: [...fields.meshAddrs] }),
    labels: { ...(fields.labels ?? {}) },
    ...(fields.hostname === undefined ? {} : { hostname: fields.hostname }),
    issuedAt: fields.issuedAt ?? new Date().toISOString(),
    sequence: fields.sequence,
  })
  const signature = await privateKey.sign(nodeRecordSigningBytes(record))
  return { record, signature: Buffer.from(signature).toString('base64') }
}

/**
 * Checks a `{record, signature}`: fields strictly, then the signature against the public key in
 * the PeerId. Returns the record; throws NodeRecordInvalidError or NodeRecordForgedError.
 */
export async function verifySignedNodeRecord(signed: unknown): Promise<NodeRecord> {
  const what = 'signed node record'
  if (!isPlainObject(signed)) throw new NodeRecordInvalidError(['must be an object {record, signature}'], what)
  const extra = Object.keys(signed).filter((k) => !SIGNED_FIELDS.has(k))
  if (extra.length > 0) throw new NodeRecordInvalidError(extra.map((k) => `${k}: unknown field`), what)
  return verifyParts(signed.record, signed.signature, what)
}

async function verifyParts(recordInput: unknown, signature: unknown, what: string): Promise<NodeRecord> {
  if (!isPlainObject(recordInput)) throw new NodeRecordInvalidError(['record: must be an object'], what)
  let record: NodeRecord
  try {
    record = validateNodeRecord(recordInput)
  } catch (err) {
    if (err instanceof NodeRecordInvalidError) throw new NodeRecordInvalidError(err.issues.map((i) => `record.${i}`), what)
    throw err
  }
  const sigBytes = typeof signature === 'string' ? decodeBase64(signature) : undefined
  if (!sigBytes || sigBytes.length !== 64) throw new NodeRecordInvalidError(['signature: must be base64 of a 64-byte Ed25519 signature'], what)
  const publicKey = peerIdFromString(record.peerId).publicKey
  let ok = false
  try {
    ok = publicKey !== undefined && (await publicKey.verify(nodeRecordSigningBytes(record), sigBytes))
  } catch {
    ok = false
  }
  if (!ok) throw new NodeRecordForgedError(record.peerId)
  return record
}

export interface VerifiedNode {
  readonly record: NodeRecord
  readonly signature: string
  readonly admitted: boolean
  readonly admittedBy: AdmittedBy | null
}

/** Checks the admission fields of a stored Node value; returns reasons. */
function admissionIssues(value: Record<string, unknown>): string[] {
  const issues: string[] = []
  if (typeof value.admitted !== 'boolean') issues.push('admitted: must be true or false')
  const by = value.admittedBy
  const byOk = by === null || by === 'approval' || (typeof by === 'string' && by.startsWith('token:') && TOKEN_ID.test(by.slice(6)))
  if (!byOk) issues.push(`admittedBy: must be null, "approval" or "token:<id>", not ${JSON.stringify(by)}`)
  else if (value.admitted === true && by === null) issues.push('admittedBy: an admitted node must say how it was admitted')
  else if (value.admitted === false && by !== null) issues.push('admittedBy: must be null while the node is not admitted')
  return issues
}

/**
 * Checks a stored Node value (`{record, signature, admitted, admittedBy}`) as read from the store:
 * fields, signature, and, when `key` is given, that it is stored under its own PeerId. Readers
 * must do this: anyone with write access to Redis could have written the value.
 */
export async function verifyNodeValue(value: unknown, opts: { key?: string } = {}): Promise<VerifiedNode> {
  if (!isPlainObject(value)) throw new NodeRecordInvalidError(['must be an object {record, signature, admitted, admittedBy}'], 'Node object')
  const issues = [...Object.keys(value).filter((k) => !VALUE_FIELDS.has(k)).map((k) => `${k}: unknown field`), ...admissionIssues(value)]
  if (issues.length > 0) throw new NodeRecordInvalidError(issues, 'Node object')
  const record = await verifyParts(value.record, value.signature, 'Node object')
  if (opts.key !== undefined && opts.key !== record.peerId) {
    throw new NodeRecordInvalidError([`stored under "${opts.key}" but the record is for ${record.peerId}`], 'Node object')
  }
  return { record, signature: value.signature as string, admitted: value.admitted as boolean, admittedBy: value.admittedBy as AdmittedBy | null }
}

/**
 * What an agent calls on a Node object it read: verifies it (see verifyNodeValue) and returns
 * the record only when the node is admitted (NodeNotAdmittedError otherwise), so a pending or
 * forged node is never used. `allowPending` returns pending records too.
 */
export async function verifyNodeRecord(value: unknown, opts: { key?: string; allowPending?: boolean } = {}): Promise<NodeRecord> {
  const v = await verifyNodeValue(value, opts.key === undefined ? {} : { key: opts.key })
  if (!v.admitted && !opts.allowPending) throw new NodeNotAdmittedError(v.record.peerId)
  return v.record
}
