/**
 * The node registry: which nodes belong to the network, and what each says about itself.
 *
 *   flatnet:{c}:obj:Node        (store objects, key = PeerId)  {record, signature, admitted, admittedBy}
 *   flatnet:{c}:node:tokens     HASH  token id -> {"createdAt","description","expiresAt","hash"} (ms, sha256 hex of the secret)
 *   flatnet:{c}:node:revoked    SET   PeerIds that may not register
 *
 * A node publishes a signed record (node-record.ts); it is written only if it verifies, its
 * sequence is newer than the stored one, and every block it claims is the node's in IPAM. A node
 * is usable once admitted: approved by an operator, or joined with a join token. Writes go through
 * flatnet_apply, so they bump the revision and reach every watcher through the feed.
 *
 * Join tokens are `fnt_<id>.<secret>`, multi-use until they expire (like kubeadm's). Only a hash
 * of the secret is stored. Expiry is judged by Redis TIME inside the scripts, so neither an
 * operator's nor a joining node's clock can stretch a token's life.
 */
import { createHash, randomBytes } from 'node:crypto'
import { FlatnetError, InvalidArgumentError } from '@flatnet/core'
import { canonicalJson } from './canonical-json.js'
import { NotFoundError } from './errors.js'
import { APPLY_PRELUDE } from './lua.js'
import {
  NodeNotAdmittedError,
  checkNodePeerId,
  verifyNodeValue,
  verifySignedNodeRecord,
  type AdmittedBy,
  type NodeRecord,
  type NodeValue,
  type SignedNodeRecord,
} from './node-record.js'
import { isReplyError, parseStored, type FlatnetStore } from './object-store.js'

/** The stored sequence is not older than the offered one: a replayed or out-of-order record. */
export class NodeRecordStaleError extends FlatnetError {
  readonly code = 'ERR_NODE_RECORD_STALE'
  constructor(
    readonly peerId: string,
    readonly sequence: number,
    readonly storedSequence: number,
  ) {
    super(`node record for ${peerId} has sequence ${sequence}, but the stored one has ${storedSequence}: a re-published record must have a greater sequence; refused`)
  }
}

/** The record claims a block that IPAM does not assign to the node. */
export class NodeBlockNotAssignedError extends FlatnetError {
  readonly code = 'ERR_NODE_BLOCK_NOT_ASSIGNED'
  constructor(
    readonly peerId: string,
    readonly block: string,
    readonly owner: string | undefined,
  ) {
    super(`node record for ${peerId} claims block ${block}, which IPAM assigns ${owner === undefined ? 'to no node' : `to node ${owner}`}; refused`)
  }
}

export type JoinTokenProblem = 'malformed' | 'unknown' | 'mismatch' | 'expired'

/** A join token is malformed, unknown (never created, or deleted), does not match, or has expired. */
export class JoinTokenInvalidError extends FlatnetError {
  readonly code = 'ERR_JOIN_TOKEN_INVALID'
  constructor(
    readonly reason: JoinTokenProblem,
    readonly tokenId: string | undefined,
    detail: string,
  ) {
    super(`invalid join token${tokenId === undefined ? '' : ` ${tokenId}`}: ${detail}`)
  }
}

/** The node was revoked: it may not register again until an operator unrevokes it. */
export class NodeRevokedError extends FlatnetError {
  readonly code = 'ERR_NODE_REVOKED'
  constructor(readonly peerId: string) {
    super(`node ${peerId} is revoked: it cannot register or be approved until it is unrevoked (flatnet node unrevoke ${peerId})`)
  }
}

export const NODE_REGISTRY_ERROR_CODES = [
  'ERR_NODE_RECORD_INVALID',
  'ERR_NODE_RECORD_FORGED',
  'ERR_NODE_RECORD_STALE',
  'ERR_NODE_BLOCK_NOT_ASSIGNED',
  'ERR_NODE_NOT_ADMITTED',
  'ERR_NODE_REVOKED',
  'ERR_JOIN_TOKEN_INVALID',
] as const

export const NODE_REGISTRY_DEFAULTS = Object.freeze({
  tokenTtlSeconds: 24 * 60 * 60,
  maxTokenTtlSeconds: 365 * 24 * 60 * 60,
  maxDescriptionLength: 256,
  /** Attempts of a read-check-write (approve) that lost a race with another writer. */
  casAttempts: 5,
})

/** What the registry needs of IPAM (the Ipam class provides it). */
export interface NodeBlockOwnership {
  ownerOfBlock(cidr: string): Promise<string | undefined>
  releaseNode(node: string): Promise<{ blocks: string[]; addresses: number }>
}

export interface NodeEntry {
  readonly peerId: string
  readonly record: NodeRecord
  readonly signature: string
  readonly admitted: boolean
  readonly admittedBy: AdmittedBy | null
  /** Store revision of the write that last changed the node. */
  readonly revision: number
  readonly createRevision: number
}

/** A stored Node object that fails verification (e.g. written to Redis by hand). */
export interface InvalidNodeObject {
  readonly key: string
  readonly revision: number
  readonly error: FlatnetError
}

export interface RegisterResult {
  readonly peerId: string
  readonly admitted: boolean
  readonly admittedBy: AdmittedBy | null
  readonly revision: number
  readonly result: 'created' | 'configured'
}

export interface ApproveResult {
  readonly peerId: string
  readonly admittedBy: AdmittedBy
  readonly revision: number
  readonly result: 'configured' | 'unchanged'
}

export interface RevokeResult {
  readonly peerId: string
  /** Whether a Node object was deleted (false when the node was not registered). */
  readonly removed: boolean
  readonly revision: number
  readonly releasedBlocks: readonly string[]
  readonly releasedAddresses: number
}

export interface CreatedJoinToken {
  readonly id: string
  /** `fnt_<id>.<secret>`: shown once, never stored. */
  readonly token: string
  readonly expiresAt: string
  readonly description?: string
}

export interface JoinTokenInfo {
  readonly id: string
  readonly description?: string
  readonly createdAt: string
  readonly expiresAt: string
  /** Judged by Redis TIME when listed. */
  readonly expired: boolean
}

const TOKEN = /^fnt_([a-z0-9]{6,32})\.([A-Za-z0-9_-]{16,128})$/
const TOKEN_ID = /^[a-z0-9]{6,32}$/

// Lua numbers are doubles: '%.0f' prints millisecond times and sequences whole, never as 1.7e+12.
const TIME_PRELUDE = String.raw`
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function whole(n) return string.format('%.0f', n) end
local function storedJson(raw)
  local a = string.find(raw, '\n', 1, true)
  local b = a and string.find(raw, '\n', a + 1, true)
  if not b then return nil, nil end
  return string.sub(raw, 1, a - 1), string.sub(raw, b + 1)
end
`

/**
 * Revoked check, sequence check, token check and write, as one step: nothing can revoke the node,
 * delete the token or publish a newer record in between.
 *
 *   KEYS  [1] revision  [2] feed  [3] Node objects  [4] revoked set  [5] tokens
 *   ARGV  [1] feed max length  [2] peerId  [3] sequence  [4] canonical record JSON
 *         [5] signature as a JSON string  [6] token id or ''  [7] sha256 hex of the token secret
 *   -> {revision, result, admitted (0|1), admittedBy or ''}
 *
 * A node that is already admitted stays admitted and its token is not looked at: an agent that
 * keeps an expired token in its configuration must still be able to re-publish. The value is
 * built in canonical key order (admitted, admittedBy, record, signature) so that it is the same
 * text canonicalJson would write.
 */
const REGISTER = String.raw`${APPLY_PRELUDE}${TIME_PRELUDE}
local peer = ARGV[2]
if redis.call('SISMEMBER', KEYS[4], peer) == 1 then return redis.error_reply('NODE_REVOKED') end
local admitted, by = false, nil
local old = redis.call('HGET', KEYS[3], peer)
if old then
  local _, json = storedJson(old)
  local ok, v = false, nil
  if json then ok, v = pcall(cjson.decode, json) end
  if ok and type(v) == 'table' then
    local seq = type(v.record) == 'table' and tonumber(v.record.sequence) or nil
    if seq and tonumber(ARGV[3]) <= seq then return redis.error_reply('NODE_STALE ' .. whole(seq)) end
    local b = v.admittedBy
    if v.admitted == true and type(b) == 'string' and (b == 'approval' or string.match(b, '^token:[a-z0-9]+$')) then
      admitted, by = true, b
    end
  end
end
if not admitted and ARGV[6] ~= '' then
  local raw = redis.call('HGET', KEYS[5], ARGV[6])
  if not raw then return redis.error_reply('TOKEN_UNKNOWN') end
  local ok, t = pcall(cjson.decode, raw)
  if not ok or type(t) ~= 'table' then return redis.error_reply('TOKEN_UNKNOWN') end
  if t.hash ~= ARGV[7] then return redis.error_reply('TOKEN_MISMATCH') end
  local expires = tonumber(t.expiresAt)
  if not expires or nowMs() >= expires then return redis.error_reply('TOKEN_EXPIRED ' .. whole(expires or 0)) end
  admitted, by = true, 'token:' .. ARGV[6]
end
local value = '{"admitted":' .. (admitted and 'true' or 'false') .. ',"admittedBy":' .. (by and ('"' .. by .. '"') or 'null') ..
  ',"record":' .. ARGV[4] .. ',"signature":' .. ARGV[5] .. '}'
local res = flatnet_apply(KEYS[1], KEYS[2], ARGV[1], '', {{'put', KEYS[3], 'Node', peer, value}})
return {res[1], res[2][1], admitted and 1 or 0, by or ''}
`

/**
 * Writes the approved value if the node is still at the revision the caller verified, and not
 * revoked meanwhile.
 *
 *   KEYS  [1] revision  [2] feed  [3] Node objects  [4] revoked set
 *   ARGV  [1] feed max length  [2] peerId  [3] expected mod revision  [4] new value
 */
const APPROVE = String.raw`${APPLY_PRELUDE}${TIME_PRELUDE}
if redis.call('SISMEMBER', KEYS[4], ARGV[2]) == 1 then return redis.error_reply('NODE_REVOKED') end
local old = redis.call('HGET', KEYS[3], ARGV[2])
if not old then return redis.error_reply('NODE_GONE') end
local rev = storedJson(old)
if rev ~= ARGV[3] then return redis.error_reply('NODE_CHANGED') end
local res = flatnet_apply(KEYS[1], KEYS[2], ARGV[1], '', {{'put', KEYS[3], 'Node', ARGV[2], ARGV[4]}})
return {res[1], res[2][1]}
`

/**
 * Marks the node revoked and deletes its object in one step, so no registration slips in between.
 *   KEYS  [1] revision  [2] feed  [3] Node objects  [4] revoked set    ARGV  [1] feed max length  [2] peerId
 */
const REVOKE = String.raw`${APPLY_PRELUDE}
redis.call('SADD', KEYS[4], ARGV[2])
local res = flatnet_apply(KEYS[1], KEYS[2], ARGV[1], '', {{'delete', KEYS[3], 'Node', ARGV[2], ''}})
return {res[1], res[2][1]}
`

/**
 * Stores a new token (expiry from Redis TIME) and drops the expired ones.
 *   KEYS  [1] tokens   ARGV  [1] id  [2] sha256 hex  [3] ttl ms  [4] description as JSON or 'null'
 *   -> {createdAt ms, expiresAt ms}
 */
const CREATE_TOKEN = String.raw`${TIME_PRELUDE}
local now = nowMs()
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local ok, t = pcall(cjson.decode, all[i + 1])
  if ok and type(t) == 'table' and tonumber(t.expiresAt) and tonumber(t.expiresAt) <= now then
    redis.call('HDEL', KEYS[1], all[i])
  end
end
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return redis.error_reply('TOKEN_ID_TAKEN') end
local expires = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], '{"createdAt":' .. whole(now) .. ',"description":' .. ARGV[4] ..
  ',"expiresAt":' .. whole(expires) .. ',"hash":"' .. ARGV[2] .. '"}')
return {whole(now), whole(expires)}
`

/** KEYS [1] tokens -> {now ms, HGETALL}: the clock and the tokens from one place at one instant. */
const LIST_TOKENS = String.raw`${TIME_PRELUDE}
return {whole(nowMs()), redis.call('HGETALL', KEYS[1])}
`

type ScriptFn = (numKeys: number, ...args: (string | number)[]) => Promise<unknown>
interface RegistryCommands {
  flatnetNodeRegister: ScriptFn
  flatnetNodeApprove: ScriptFn
  flatnetNodeRevoke: ScriptFn
  flatnetNodeCreateToken: ScriptFn
  flatnetNodeListTokens: ScriptFn
}

const sha256Hex = (text: string): string => createHash('sha256').update(text, 'utf8').digest('hex')

function replyMatch(err: unknown, re: RegExp): RegExpExecArray | null {
  return isReplyError(err) ? re.exec((err as Error).message) : null
}

function checkPeerArg(peerId: string): void {
  const bad = checkNodePeerId(peerId)
  if (bad) throw new InvalidArgumentError(`node id ${bad}`)
}

/** Splits `fnt_<id>.<secret>`; throws JoinTokenInvalidError('malformed') without echoing the secret. */
export function parseJoinToken(token: string): { id: string; secret: string } {
  const m = TOKEN.exec(token.trim())
  if (!m) throw new JoinTokenInvalidError('malformed', undefined, "a join token looks like fnt_<id>.<secret>; check that it was copied whole")
  return { id: m[1] as string, secret: m[2] as string }
}

export class NodeRegistry {
  private readonly nodesKey: string
  private readonly tokensKey: string
  private readonly revokedKey: string

  constructor(
    private readonly store: FlatnetStore,
    private readonly ipam: NodeBlockOwnership,
  ) {
    this.nodesKey = store.keys.objects('Node')
    this.tokensKey = `${store.keys.prefix}node:tokens`
    this.revokedKey = `${store.keys.prefix}node:revoked`
    const client = store.client
    client.defineCommand('flatnetNodeRegister', { lua: REGISTER })
    client.defineCommand('flatnetNodeApprove', { lua: APPROVE })
    client.defineCommand('flatnetNodeRevoke', { lua: REVOKE })
    client.defineCommand('flatnetNodeCreateToken', { lua: CREATE_TOKEN })
    client.defineCommand('flatnetNodeListTokens', { lua: LIST_TOKENS })
  }

  private get cmd(): RegistryCommands {
    return this.store.client as unknown as RegistryCommands
  }

  private get objectKeys(): string[] {
    return [this.store.keys.revision, this.store.keys.feed, this.nodesKey, this.revokedKey]
  }

  /**
   * Publishes a node's signed record. Refused, with nothing written, when the record is malformed
   * or forged, the node is revoked, the sequence is not newer than the stored one, a claimed block
   * is not the node's in IPAM, or a given join token is not valid (for a node not yet admitted).
   * Without a token a new node is stored pending, until approve().
   */
  async register(signed: unknown, opts: { joinToken?: string } = {}): Promise<RegisterResult> {
    const record = await verifySignedNodeRecord(signed)
    const signature = (signed as SignedNodeRecord).signature
    const token = opts.joinToken === undefined ? undefined : parseJoinToken(opts.joinToken)
    const peerId = record.peerId
    // Also checked inside the script; asked first so a revoked node hears "revoked", not about
    // the blocks revocation released.
    if (await this.isRevoked(peerId)) throw new NodeRevokedError(peerId)
    // IPAM owns the block map, so this reads through its interface before the atomic step.
    // Blocks change hands only after their owner is revoked and released, and a revoked node
    // is refused inside the script, so a stale answer here cannot admit a stolen block.
    for (const block of record.blocks) {
      const owner = await this.ipam.ownerOfBlock(block)
      if (owner !== peerId) throw new NodeBlockNotAssignedError(peerId, block, owner)
    }
    const keys = [...this.objectKeys, this.tokensKey]
    const args = [
      this.store.options.feedMaxLength,
      peerId,
      String(record.sequence),
      canonicalJson(record),
      JSON.stringify(signature),
      token?.id ?? '',
      token ? sha256Hex(token.secret) : '',
    ]
    try {
      const [revision, result, admitted, by] = (await this.store.call('node register', () => this.cmd.flatnetNodeRegister(keys.length, ...keys, ...args))) as [number, string, number, string]
      return { peerId, admitted: Number(admitted) === 1, admittedBy: by === '' ? null : (by as AdmittedBy), revision: Number(revision), result: result as RegisterResult['result'] }
    } catch (err) {
      if (replyMatch(err, /NODE_REVOKED/)) throw new NodeRevokedError(peerId)
      const stale = replyMatch(err, /NODE_STALE (\d+)/)
      if (stale) throw new NodeRecordStaleError(peerId, record.sequence, Number(stale[1]))
      if (replyMatch(err, /TOKEN_UNKNOWN/)) throw new JoinTokenInvalidError('unknown', token?.id, 'no such token: it was never created, was deleted, or expired and was cleaned up')
      if (replyMatch(err, /TOKEN_MISMATCH/)) throw new JoinTokenInvalidError('mismatch', token?.id, 'the secret does not match')
      const expired = replyMatch(err, /TOKEN_EXPIRED (\d+)/)
      if (expired) throw new JoinTokenInvalidError('expired', token?.id, `it expired at ${new Date(Number(expired[1])).toISOString()}; create a new one`)
      throw err
    }
  }

  /** Admits a registered node. Refuses a revoked node, and a stored record that fails verification. */
  async approve(peerId: string): Promise<ApproveResult> {
    checkPeerArg(peerId)
    for (let attempt = 1; ; attempt++) {
      const raw = await this.store.call('node get', () => this.store.client.hget(this.nodesKey, peerId))
      if (raw == null) throw new NotFoundError(`node ${peerId}`)
      const stored = parseStored('Node', peerId, raw)
      const v = await verifyNodeValue(stored.value, { key: peerId })
      if (await this.isRevoked(peerId)) throw new NodeRevokedError(peerId)
      if (v.admitted) return { peerId, admittedBy: v.admittedBy as AdmittedBy, revision: stored.revision, result: 'unchanged' }
      const value: NodeValue = { record: v.record, signature: v.signature, admitted: true, admittedBy: 'approval' }
      const keys = this.objectKeys
      try {
        const [revision] = (await this.store.call('node approve', () =>
          this.cmd.flatnetNodeApprove(keys.length, ...keys, this.store.options.feedMaxLength, peerId, String(stored.revision), canonicalJson(value)),
        )) as [number, string]
        return { peerId, admittedBy: 'approval', revision: Number(revision), result: 'configured' }
      } catch (err) {
        if (replyMatch(err, /NODE_REVOKED/)) throw new NodeRevokedError(peerId)
        if (replyMatch(err, /NODE_GONE/)) throw new NotFoundError(`node ${peerId}`)
        // The node re-published between our read and the write: verify the new record and retry.
        if (replyMatch(err, /NODE_CHANGED/) && attempt < NODE_REGISTRY_DEFAULTS.casAttempts) continue
        throw err
      }
    }
  }

  /**
   * Removes the node and bars it from registering again (until unrevoke), then releases its IPAM
   * blocks and addresses. Idempotent: if releasing fails, revoking again finishes the job.
   */
  async revoke(peerId: string): Promise<RevokeResult> {
    checkPeerArg(peerId)
    const keys = this.objectKeys
    const [revision, result] = (await this.store.call('node revoke', () => this.cmd.flatnetNodeRevoke(keys.length, ...keys, this.store.options.feedMaxLength, peerId))) as [number, string]
    const released = await this.ipam.releaseNode(peerId)
    return { peerId, removed: result === 'deleted', revision: Number(revision), releasedBlocks: released.blocks, releasedAddresses: released.addresses }
  }

  /** Lets a revoked node register again; it then needs admitting anew. False if it was not revoked. */
  async unrevoke(peerId: string): Promise<boolean> {
    checkPeerArg(peerId)
    return Number(await this.store.call('node unrevoke', () => this.store.client.srem(this.revokedKey, peerId))) === 1
  }

  async isRevoked(peerId: string): Promise<boolean> {
    return Number(await this.store.call('node revoked', () => this.store.client.sismember(this.revokedKey, peerId))) === 1
  }

  async listRevoked(): Promise<string[]> {
    return (await this.store.call('node revoked', () => this.store.client.smembers(this.revokedKey))).sort()
  }

  /** The node's verified entry, pending or admitted; undefined when not registered. Throws if the stored value fails verification. */
  async get(peerId: string): Promise<NodeEntry | undefined> {
    checkPeerArg(peerId)
    const stored = await this.store.get('Node', peerId)
    if (!stored) return undefined
    const v = await verifyNodeValue(stored.value, { key: peerId })
    return { peerId, ...v, revision: stored.revision, createRevision: stored.createRevision }
  }

  /** The node's entry if it is registered and admitted; NotFoundError or NodeNotAdmittedError otherwise. */
  async requireAdmitted(peerId: string): Promise<NodeEntry> {
    const entry = await this.get(peerId)
    if (!entry) throw new NotFoundError(`node ${peerId}`)
    if (!entry.admitted) throw new NodeNotAdmittedError(peerId)
    return entry
  }

  /** Every registered node that verifies, pending or admitted, by PeerId. See scan() for the ones that do not. */
  async list(): Promise<NodeEntry[]> {
    return (await this.scan()).nodes
  }

  /** Every stored Node object, split into verified entries and objects that fail verification. */
  async scan(): Promise<{ nodes: NodeEntry[]; invalid: InvalidNodeObject[] }> {
    const nodes: NodeEntry[] = []
    const invalid: InvalidNodeObject[] = []
    for (const o of await this.store.list('Node')) {
      try {
        const v = await verifyNodeValue(o.value, { key: o.key })
        nodes.push({ peerId: o.key, ...v, revision: o.revision, createRevision: o.createRevision })
      } catch (err) {
        if (!(err instanceof FlatnetError)) throw err
        invalid.push({ key: o.key, revision: o.revision, error: err })
      }
    }
    return { nodes, invalid }
  }

  /** A new multi-use join token, valid for `ttlSeconds` by Redis's clock. The secret is returned only here. */
  async createToken(opts: { ttlSeconds?: number; description?: string } = {}): Promise<CreatedJoinToken> {
    const ttl = opts.ttlSeconds ?? NODE_REGISTRY_DEFAULTS.tokenTtlSeconds
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > NODE_REGISTRY_DEFAULTS.maxTokenTtlSeconds) {
      throw new InvalidArgumentError(`token ttl must be a whole number of seconds from 1 to ${NODE_REGISTRY_DEFAULTS.maxTokenTtlSeconds}, not ${ttl}`)
    }
    const description = opts.description
    if (description !== undefined) {
      if (description.length > NODE_REGISTRY_DEFAULTS.maxDescriptionLength) {
        throw new InvalidArgumentError(`token description must be at most ${NODE_REGISTRY_DEFAULTS.maxDescriptionLength} characters`)
      }
      // eslint-disable-next-line no-control-regex
      if (/[\u0000-\u001f\u007f]/.test(description)) throw new InvalidArgumentError('token description must not contain control characters')
    }
    for (let attempt = 1; ; attempt++) {
      const id = randomBytes(5).toString('hex')
      const secret = randomBytes(32).toString('base64url')
      const args = [id, sha256Hex(secret), ttl * 1000, description === undefined ? 'null' : JSON.stringify(description)]
      try {
        const [, expires] = (await this.store.call('node create token', () => this.cmd.flatnetNodeCreateToken(1, this.tokensKey, ...args))) as [string, string]
        return { id, token: `fnt_${id}.${secret}`, expiresAt: new Date(Number(expires)).toISOString(), ...(description === undefined ? {} : { description }) }
      } catch (err) {
        if (replyMatch(err, /TOKEN_ID_TAKEN/) && attempt < 3) continue
        throw err
      }
    }
  }

  /** Every stored token (never its secret), oldest first. */
  async listTokens(): Promise<JoinTokenInfo[]> {
    const [now, flat] = (await this.store.call('node list tokens', () => this.cmd.flatnetNodeListTokens(1, this.tokensKey))) as [string, string[]]
    const out: { created: number; info: JoinTokenInfo }[] = []
    for (let i = 0; i + 1 < flat.length; i += 2) {
      let t: { createdAt?: unknown; description?: unknown; expiresAt?: unknown }
      try {
        t = JSON.parse(flat[i + 1] as string) as typeof t
      } catch {
        continue
      }
      const created = Number(t.createdAt)
      const expires = Number(t.expiresAt)
      if (!Number.isFinite(created) || !Number.isFinite(expires)) continue
      const info: JoinTokenInfo = {
        id: flat[i] as string,
        ...(typeof t.description === 'string' ? { description: t.description } : {}),
        createdAt: new Date(created).toISOString(),
        expiresAt: new Date(expires).toISOString(),
        expired: expires <= Number(now),
      }
      out.push({ created, info })
    }
    return out.sort((a, b) => a.created - b.created || (a.info.id < b.info.id ? -1 : 1)).map((o) => o.info)
  }

  /** Deletes a token: nodes can no longer join with it (nodes it admitted stay admitted). False if there was no such token. */
  async deleteToken(id: string): Promise<boolean> {
    // A whole token is accepted too; its secret is never echoed.
    const tokenId = id.startsWith('fnt_') ? id.slice(4).split('.')[0] ?? '' : id
    if (!TOKEN_ID.test(tokenId)) throw new InvalidArgumentError('not a join token id: ids are 6 to 32 lower case letters and digits')
    return Number(await this.store.call('node delete token', () => this.store.client.hdel(this.tokensKey, tokenId))) === 1
  }
}
