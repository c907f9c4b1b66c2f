/**
 * Node registry against real Redis: only records signed by the node's own key are written, never
 * an old one again, never one claiming another node's block; nodes are usable once approved or
 * joined with a live token; revocation removes, releases and bars. The same scenario runs on a
 * Redis Cluster, where every script must keep to one slot.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { after, before, describe, it } from 'node:test'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { canonicalJson } from '../src/canonical-json.js'
import { Ipam } from '../src/ipam.js'
import {
  NodeNotAdmittedError,
  NodeRecordForgedError,
  NodeRecordInvalidError,
  nodeRecordSigningBytes,
  signNodeRecord,
  validateNodeRecord,
  verifyNodeRecord,
  verifyNodeValue,
  verifySignedNodeRecord,
  type NodePrivateKey,
  type NodeRecord,
  type SignedNodeRecord,
} from '../src/node-record.js'
import {
  JoinTokenInvalidError,
  NodeBlockNotAssignedError,
  NodeRecordStaleError,
  NodeRegistry,
  NodeRevokedError,
  parseJoinToken,
  type JoinTokenProblem,
} from '../src/node-registry.js'
import { FlatnetStore, type RedisClient } from '../src/object-store.js'
import { connectRedis } from '../src/redis-url.js'
import type { WatchEvent } from '../src/watch.js'
import { startCluster, startRedis, until, type RedisClusterSet, type RedisServer } from './redis-harness.js'

interface TestNode {
  readonly key: NodePrivateKey
  readonly peerId: string
  readonly wg: string
}

async function newNode(): Promise<TestNode> {
  const key = await generateKeyPair('Ed25519')
  return { key, peerId: peerIdFromPrivateKey(key).toString(), wg: randomBytes(32).toString('base64') }
}

function sign(node: TestNode, sequence: number, extra: { blocks?: string[]; labels?: Record<string, string> } = {}): Promise<SignedNodeRecord> {
  return signNodeRecord(node.key, {
    wireguardPublicKey: node.wg,
    endpoints: ['203.0.113.7:51820', '[2001:db8::7]:51820', 'node-a.example.net:51821'],
    blocks: extra.blocks ?? [],
    labels: extra.labels ?? { 'topology.kubernetes.io/zone': 'eu-1a' },
    hostname: 'node-a',
    sequence,
  })
}

async function rejects<T extends Error>(p: Promise<unknown>, type: abstract new (...args: never[]) => T, check?: (err: T) => void): Promise<T> {
  try {
    await p
  } catch (err) {
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`)
    check?.(err)
    return err
  }
  assert.fail(`expected ${type.name}, but it succeeded`)
}

const tokenProblem = (reason: JoinTokenProblem) => (err: JoinTokenInvalidError) => {
  assert.equal(err.code, 'ERR_JOIN_TOKEN_INVALID')
  assert.equal(err.reason, reason)
}

describe('node records (pure)', () => {
  it('sign and verify round trip; the stored form verifies for agents once admitted', async () => {
    const n = await newNode()
    const signed = await sign(n, 1, { blocks: ['10.244.0.64/26'] })
    assert.equal(signed.record.peerId, n.peerId)
    assert.equal(Buffer.from(signed.signature, 'base64').length, 64)
    assert.deepEqual(await verifySignedNodeRecord(signed), signed.record)
    // Survives a trip through JSON text, as it does through Redis.
    assert.deepEqual(await verifySignedNodeRecord(JSON.parse(JSON.stringify(signed))), signed.record)
    const pending = { ...signed, admitted: false, admittedBy: null }
    await rejects(verifyNodeRecord(pending), NodeNotAdmittedError)
    assert.deepEqual(await verifyNodeRecord(pending, { allowPending: true }), signed.record)
    assert.deepEqual(await verifyNodeRecord({ ...signed, admitted: true, admittedBy: 'token:abc123' }, { key: n.peerId }), signed.record)
    await rejects(verifyNodeValue({ ...signed, admitted: true, admittedBy: 'approval' }, { key: (await newNode()).peerId }), NodeRecordInvalidError, (e) =>
      assert.match(e.message, /stored under/),
    )
    await rejects(verifyNodeValue({ ...signed, admitted: true, admittedBy: null }), NodeRecordInvalidError)
    // The domain prefix is part of what is signed.
    assert.ok(Buffer.from(nodeRecordSigningBytes(signed.record)).toString('utf8').startsWith('flatnet-node-record/v1\n'))
  })

  it('refuses forged records: another key, altered after signing, a non-Ed25519 PeerId', async () => {
    const a = await newNode()
    const b = await newNode()
    const signed = await sign(a, 1)
    const byB = Buffer.from(await b.key.sign(nodeRecordSigningBytes(signed.record))).toString('base64')
    await rejects(verifySignedNodeRecord({ record: signed.record, signature: byB }), NodeRecordForgedError, (e) => assert.equal(e.code, 'ERR_NODE_RECORD_FORGED'))
    const altered = { record: { ...signed.record, endpoints: ['198.51.100.1:51820'] }, signature: signed.signature }
    await rejects(verifySignedNodeRecord(altered), NodeRecordForgedError)
    const noDomain = Buffer.from(await a.key.sign(Buffer.from(canonicalJson(signed.record)))).toString('base64')
    await rejects(verifySignedNodeRecord({ record: signed.record, signature: noDomain }), NodeRecordForgedError)

    const secp = await generateKeyPair('secp256k1')
    const secpRecord = { ...signed.record, peerId: peerIdFromPrivateKey(secp).toString() }
    const secpSig = Buffer.from(await secp.sign(nodeRecordSigningBytes(secpRecord as NodeRecord))).toString('base64')
    await rejects(verifySignedNodeRecord({ record: secpRecord, signature: secpSig }), NodeRecordInvalidError, (e) => {
      assert.equal(e.code, 'ERR_NODE_RECORD_INVALID')
      assert.match(e.message, /secp256k1 PeerId; node ids must be Ed25519/)
    })
    await rejects(signNodeRecord(secp, { wireguardPublicKey: a.wg, endpoints: [], blocks: [], sequence: 1 }), NodeRecordInvalidError)
    await rejects(verifySignedNodeRecord({ record: signed.record, signature: signed.signature.slice(4) }), NodeRecordInvalidError)
    await rejects(verifySignedNodeRecord({ ...signed, admitted: true }), NodeRecordInvalidError, (e) => assert.match(e.message, /admitted: unknown field/))
  })

  it('validates every field strictly, listing each problem', async () => {
    const n = await newNode()
    const good = (await sign(n, 7)).record
    assert.deepEqual(validateNodeRecord(good), good)
    const bad = {
      ...good,
      wireguardPublicKey: Buffer.alloc(31, 1).toString('base64'),
      endpoints: ['10.0.0.1', '2001:db8::1:51820', '[2001:0db8::1]:51820', '10.0.0.1:0', '010.0.0.1:5', 'Upper.example:1'],
      blocks: ['10.0.0.1/24', '10.1.0.0/16', '10.1.0.0/16', 'nope'],
      labels: { 'bad key!': 'x', ok: 'not ok!' },
      hostname: '-x',
      issuedAt: 'yesterday',
      sequence: 1.5,
      extra: true,
    }
    const err = await rejects(Promise.resolve().then(() => validateNodeRecord(bad)), NodeRecordInvalidError)
    const text = err.issues.join('\n')
    for (const want of [
      /extra: unknown field/,
      /wireguardPublicKey: .* not base64 of 32 bytes/,
      /endpoints\[0\]: "10\.0\.0\.1" is not 'host:port'/,
      /endpoints\[1\]/,
      /endpoints\[2\]: .*write the address as \[2001:db8::1\]/,
      /endpoints\[3\]: .*port must be 1 to 65535/,
      /endpoints\[4\]: .*not an IPv4 address/,
      /endpoints\[5\]: .*host "Upper.example"/,
      /blocks\[0\]: "10.0.0.1\/24" has host bits set/,
      /blocks\[2\]: "10.1.0.0\/16" is listed twice/,
      /blocks\[3\]: "nope" is not a CIDR/,
      /labels: key "bad key!"/,
      /labels.ok: "not ok!"/,
      /hostname: "-x"/,
      /issuedAt: must be an ISO 8601 time/,
      /sequence: must be an integer/,
    ]) {
      assert.match(text, want)
    }
    assert.equal(err.issues.length, 16)
    await rejects(sign(n, 0), NodeRecordInvalidError, (e) => assert.match(e.message, /sequence/))
    await rejects(
      Promise.resolve().then(() => validateNodeRecord({ ...good, wireguardPublicKey: Buffer.alloc(32).toString('base64') })),
      NodeRecordInvalidError,
      (e) => assert.match(e.message, /all-zero/),
    )
  })

  it('carries mesh addresses when given, and refuses ones that are not TCP multiaddrs', async () => {
    const n = await newNode()
    const good = (await sign(n, 3)).record
    const withMesh = { ...good, meshAddrs: ['/ip4/192.0.2.10/tcp/7946', '/ip6/2001:db8::1/tcp/7946', '/dns4/node-a.example/tcp/7946'] }
    assert.deepEqual(validateNodeRecord(withMesh), withMesh)
    const err = await rejects(
      Promise.resolve().then(() => validateNodeRecord({ ...good, meshAddrs: ['/ip4/192.0.2.10/udp/7946', '/ip4/192.0.2.10/tcp/7946/p2p/x', '/ip4/192.0.2.10/tcp/70000'] })),
      NodeRecordInvalidError,
    )
    assert.deepEqual(
      err.issues.map((i) => i.replace(/:.*/, '')),
      ['meshAddrs[0]', 'meshAddrs[1]', 'meshAddrs[2]'],
    )
    assert.match(err.issues[2] as string, /port must be 1 to 65535/)
  })
})

interface Env {
  readonly store: FlatnetStore
  readonly ipam: Ipam
  readonly registry: NodeRegistry
}

let clusterSeq = 0
async function env(redis: RedisClient): Promise<Env> {
  const store = new FlatnetStore({ redis, where: 'test' }, { cluster: `nr${++clusterSeq}-${process.pid}` })
  const ipam = new Ipam(store)
  await ipam.ensurePool({ cidr: '10.244.0.0/16', blockPrefix: 26 })
  return { store, ipam, registry: new NodeRegistry(store, ipam) }
}

/** Sets a token's expiry to the past, as only time would, by editing its stored JSON. */
async function expireToken(e: Env, id: string): Promise<void> {
  const key = `${e.store.keys.prefix}node:tokens`
  const t = JSON.parse((await e.store.client.hget(key, id)) as string) as Record<string, unknown>
  await e.store.client.hset(key, id, JSON.stringify({ ...t, expiresAt: Number(t.expiresAt) - 25 * 3600 * 1000 }))
}

/** A scenario both topologies run: pending, approval, token join, replay, revoke with watch. */
async function lifecycle(e: Env): Promise<void> {
  const { registry, store, ipam } = e
  const a = await newNode()
  const blockA = await ipam.claimBlock(a.peerId)
  const r1 = await registry.register(await sign(a, 1, { blocks: [blockA] }))
  assert.deepEqual({ admitted: r1.admitted, admittedBy: r1.admittedBy, result: r1.result }, { admitted: false, admittedBy: null, result: 'created' })
  await rejects(registry.requireAdmitted(a.peerId), NodeNotAdmittedError)
  const stored = await store.get('Node', a.peerId)
  await rejects(verifyNodeRecord(stored?.value), NodeNotAdmittedError)

  const approved = await registry.approve(a.peerId)
  assert.equal(approved.result, 'configured')
  assert.equal(approved.revision, r1.revision + 1)
  assert.deepEqual((await registry.approve(a.peerId)).result, 'unchanged')
  const entryA = await registry.requireAdmitted(a.peerId)
  assert.equal(entryA.admittedBy, 'approval')
  assert.deepEqual(await verifyNodeRecord((await store.get('Node', a.peerId))?.value, { key: a.peerId }), entryA.record)
  // The script builds the value itself: it must be the very text canonicalJson would write.
  const raw = (await store.client.hget(store.keys.objects('Node'), a.peerId)) as string
  assert.equal(raw.slice(raw.indexOf('\n', raw.indexOf('\n') + 1) + 1), canonicalJson((await store.get('Node', a.peerId))?.value))

  const before = await store.revision()
  await rejects(registry.register(await sign(a, 1, { blocks: [blockA] })), NodeRecordStaleError, (err) => {
    assert.equal(err.code, 'ERR_NODE_RECORD_STALE')
    assert.equal(err.storedSequence, 1)
  })
  assert.equal(await store.revision(), before)
  const r2 = await registry.register(await sign(a, 2, { blocks: [blockA] }))
  assert.deepEqual({ admitted: r2.admitted, admittedBy: r2.admittedBy, result: r2.result }, { admitted: true, admittedBy: 'approval', result: 'configured' })

  const token = await registry.createToken({ ttlSeconds: 600, description: 'rack 7' })
  const b = await newNode()
  const rb = await registry.register(await sign(b, 1), { joinToken: token.token })
  assert.deepEqual({ admitted: rb.admitted, admittedBy: rb.admittedBy }, { admitted: true, admittedBy: `token:${token.id}` })
  assert.deepEqual(
    (await registry.list()).map((n) => [n.peerId, n.admitted, n.record.sequence]),
    [
      [a.peerId, true, 2],
      [b.peerId, true, 1],
    ].sort((x, y) => ((x[0] as string) < (y[0] as string) ? -1 : 1)),
  )

  const events: WatchEvent[] = []
  const watch = store.watch({ kinds: ['Node'], onEvent: (ev) => events.push(ev) })
  try {
    await watch.whenInSync()
    const revoked = await registry.revoke(a.peerId)
    assert.equal(revoked.removed, true)
    assert.deepEqual(revoked.releasedBlocks, [blockA])
    await until('the delete to reach the watcher', 5_000, () => events.some((ev) => ev.type === 'delete' && ev.key === a.peerId))
    const del = events.find((ev) => ev.type === 'delete')
    assert.ok(del && del.type === 'delete')
    assert.equal(del.revision, revoked.revision)
  } finally {
    await watch.stop()
  }
  assert.equal(await registry.get(a.peerId), undefined)
  assert.deepEqual(await ipam.blocksOf(a.peerId), [])
  assert.equal(await ipam.ownerOfBlock(blockA), undefined)
  await rejects(registry.register(await sign(a, 3), { joinToken: token.token }), NodeRevokedError, (err) => assert.equal(err.code, 'ERR_NODE_REVOKED'))
  assert.deepEqual(await registry.listRevoked(), [a.peerId])
}

describe('node registry (standalone Redis)', () => {
  let server: RedisServer
  let redis: RedisClient

  before(async () => {
    server = await startRedis()
    redis = connectRedis(server.url)
  })

  after(async () => {
    redis?.disconnect()
    await server?.stop()
  })

  it('lifecycle: pending, approve, replay refused, token join, revoke seen by a watcher', async () => {
    await lifecycle(await env(redis))
  })

  it('refuses forged records without writing anything', async () => {
    const { registry, store } = await env(redis)
    const a = await newNode()
    const b = await newNode()
    const signed = await sign(a, 1)
    const before = await store.revision()
    const byB = Buffer.from(await b.key.sign(nodeRecordSigningBytes(signed.record))).toString('base64')
    await rejects(registry.register({ record: signed.record, signature: byB }), NodeRecordForgedError)
    await rejects(registry.register({ record: { ...signed.record, labels: { role: 'gateway' } }, signature: signed.signature }), NodeRecordForgedError)
    const secp = await generateKeyPair('secp256k1')
    const secpRecord = { ...signed.record, peerId: peerIdFromPrivateKey(secp).toString() }
    await rejects(registry.register({ record: secpRecord, signature: Buffer.from(await secp.sign(nodeRecordSigningBytes(secpRecord))).toString('base64') }), NodeRecordInvalidError)
    assert.equal(await store.revision(), before)
    assert.deepEqual(await store.list('Node'), [])
  })

  it('checks what it reads: a value tampered with in Redis is not served', async () => {
    const { registry, store } = await env(redis)
    const a = await newNode()
    await registry.register(await sign(a, 1))
    const stored = await store.get('Node', a.peerId)
    const value = stored?.value as Record<string, unknown>
    const tampered = { ...value, admitted: true, admittedBy: 'approval', record: { ...(value.record as object), endpoints: ['198.51.100.66:51820'] } }
    await store.write([{ op: 'put', kind: 'Node', key: a.peerId, value: tampered }])
    await rejects(registry.get(a.peerId), NodeRecordForgedError)
    await rejects(registry.approve(a.peerId), NodeRecordForgedError)
    await rejects(verifyNodeRecord((await store.get('Node', a.peerId))?.value), NodeRecordForgedError)
    const { nodes, invalid } = await registry.scan()
    assert.deepEqual(nodes, [])
    assert.deepEqual(
      invalid.map((i) => [i.key, i.error.code]),
      [[a.peerId, 'ERR_NODE_RECORD_FORGED']],
    )
    assert.deepEqual(await registry.list(), [])
  })

  it('join tokens: multi-use, listed without secrets; expired, deleted, wrong or malformed tokens refused', async () => {
    const e = await env(redis)
    const { registry, store } = e
    const token = await registry.createToken({ ttlSeconds: 3600 })
    assert.match(token.token, /^fnt_[a-z0-9]{10}\.[A-Za-z0-9_-]{43}$/)
    assert.equal(parseJoinToken(token.token).id, token.id)
    const expiresIn = Date.parse(token.expiresAt) - Date.now()
    assert.ok(expiresIn > 3590_000 && expiresIn <= 3610_000, `expiresAt ${token.expiresAt}`)
    const secret = token.token.split('.')[1] as string
    const rawTokens = JSON.stringify(await store.client.hgetall(`${store.keys.prefix}node:tokens`))
    assert.ok(!rawTokens.includes(secret), 'the secret itself must not be stored')
    const listed = await registry.listTokens()
    assert.deepEqual(listed.map((t) => [t.id, t.expired]), [[token.id, false]])
    assert.ok(!JSON.stringify(listed).includes(secret))

    const n1 = await newNode()
    const n2 = await newNode()
    assert.equal((await registry.register(await sign(n1, 1), { joinToken: token.token })).admittedBy, `token:${token.id}`)
    assert.equal((await registry.register(await sign(n2, 1), { joinToken: token.token })).admitted, true)

    const before = await store.revision()
    const n3 = await newNode()
    await rejects(registry.register(await sign(n3, 1), { joinToken: `fnt_${token.id}.${'x'.repeat(43)}` }), JoinTokenInvalidError, tokenProblem('mismatch'))
    await rejects(registry.register(await sign(n3, 1), { joinToken: 'fnt_zzzzzzzz.' + 'y'.repeat(43) }), JoinTokenInvalidError, tokenProblem('unknown'))
    const malformed = await rejects(registry.register(await sign(n3, 1), { joinToken: `${token.token}!` }), JoinTokenInvalidError, tokenProblem('malformed'))
    assert.ok(!malformed.message.includes(secret))

    await expireToken(e, token.id)
    await rejects(registry.register(await sign(n3, 1), { joinToken: token.token }), JoinTokenInvalidError, tokenProblem('expired'))
    assert.deepEqual((await registry.listTokens()).map((t) => t.expired), [true])
    // Admitted nodes keep re-publishing whatever token their configuration still holds.
    assert.equal((await registry.register(await sign(n1, 2), { joinToken: token.token })).admitted, true)
    const afterRepublish = await store.revision()
    assert.equal(afterRepublish, before + 1)

    const other = await registry.createToken({ ttlSeconds: 60, description: 'short' })
    // Creating a token drops the expired ones.
    assert.deepEqual((await registry.listTokens()).map((t) => [t.id, t.description]), [[other.id, 'short']])
    assert.equal(await registry.deleteToken(other.id), true)
    assert.equal(await registry.deleteToken(other.id), false)
    await rejects(registry.register(await sign(n3, 1), { joinToken: other.token }), JoinTokenInvalidError, tokenProblem('unknown'))
    assert.equal(await store.get('Node', n3.peerId), undefined)
    assert.equal(await store.revision(), afterRepublish)
    // A node already admitted by a token stays admitted after the token is gone.
    assert.equal((await registry.requireAdmitted(n2.peerId)).admittedBy, `token:${token.id}`)
    await rejects(registry.createToken({ ttlSeconds: 0 }), Error, (err) => assert.equal((err as { code?: string }).code, 'ERR_INVALID_ARGUMENT'))
  })

  it('refuses a record claiming a block that is not the node\'s', async () => {
    const { registry, store, ipam } = await env(redis)
    const a = await newNode()
    const b = await newNode()
    const blockA = await ipam.claimBlock(a.peerId)
    const blockB = await ipam.claimBlock(b.peerId)
    const before = await store.revision()
    await rejects(registry.register(await sign(a, 1, { blocks: [blockA, blockB] })), NodeBlockNotAssignedError, (err) => {
      assert.equal(err.code, 'ERR_NODE_BLOCK_NOT_ASSIGNED')
      assert.equal(err.block, blockB)
      assert.equal(err.owner, b.peerId)
    })
    await rejects(registry.register(await sign(a, 1, { blocks: ['10.244.255.192/26'] })), NodeBlockNotAssignedError, (err) => assert.equal(err.owner, undefined))
    await rejects(registry.register(await sign(a, 1, { blocks: ['192.168.0.0/26'] })), NodeBlockNotAssignedError)
    assert.equal(await store.revision(), before)
    assert.equal((await registry.register(await sign(a, 1, { blocks: [blockA] }))).result, 'created')
  })

  it('revoked nodes stay out until unrevoked; approve and revoke of unknown nodes', async () => {
    const { registry, ipam } = await env(redis)
    const a = await newNode()
    await rejects(registry.approve(a.peerId), Error, (err) => assert.equal((err as { code?: string }).code, 'ERR_NOT_FOUND'))
    await rejects(registry.approve('not-a-peer-id'), Error, (err) => assert.equal((err as { code?: string }).code, 'ERR_INVALID_ARGUMENT'))
    // Revoking a node that never registered bars it in advance.
    const pre = await registry.revoke(a.peerId)
    assert.deepEqual({ removed: pre.removed, blocks: pre.releasedBlocks }, { removed: false, blocks: [] })
    await rejects(registry.register(await sign(a, 1)), NodeRevokedError)
    assert.equal(await registry.unrevoke(a.peerId), true)
    assert.equal(await registry.unrevoke(a.peerId), false)
    await registry.register(await sign(a, 1))
    await registry.approve(a.peerId)
    const block = await ipam.claimBlock(a.peerId)
    await registry.register(await sign(a, 2, { blocks: [block] }))
    const revoked = await registry.revoke(a.peerId)
    assert.deepEqual(revoked.releasedBlocks, [block])
    await rejects(registry.approve(a.peerId), Error, (err) => assert.equal((err as { code?: string }).code, 'ERR_NOT_FOUND'))
    assert.equal(await registry.unrevoke(a.peerId), true)
    // Back in, but admission starts over: a revoked node's approval does not survive.
    const again = await registry.register(await sign(a, 3))
    assert.equal(again.admitted, false)
  })
})

describe('node registry (Redis Cluster)', () => {
  let cluster: RedisClusterSet
  let redis: RedisClient

  before(async () => {
    cluster = await startCluster()
    redis = connectRedis(cluster.url)
  })

  after(async () => {
    redis?.disconnect()
    await cluster?.stop()
  })

  it('the same lifecycle, with every script in one slot', async () => {
    await lifecycle(await env(redis))
  })
})
