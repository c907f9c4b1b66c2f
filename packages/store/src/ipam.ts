/**
 * IP address management, block-based: a pool (one CIDR) is cut into equal blocks; a node claims
 * whole blocks and hands out single addresses from them, so most allocations touch only the
 * node's own blocks and a block's owner tells where an address lives.
 *
 *   flatnet:{c}:ipam:pools                 SET     pool names
 *   flatnet:{c}:ipam:pool:<pool>           HASH    cidr, blockPrefix, family, blocks, blockSize, first, last
 *   flatnet:{c}:ipam:pool:<pool>:claimed   STRING  bitmap: bit i set = block i is claimed
 *   flatnet:{c}:ipam:pool:<pool>:owner     HASH    block index -> node
 *   flatnet:{c}:ipam:block:<pool>:<index>  STRING  bitmap: bit j set = address j of the block is used
 *   flatnet:{c}:ipam:node:<node>           SET     "<pool>:<index>" of every block the node holds
 *   flatnet:{c}:ipam:handles:<node>        HASH    handle -> "<pool>:<index>:<offset>"
 *
 * The scripts see only block indices and offsets, never address text, so the same scripts serve
 * IPv4 and IPv6; addresses are computed here with bigint. Keys a script derives at run time
 * (block bitmaps, other pools) are not in KEYS, which Redis Cluster accepts because every key of
 * a cluster carries the same hash tag and so lives in the script's slot.
 *
 * IPAM writes do not bump the object revision: addresses are not policy objects.
 */
import { FlatnetError, cidrCovers, formatIp, parseCidr, type Cidr, type IpAddress, type IpFamily } from '@flatnet/core'
import { NotFoundError } from './errors.js'
import { isReplyError, type FlatnetStore } from './object-store.js'

/** Every block of the pool is claimed and the node's own blocks of it are full. */
export class IpamExhaustedError extends FlatnetError {
  readonly code = 'ERR_IPAM_EXHAUSTED'
  constructor(
    readonly pool: string,
    message: string,
  ) {
    super(message)
  }
}

/** A pool definition, node name or handle is malformed. */
export class IpamInvalidError extends FlatnetError {
  readonly code = 'ERR_IPAM_INVALID'
  override readonly exitCode = 2
}

/** A pool's cidr or block size cannot change while any of its blocks is claimed. */
export class IpamPoolInUseError extends FlatnetError {
  readonly code = 'ERR_IPAM_POOL_IN_USE'
  constructor(
    readonly pool: string,
    readonly claimedBlocks: number,
    message: string,
  ) {
    super(message)
  }
}

export const IPAM_ERROR_CODES = ['ERR_IPAM_EXHAUSTED', 'ERR_IPAM_INVALID', 'ERR_IPAM_POOL_IN_USE'] as const

export const IPAM_DEFAULTS = Object.freeze({
  pool: 'default',
  blockPrefix: 26,
  /** Bounds the claimed-blocks bitmap (128 KiB) and the size of a usage report. */
  maxBlocksPerPool: 2 ** 20,
  /** A block is one bitmap; bigger blocks only make every scan slower. */
  maxBlockAddresses: 2 ** 16,
})

export interface IpamPoolSpec {
  readonly name?: string
  readonly cidr: string
  readonly blockPrefix?: number
}

export interface IpamPool {
  readonly name: string
  readonly cidr: string
  readonly blockPrefix: number
  readonly family: IpFamily
  /** Number of blocks the pool is cut into. */
  readonly blocks: number
  /** Addresses per block. */
  readonly blockSize: number
}

export interface EnsurePoolResult extends IpamPool {
  readonly result: 'created' | 'updated' | 'unchanged'
}

export interface Allocation {
  readonly ip: string
  /** The CIDR of the block the address came from. */
  readonly block: string
}

export interface IpamUsage {
  readonly pools: {
    readonly name: string
    readonly cidr: string
    readonly blockPrefix: number
    readonly blocks: { readonly total: number; readonly claimed: number }
    /** Capacity excludes the pool's reserved first and last address. */
    readonly addresses: { readonly capacity: number; readonly allocated: number }
  }[]
  readonly blocks: { readonly cidr: string; readonly node: string; readonly allocated: number; readonly capacity: number }[]
}

const POOL_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/
// No ':' (it separates the parts of set members and handle values) and no whitespace.
const NODE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$/
const MAX_HANDLE_LENGTH = 1024

const PRELUDE = `
local P = ARGV[1]
local function poolKey(pool) return P .. 'ipam:pool:' .. pool end
local function blockKey(pool, idx) return P .. 'ipam:block:' .. pool .. ':' .. idx end
local function nodeKey(node) return P .. 'ipam:node:' .. node end
local function loadPool(pool)
  local f = redis.call('HMGET', poolKey(pool), 'cidr', 'blockPrefix', 'blocks', 'blockSize')
  if not f[1] then return nil end
  return {cidr = f[1], blockPrefix = f[2], blocks = tonumber(f[3]), size = tonumber(f[4])}
end
-- Sorted, so a node fills its lowest block first and allocations stay packed.
local function nodeBlocks(node, pool)
  local out = {}
  local head = pool .. ':'
  for _, m in ipairs(redis.call('SMEMBERS', nodeKey(node))) do
    if string.sub(m, 1, #head) == head then out[#out + 1] = tonumber(string.sub(m, #head + 1)) end
  end
  table.sort(out)
  return out
end
-- Without a range BITPOS 0 answers the first bit past the string when every stored bit is set,
-- and 0 for a missing key; anything at or beyond the capacity means "full".
local function firstFree(key, capacity)
  local pos = redis.call('BITPOS', key, 0)
  if pos < 0 or pos >= capacity then return nil end
  return pos
end
local function claim(pool, p, node)
  local claimedKey = poolKey(pool) .. ':claimed'
  local idx = firstFree(claimedKey, p.blocks)
  if not idx then return nil end
  redis.call('SETBIT', claimedKey, idx, 1)
  redis.call('HSET', poolKey(pool) .. ':owner', idx, node)
  redis.call('SADD', nodeKey(node), pool .. ':' .. idx)
  local bk = blockKey(pool, idx)
  redis.call('DEL', bk)
  if idx == 0 then redis.call('SETBIT', bk, 0, 1) end
  if idx == p.blocks - 1 then redis.call('SETBIT', bk, p.size - 1, 1) end
  return idx
end
`

/**
 *   KEYS  [1] pools set  [2] pool hash  [3] claimed bitmap  [4] owner hash
 *   ARGV  [1] prefix  [2] name  [3] cidr  [4] blockPrefix  [5] family  [6] blocks  [7] blockSize
 *         [8] first  [9] last  (fixed-width "<family>:<hex>", so string order is address order)
 */
const ENSURE_POOL = `${PRELUDE}
local name = ARGV[2]
local cur = redis.call('HMGET', KEYS[2], 'cidr', 'blockPrefix')
if cur[1] == ARGV[3] and cur[2] == ARGV[4] then
  redis.call('SADD', KEYS[1], name)
  return 'unchanged'
end
if cur[1] then
  local claimed = redis.call('BITCOUNT', KEYS[3])
  if claimed > 0 then
    return redis.error_reply('IPAM_POOL_IN_USE ' .. claimed .. ' ' .. cur[1] .. ' ' .. cur[2])
  end
end
for _, other in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if other ~= name then
    local o = redis.call('HMGET', poolKey(other), 'first', 'last', 'cidr')
    if o[1] and not (ARGV[9] < o[1] or ARGV[8] > o[2]) then
      return redis.error_reply('IPAM_OVERLAP ' .. other .. ' ' .. o[3])
    end
  end
end
redis.call('DEL', KEYS[3], KEYS[4])
redis.call('HSET', KEYS[2], 'cidr', ARGV[3], 'blockPrefix', ARGV[4], 'family', ARGV[5], 'blocks', ARGV[6],
  'blockSize', ARGV[7], 'first', ARGV[8], 'last', ARGV[9])
redis.call('SADD', KEYS[1], name)
if cur[1] then return 'updated' end
return 'created'
`

/**
 *   KEYS  [1] pool hash  [2] node set  [3] handles hash
 *   ARGV  [1] prefix  [2] node  [3] handle  [4] pool
 *   -> {pool, cidr, blockPrefix, block index, offset}
 */
const ALLOCATE = `${PRELUDE}
local node, handle, pool = ARGV[2], ARGV[3], ARGV[4]
local existing = redis.call('HGET', KEYS[3], handle)
if existing then
  local epool, eidx, eoff = string.match(existing, '^(.+):(%d+):(%d+)$')
  local ep = loadPool(epool)
  return {epool, ep.cidr, ep.blockPrefix, tonumber(eidx), tonumber(eoff)}
end
local p = loadPool(pool)
if not p then return redis.error_reply('IPAM_NO_POOL ' .. pool) end
local mine = nodeBlocks(node, pool)
local idx, off
for _, i in ipairs(mine) do
  off = firstFree(blockKey(pool, i), p.size)
  if off then
    idx = i
    break
  end
end
if not idx then
  idx = claim(pool, p, node)
  if not idx then return redis.error_reply('IPAM_EXHAUSTED ' .. p.blocks .. ' ' .. #mine) end
  off = firstFree(blockKey(pool, idx), p.size)
end
redis.call('SETBIT', blockKey(pool, idx), off, 1)
redis.call('HSET', KEYS[3], handle, pool .. ':' .. idx .. ':' .. off)
return {pool, p.cidr, p.blockPrefix, idx, off}
`

/**
 *   KEYS  [1] handles hash   ARGV  [1] prefix  [2] node  [3] handle   -> 1 released, 0 unknown handle
 */
const RELEASE = `${PRELUDE}
local v = redis.call('HGET', KEYS[1], ARGV[3])
if not v then return 0 end
redis.call('HDEL', KEYS[1], ARGV[3])
local pool, idx, off = string.match(v, '^(.+):(%d+):(%d+)$')
-- Only the owner's bitmap is touched: a block reclaimed meanwhile may already serve another node.
if redis.call('HGET', poolKey(pool) .. ':owner', idx) == ARGV[2] then
  redis.call('SETBIT', blockKey(pool, idx), tonumber(off), 0)
end
return 1
`

/**
 *   KEYS  [1] node set  [2] handles hash   ARGV  [1] prefix  [2] node
 *   -> {addresses released, {{pool, cidr, blockPrefix, index}...}}
 */
const RELEASE_NODE = `${PRELUDE}
local node = ARGV[2]
local addresses = redis.call('HLEN', KEYS[2])
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local pool, idx = string.match(m, '^(.+):(%d+)$')
  local ownerKey = poolKey(pool) .. ':owner'
  if redis.call('HGET', ownerKey, idx) == node then
    redis.call('SETBIT', poolKey(pool) .. ':claimed', tonumber(idx), 0)
    redis.call('HDEL', ownerKey, idx)
    redis.call('DEL', blockKey(pool, idx))
    local p = loadPool(pool)
    if p then out[#out + 1] = {pool, p.cidr, p.blockPrefix, tonumber(idx)} end
  end
end
redis.call('DEL', KEYS[1], KEYS[2])
return {addresses, out}
`

/**
 *   KEYS  [1] pool hash  [2] node set   ARGV  [1] prefix  [2] node  [3] pool
 *   -> {cidr, blockPrefix, index}: the node's lowest block of the pool, claimed if it had none
 */
const CLAIM_BLOCK = `${PRELUDE}
local node, pool = ARGV[2], ARGV[3]
local p = loadPool(pool)
if not p then return redis.error_reply('IPAM_NO_POOL ' .. pool) end
local mine = nodeBlocks(node, pool)
if #mine > 0 then return {p.cidr, p.blockPrefix, mine[1]} end
local idx = claim(pool, p, node)
if not idx then return redis.error_reply('IPAM_EXHAUSTED ' .. p.blocks .. ' 0') end
return {p.cidr, p.blockPrefix, idx}
`

/**
 * One consistent read of every pool and claimed block.
 *   KEYS  [1] pools set   ARGV  [1] prefix
 *   -> {{name, cidr, blockPrefix, {{index, node, used bits}...}}...}
 */
const USAGE = `${PRELUDE}
local names = redis.call('SMEMBERS', KEYS[1])
table.sort(names)
local out = {}
for _, name in ipairs(names) do
  local p = loadPool(name)
  if p then
    local owners = redis.call('HGETALL', poolKey(name) .. ':owner')
    local blocks = {}
    for i = 1, #owners, 2 do
      blocks[#blocks + 1] = {tonumber(owners[i]), owners[i + 1], redis.call('BITCOUNT', blockKey(name, owners[i]))}
    end
    out[#out + 1] = {name, p.cidr, p.blockPrefix, blocks}
  end
end
return out
`

type ScriptFn = (numKeys: number, ...args: (string | number)[]) => Promise<unknown>
interface IpamCommands {
  ipamEnsurePool: ScriptFn
  ipamAllocate: ScriptFn
  ipamRelease: ScriptFn
  ipamReleaseNode: ScriptFn
  ipamClaimBlock: ScriptFn
  ipamUsage: ScriptFn
}

const familyBits = (family: IpFamily): number => (family === 4 ? 32 : 128)

function toBigint(ip: IpAddress): bigint {
  if (ip.family === 4) return BigInt(ip.words[0])
  return ip.words.reduce((acc, w) => (acc << 32n) | BigInt(w), 0n)
}

function fromBigint(family: IpFamily, n: bigint): IpAddress {
  if (family === 4) return { family, words: [Number(n), 0, 0, 0] }
  const w = (shift: bigint): number => Number((n >> shift) & 0xffffffffn)
  return { family, words: [w(96n), w(64n), w(32n), w(0n)] }
}

/** Pool geometry derived from its cidr and block prefix; the numbers the scripts work with. */
interface Geometry {
  readonly cidr: Cidr
  readonly network: bigint
  readonly blockPrefix: number
  readonly blocks: number
  readonly blockSize: number
}

function geometry(cidrText: string, blockPrefix: number): Geometry {
  const cidr = parseCidr(cidrText)
  if (!cidr) throw new Error(`stored IPAM pool cidr "${cidrText}" does not parse`)
  return {
    cidr,
    network: toBigint(cidr.network),
    blockPrefix,
    blocks: 2 ** (blockPrefix - cidr.prefix),
    blockSize: 2 ** (familyBits(cidr.family) - blockPrefix),
  }
}

function blockCidr(g: Geometry, index: number): string {
  return `${formatIp(fromBigint(g.cidr.family, g.network + BigInt(index) * BigInt(g.blockSize)))}/${g.blockPrefix}`
}

function addressAt(g: Geometry, index: number, offset: number): string {
  return formatIp(fromBigint(g.cidr.family, g.network + BigInt(index) * BigInt(g.blockSize) + BigInt(offset)))
}

/** Addresses of block `index` that are reserved (the pool's first and last). */
function reservedIn(g: Geometry, index: number): number {
  return (index === 0 ? 1 : 0) + (index === g.blocks - 1 ? 1 : 0)
}

function checkPoolName(name: string): void {
  if (!POOL_NAME.test(name)) {
    throw new IpamInvalidError(`invalid IPAM pool name "${name}": use lower case letters, digits and '-' (at most 63)`)
  }
}

function checkNode(node: string): void {
  if (!NODE_NAME.test(node)) {
    throw new IpamInvalidError(`invalid node name "${node}": use letters, digits, '.', '_' and '-' (at most 253), starting with a letter or digit`)
  }
}

function checkHandle(handle: string): void {
  if (handle.length === 0 || handle.length > MAX_HANDLE_LENGTH) {
    throw new IpamInvalidError(`invalid IPAM handle: it must be 1 to ${MAX_HANDLE_LENGTH} characters long`)
  }
}

/** Validates a pool definition; returns its normalised form. */
export function validatePool(spec: IpamPoolSpec): IpamPool {
  const name = spec.name ?? IPAM_DEFAULTS.pool
  checkPoolName(name)
  const blockPrefix = spec.blockPrefix ?? IPAM_DEFAULTS.blockPrefix
  const where = `IPAM pool "${name}"`
  const cidr = parseCidr(spec.cidr)
  if (!cidr) throw new IpamInvalidError(`${where}: "${spec.cidr}" is not a CIDR (expected e.g. 10.244.0.0/16 or fd00:10::/48)`)
  if (cidr.hostBitsSet) {
    throw new IpamInvalidError(`${where}: "${spec.cidr}" has host bits set; did you mean ${formatIp(cidr.network)}/${cidr.prefix}?`)
  }
  const bits = familyBits(cidr.family)
  const maxBlockPrefix = bits - 2
  if (!Number.isInteger(blockPrefix)) throw new IpamInvalidError(`${where}: blockPrefix must be an integer, not ${blockPrefix}`)
  if (blockPrefix <= cidr.prefix) {
    throw new IpamInvalidError(`${where}: blockPrefix /${blockPrefix} must be longer than the pool's /${cidr.prefix}, so that the pool holds more than one block`)
  }
  if (blockPrefix > maxBlockPrefix) {
    throw new IpamInvalidError(`${where}: blockPrefix /${blockPrefix} is too long: IPv${cidr.family} blocks must be /${maxBlockPrefix} or shorter (at least 4 addresses)`)
  }
  const minBlockPrefix = bits - Math.log2(IPAM_DEFAULTS.maxBlockAddresses)
  if (blockPrefix < minBlockPrefix) {
    throw new IpamInvalidError(`${where}: blockPrefix /${blockPrefix} is too short: IPv${cidr.family} blocks must be /${minBlockPrefix} or longer (at most ${IPAM_DEFAULTS.maxBlockAddresses} addresses)`)
  }
  const blockBits = blockPrefix - cidr.prefix
  if (2 ** blockBits > IPAM_DEFAULTS.maxBlocksPerPool) {
    throw new IpamInvalidError(
      `${where}: ${spec.cidr} in /${blockPrefix} blocks makes 2^${blockBits} blocks; at most 2^${Math.log2(IPAM_DEFAULTS.maxBlocksPerPool)} are allowed: use a longer pool prefix or a shorter blockPrefix`,
    )
  }
  return { name, cidr: `${formatIp(cidr.network)}/${cidr.prefix}`, blockPrefix, family: cidr.family, blocks: 2 ** blockBits, blockSize: 2 ** (bits - blockPrefix) }
}

const rangeKey = (family: IpFamily, n: bigint): string => `${family}:${n.toString(16).padStart(32, '0')}`

export class Ipam {
  private readonly prefix: string

  constructor(private readonly store: FlatnetStore) {
    this.prefix = store.keys.prefix
    const client = store.client
    client.defineCommand('ipamEnsurePool', { lua: ENSURE_POOL })
    client.defineCommand('ipamAllocate', { lua: ALLOCATE })
    client.defineCommand('ipamRelease', { lua: RELEASE })
    client.defineCommand('ipamReleaseNode', { lua: RELEASE_NODE })
    client.defineCommand('ipamClaimBlock', { lua: CLAIM_BLOCK })
    client.defineCommand('ipamUsage', { lua: USAGE })
  }

  private get cmd(): IpamCommands {
    return this.store.client as unknown as IpamCommands
  }

  private key(rest: string): string {
    return `${this.prefix}ipam:${rest}`
  }

  private poolKey(pool: string): string {
    return this.key(`pool:${pool}`)
  }

  /**
   * Creates the pool, or confirms it is already as given. Changing an existing pool's cidr or
   * blockPrefix is refused while any of its blocks is claimed; overlapping another pool is refused.
   */
  async ensurePool(spec: IpamPoolSpec): Promise<EnsurePoolResult> {
    const pool = validatePool(spec)
    const g = geometry(pool.cidr, pool.blockPrefix)
    const last = g.network + BigInt(pool.blocks) * BigInt(pool.blockSize) - 1n
    const pk = this.poolKey(pool.name)
    const keys = [this.key('pools'), pk, `${pk}:claimed`, `${pk}:owner`]
    const args = [this.prefix, pool.name, pool.cidr, String(pool.blockPrefix), String(pool.family), String(pool.blocks), String(pool.blockSize), rangeKey(pool.family, g.network), rangeKey(pool.family, last)]
    try {
      const result = (await this.store.call('ipam ensure pool', () => this.cmd.ipamEnsurePool(keys.length, ...keys, ...args))) as EnsurePoolResult['result']
      return { ...pool, result }
    } catch (err) {
      const inUse = replyMatch(err, /IPAM_POOL_IN_USE (\d+) (\S+) (\d+)/)
      if (inUse) {
        throw new IpamPoolInUseError(
          pool.name,
          Number(inUse[1]),
          `IPAM pool "${pool.name}" is ${inUse[2]} in /${inUse[3]} blocks and ${inUse[1]} of its blocks are claimed: it cannot change to ${pool.cidr} in /${pool.blockPrefix} blocks until every node using it is removed`,
        )
      }
      const overlap = replyMatch(err, /IPAM_OVERLAP (\S+) (\S+)/)
      if (overlap) throw new IpamInvalidError(`IPAM pool "${pool.name}": ${pool.cidr} overlaps pool "${overlap[1]}" (${overlap[2]}); pools must not share addresses`)
      throw err
    }
  }

  async pools(): Promise<IpamPool[]> {
    const names = (await this.store.call('ipam pools', () => this.store.client.smembers(this.key('pools')))).sort()
    if (names.length === 0) return []
    const rows = await this.store.call('ipam pools', async () => {
      const multi = this.store.client.multi()
      for (const name of names) multi.hmget(this.poolKey(name), 'cidr', 'blockPrefix')
      return (await multi.exec()) ?? []
    })
    const out: IpamPool[] = []
    names.forEach((name, i) => {
      const [err, fields] = rows[i] ?? [null, []]
      if (err) throw err
      const [cidr, blockPrefix] = fields as (string | null)[]
      if (cidr == null || blockPrefix == null) return
      const g = geometry(cidr, Number(blockPrefix))
      out.push({ name, cidr, blockPrefix: g.blockPrefix, family: g.cidr.family, blocks: g.blocks, blockSize: g.blockSize })
    })
    return out
  }

  /**
   * Makes sure `node` holds a block of the pool (what an agent does at start); returns the node's
   * lowest block there, claiming the first free block of the pool if it held none.
   */
  async claimBlock(node: string, pool: string = IPAM_DEFAULTS.pool): Promise<string> {
    checkNode(node)
    checkPoolName(pool)
    const keys = [this.poolKey(pool), this.key(`node:${node}`)]
    try {
      const [cidr, blockPrefix, index] = (await this.store.call('ipam claim block', () => this.cmd.ipamClaimBlock(keys.length, ...keys, this.prefix, node, pool))) as [string, string, number]
      return blockCidr(geometry(cidr, Number(blockPrefix)), Number(index))
    } catch (err) {
      throw this.mapError(err, node, pool)
    }
  }

  /**
   * One address for `handle` on `node`, from the node's blocks of the pool, claiming a new block
   * when they are full. The same handle gets the same address back until it is released (from
   * whichever pool it came).
   */
  async allocate(req: { node: string; handle: string; pool?: string }): Promise<Allocation> {
    const pool = req.pool ?? IPAM_DEFAULTS.pool
    checkNode(req.node)
    checkHandle(req.handle)
    checkPoolName(pool)
    const keys = [this.poolKey(pool), this.key(`node:${req.node}`), this.key(`handles:${req.node}`)]
    try {
      const [, cidr, blockPrefix, index, offset] = (await this.store.call('ipam allocate', () => this.cmd.ipamAllocate(keys.length, ...keys, this.prefix, req.node, req.handle, pool))) as [
        string,
        string,
        string,
        number,
        number,
      ]
      const g = geometry(cidr, Number(blockPrefix))
      return { ip: addressAt(g, Number(index), Number(offset)), block: blockCidr(g, Number(index)) }
    } catch (err) {
      throw this.mapError(err, req.node, pool)
    }
  }

  /** Frees the address of `handle`; false if the node held no such handle. The block stays the node's. */
  async release(req: { node: string; handle: string }): Promise<boolean> {
    checkNode(req.node)
    checkHandle(req.handle)
    const key = this.key(`handles:${req.node}`)
    const n = await this.store.call('ipam release', () => this.cmd.ipamRelease(1, key, this.prefix, req.node, req.handle))
    return Number(n) === 1
  }

  /** Frees every address and block of a node that is gone, so that other nodes can claim them. */
  async releaseNode(node: string): Promise<{ blocks: string[]; addresses: number }> {
    checkNode(node)
    const keys = [this.key(`node:${node}`), this.key(`handles:${node}`)]
    const [addresses, rows] = (await this.store.call('ipam release node', () => this.cmd.ipamReleaseNode(keys.length, ...keys, this.prefix, node))) as [number, [string, string, string, number][]]
    const blocks = rows
      .map(([pool, cidr, blockPrefix, index]) => ({ pool, index: Number(index), cidr: blockCidr(geometry(cidr, Number(blockPrefix)), Number(index)) }))
      .sort(byPoolAndIndex)
    return { blocks: blocks.map((b) => b.cidr), addresses: Number(addresses) }
  }

  /** The CIDRs of the blocks a node holds, by pool name then address. */
  async blocksOf(node: string): Promise<string[]> {
    checkNode(node)
    const members = await this.store.call('ipam blocks', () => this.store.client.smembers(this.key(`node:${node}`)))
    if (members.length === 0) return []
    const pools = new Map((await this.pools()).map((p) => [p.name, geometry(p.cidr, p.blockPrefix)]))
    const blocks: { pool: string; index: number; cidr: string }[] = []
    for (const m of members) {
      const colon = m.lastIndexOf(':')
      const pool = m.slice(0, colon)
      const index = Number(m.slice(colon + 1))
      const g = pools.get(pool)
      if (g) blocks.push({ pool, index, cidr: blockCidr(g, index) })
    }
    return blocks.sort(byPoolAndIndex).map((b) => b.cidr)
  }

  /** The node holding block `cidr`; undefined when no pool has such a block or it is unclaimed. */
  async ownerOfBlock(cidr: string): Promise<string | undefined> {
    const c = parseCidr(cidr)
    if (!c) throw new IpamInvalidError(`"${cidr}" is not a CIDR`)
    if (c.hostBitsSet) return undefined
    for (const p of await this.pools()) {
      const g = geometry(p.cidr, p.blockPrefix)
      if (p.blockPrefix !== c.prefix || !cidrCovers(g.cidr, c)) continue
      const index = Number((toBigint(c.network) - g.network) / BigInt(p.blockSize))
      const owner = await this.store.call('ipam owner', () => this.store.client.hget(`${this.poolKey(p.name)}:owner`, String(index)))
      return owner ?? undefined
    }
    return undefined
  }

  /** Pools and claimed blocks with their address counts, read at one instant. */
  async usage(): Promise<IpamUsage> {
    const key = this.key('pools')
    const rows = (await this.store.call('ipam usage', () => this.cmd.ipamUsage(1, key, this.prefix))) as [string, string, string, [number, string, number][]][]
    const pools: IpamUsage['pools'][number][] = []
    const blocks: (IpamUsage['blocks'][number] & { pool: string; index: number })[] = []
    for (const [name, cidr, blockPrefix, claimed] of rows) {
      const g = geometry(cidr, Number(blockPrefix))
      let allocated = 0
      for (const [index, node, used] of claimed) {
        const reserved = reservedIn(g, Number(index))
        const inUse = Number(used) - reserved
        allocated += inUse
        blocks.push({ pool: name, index: Number(index), cidr: blockCidr(g, Number(index)), node, allocated: inUse, capacity: g.blockSize - reserved })
      }
      pools.push({
        name,
        cidr,
        blockPrefix: g.blockPrefix,
        blocks: { total: g.blocks, claimed: claimed.length },
        addresses: { capacity: g.blocks * g.blockSize - 2, allocated },
      })
    }
    blocks.sort(byPoolAndIndex)
    return { pools, blocks: blocks.map(({ cidr, node, allocated, capacity }) => ({ cidr, node, allocated, capacity })) }
  }

  private mapError(err: unknown, node: string, pool: string): unknown {
    if (replyMatch(err, /IPAM_NO_POOL/)) return new NotFoundError(`IPAM pool "${pool}"`)
    const ex = replyMatch(err, /IPAM_EXHAUSTED (\d+) (\d+)/)
    if (ex) {
      const held = Number(ex[2])
      const mine = held === 0 ? `node "${node}" holds no block in it` : `the ${held} block${held === 1 ? '' : 's'} node "${node}" holds there ${held === 1 ? 'is' : 'are'} full`
      return new IpamExhaustedError(pool, `IPAM pool "${pool}" is exhausted: all ${ex[1]} of its blocks are claimed and ${mine}; release addresses, remove unused nodes, or add a pool`)
    }
    return err
  }
}

function replyMatch(err: unknown, re: RegExp): RegExpExecArray | null {
  return isReplyError(err) ? re.exec((err as Error).message) : null
}

function byPoolAndIndex(a: { pool: string; index: number }, b: { pool: string; index: number }): number {
  return a.pool < b.pool ? -1 : a.pool > b.pool ? 1 : a.index - b.index
}
