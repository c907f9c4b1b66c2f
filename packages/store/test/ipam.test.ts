import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { cidrContains, parseCidr, parseIp } from '@flatnet/core'
import { Ipam, IpamExhaustedError, IpamInvalidError, IpamPoolInUseError, validatePool } from '../src/ipam.js'
import { NotFoundError } from '../src/errors.js'
import { FlatnetStore } from '../src/object-store.js'
import { connectRedis } from '../src/redis-url.js'
import { startCluster, startRedis, type RedisServer } from './redis-harness.js'

let clusters = 0
/** Each test gets a flatnet cluster of its own on the shared server, so tests never see each other's keys. */
function openStore(url: string): FlatnetStore {
  return new FlatnetStore({ redis: connectRedis(url), where: url }, { cluster: `ipam-t${++clusters}` })
}

async function withIpam<T>(url: string, fn: (ipam: Ipam, store: FlatnetStore) => Promise<T>): Promise<T> {
  const store = openStore(url)
  try {
    return await fn(new Ipam(store), store)
  } finally {
    await store.close()
  }
}

function inCidr(ip: string, cidr: string): boolean {
  const c = parseCidr(cidr)
  const a = parseIp(ip)
  return c !== undefined && a !== undefined && cidrContains(c, a)
}

/** Allocation, release and reuse: run on standalone Redis and on Redis Cluster alike. */
async function allocateReleaseReuse(ipam: Ipam): Promise<void> {
  await ipam.ensurePool({ cidr: '10.10.0.0/24', blockPrefix: 26 })
  const a = await ipam.allocate({ node: 'n1', handle: 'a' })
  const b = await ipam.allocate({ node: 'n1', handle: 'b' })
  const c = await ipam.allocate({ node: 'n1', handle: 'c' })
  assert.deepEqual([a, b, c], [
    { ip: '10.10.0.1', block: '10.10.0.0/26' },
    { ip: '10.10.0.2', block: '10.10.0.0/26' },
    { ip: '10.10.0.3', block: '10.10.0.0/26' },
  ])
  assert.deepEqual(await ipam.allocate({ node: 'n1', handle: 'b' }), b, 'the same handle gets the same address')
  assert.equal(await ipam.release({ node: 'n1', handle: 'b' }), true)
  assert.equal(await ipam.release({ node: 'n1', handle: 'b' }), false, 'a released handle is gone')
  assert.deepEqual(await ipam.allocate({ node: 'n1', handle: 'd' }), b, 'the freed address is handed out again')
  const other = await ipam.allocate({ node: 'n2', handle: 'a' })
  assert.deepEqual(other, { ip: '10.10.0.64', block: '10.10.0.64/26' }, 'another node gets a block of its own')
  assert.deepEqual(await ipam.blocksOf('n1'), ['10.10.0.0/26'])
  assert.equal(await ipam.ownerOfBlock('10.10.0.64/26'), 'n2')
  const usage = await ipam.usage()
  assert.deepEqual(usage.pools, [{ name: 'default', cidr: '10.10.0.0/24', blockPrefix: 26, blocks: { total: 4, claimed: 2 }, addresses: { capacity: 254, allocated: 4 } }])
  assert.deepEqual(usage.blocks, [
    { cidr: '10.10.0.0/26', node: 'n1', allocated: 3, capacity: 63 },
    { cidr: '10.10.0.64/26', node: 'n2', allocated: 1, capacity: 64 },
  ])
  assert.deepEqual(await ipam.releaseNode('n1'), { blocks: ['10.10.0.0/26'], addresses: 3 })
  assert.equal(await ipam.ownerOfBlock('10.10.0.0/26'), undefined)
}

describe('IPAM on standalone Redis', () => {
  let redis: RedisServer
  before(async () => {
    redis = await startRedis()
  })
  after(async () => {
    await redis?.stop()
  })

  it('allocates, releases and reuses addresses; a handle keeps its address', async () => {
    await withIpam(redis.url, allocateReleaseReuse)
  })

  it('answers the same address for a repeated handle, and per node', async () => {
    await withIpam(redis.url, async (ipam) => {
      await ipam.ensurePool({ cidr: '10.20.0.0/24' })
      const first = await ipam.allocate({ node: 'n1', handle: 'pod-1' })
      for (let i = 0; i < 5; i++) await ipam.allocate({ node: 'n1', handle: `other-${i}` })
      assert.deepEqual(await ipam.allocate({ node: 'n1', handle: 'pod-1' }), first)
      const [x, y] = await Promise.all([ipam.allocate({ node: 'n1', handle: 'same' }), ipam.allocate({ node: 'n1', handle: 'same' })])
      assert.deepEqual(x, y, 'concurrent requests for one handle get one address')
      const elsewhere = await ipam.allocate({ node: 'n2', handle: 'pod-1' })
      assert.notEqual(elsewhere.ip, first.ip, 'handles are per node')
      assert.equal((await ipam.usage()).pools[0]?.addresses.allocated, 8)
    })
  })

  it('never hands out the pool network and broadcast addresses; fills block after block; then says exhausted', async () => {
    await withIpam(redis.url, async (ipam) => {
      await ipam.ensurePool({ cidr: '10.30.0.0/28', blockPrefix: 30 })
      const got: { ip: string; block: string }[] = []
      for (let i = 0; i < 14; i++) got.push(await ipam.allocate({ node: 'n1', handle: `h${i}` }))
      const ips = got.map((g) => g.ip)
      assert.deepEqual(ips, ['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12', '13', '14'].map((x) => `10.30.0.${x}`))
      for (const g of got) assert.ok(inCidr(g.ip, g.block), `${g.ip} lies in ${g.block}`)
      assert.deepEqual(got.slice(2, 4).map((g) => g.block), ['10.30.0.0/30', '10.30.0.4/30'], 'the second block starts when the first is full')
      assert.deepEqual(await ipam.blocksOf('n1'), ['10.30.0.0/30', '10.30.0.4/30', '10.30.0.8/30', '10.30.0.12/30'])
      await assert.rejects(ipam.allocate({ node: 'n1', handle: 'one-too-many' }), (err: unknown) => {
        assert.ok(err instanceof IpamExhaustedError)
        assert.equal(err.code, 'ERR_IPAM_EXHAUSTED')
        assert.match(err.message, /IPAM pool "default" is exhausted: all 4 of its blocks are claimed and the 4 blocks node "n1" holds there are full/)
        return true
      })
      await assert.rejects(ipam.allocate({ node: 'n2', handle: 'x' }), /all 4 of its blocks are claimed and node "n2" holds no block in it/)
      await assert.rejects(ipam.claimBlock('n2'), IpamExhaustedError)
      const usage = await ipam.usage()
      assert.deepEqual(usage.pools[0]?.addresses, { capacity: 14, allocated: 14 })
      assert.deepEqual(usage.blocks.map((b) => b.capacity), [3, 4, 4, 3])
      // A freed address in the middle of a full block is found again.
      assert.equal(await ipam.release({ node: 'n1', handle: 'h5' }), true)
      assert.deepEqual(await ipam.allocate({ node: 'n1', handle: 'again' }), { ip: '10.30.0.6', block: '10.30.0.4/30' })
    })
  })

  it('keeps nodes in their own blocks and gives a node more blocks as it fills them', async () => {
    await withIpam(redis.url, async (ipam) => {
      await ipam.ensurePool({ cidr: '10.40.0.0/28', blockPrefix: 30 })
      assert.equal(await ipam.claimBlock('agent-a'), '10.40.0.0/30')
      assert.equal(await ipam.claimBlock('agent-a'), '10.40.0.0/30', 'an agent restarting keeps its block')
      assert.equal(await ipam.claimBlock('agent-b'), '10.40.0.4/30')
      const a = []
      for (let i = 0; i < 4; i++) a.push(await ipam.allocate({ node: 'agent-a', handle: `a${i}` }))
      assert.deepEqual(a.map((x) => x.ip), ['10.40.0.1', '10.40.0.2', '10.40.0.3', '10.40.0.8'])
      assert.equal(a[3]?.block, '10.40.0.8/30', "agent-a's next block skips agent-b's")
      assert.deepEqual((await ipam.allocate({ node: 'agent-b', handle: 'b0' })).ip, '10.40.0.4')
      assert.deepEqual(await ipam.blocksOf('agent-a'), ['10.40.0.0/30', '10.40.0.8/30'])
      assert.equal(await ipam.ownerOfBlock('10.40.0.8/30'), 'agent-a')
      assert.equal(await ipam.ownerOfBlock('10.40.0.12/30'), undefined, 'unclaimed')
      assert.equal(await ipam.ownerOfBlock('10.40.0.8/29'), undefined, 'not a block of the pool')
      assert.equal(await ipam.ownerOfBlock('192.168.0.0/30'), undefined, 'outside every pool')
    })
  })

  it('releaseNode frees every address and block of the node; another node claims them', async () => {
    await withIpam(redis.url, async (ipam) => {
      await ipam.ensurePool({ cidr: '10.50.0.0/29', blockPrefix: 30 })
      await ipam.allocate({ node: 'gone', handle: 'h1' })
      await ipam.allocate({ node: 'gone', handle: 'h2' })
      await ipam.allocate({ node: 'gone', handle: 'h3' })
      await ipam.allocate({ node: 'gone', handle: 'h4' })
      assert.deepEqual(await ipam.blocksOf('gone'), ['10.50.0.0/30', '10.50.0.4/30'])
      await assert.rejects(ipam.allocate({ node: 'new', handle: 'x' }), IpamExhaustedError)

      assert.deepEqual(await ipam.releaseNode('gone'), { blocks: ['10.50.0.0/30', '10.50.0.4/30'], addresses: 4 })
      assert.deepEqual(await ipam.blocksOf('gone'), [])
      assert.equal(await ipam.release({ node: 'gone', handle: 'h1' }), false, 'its handles went with it')
      assert.deepEqual(await ipam.releaseNode('gone'), { blocks: [], addresses: 0 }, 'releasing again is harmless')
      const usage = await ipam.usage()
      assert.deepEqual(usage.pools[0]?.blocks, { total: 2, claimed: 0 })
      assert.deepEqual(usage.blocks, [])

      assert.deepEqual(await ipam.allocate({ node: 'new', handle: 'x' }), { ip: '10.50.0.1', block: '10.50.0.0/30' }, 'the reserved network address is reserved again')
      assert.equal(await ipam.claimBlock('other'), '10.50.0.4/30')
      const last = []
      for (let i = 0; i < 3; i++) last.push((await ipam.allocate({ node: 'other', handle: `o${i}` })).ip)
      assert.deepEqual(last, ['10.50.0.4', '10.50.0.5', '10.50.0.6'], 'the reserved broadcast address is reserved again')
    })
  })

  it('refuses invalid pools and arguments with clear messages', async () => {
    const invalid = (spec: Parameters<typeof validatePool>[0], message: RegExp): void => {
      assert.throws(() => validatePool(spec), (err: unknown) => err instanceof IpamInvalidError && err.code === 'ERR_IPAM_INVALID' && message.test(err.message))
    }
    invalid({ cidr: '10.0.0.0' }, /"10.0.0.0" is not a CIDR/)
    invalid({ cidr: '10.0.0.300/24' }, /is not a CIDR/)
    invalid({ cidr: '10.0.0.1/24' }, /host bits set; did you mean 10.0.0.0\/24\?/)
    invalid({ cidr: '10.0.0.0/26', blockPrefix: 26 }, /blockPrefix \/26 must be longer than the pool's \/26/)
    invalid({ cidr: '10.0.0.0/24', blockPrefix: 20 }, /must be longer than the pool's \/24/)
    invalid({ cidr: '10.0.0.0/24', blockPrefix: 31 }, /IPv4 blocks must be \/30 or shorter/)
    invalid({ cidr: 'fd00::/64', blockPrefix: 127 }, /IPv6 blocks must be \/126 or shorter/)
    invalid({ cidr: 'fd00::/64', blockPrefix: 96 }, /IPv6 blocks must be \/112 or longer \(at most 65536 addresses\)/)
    invalid({ cidr: '10.0.0.0/8', blockPrefix: 30 }, /makes 2\^22 blocks; at most 2\^20 are allowed/)
    invalid({ cidr: '10.0.0.0/24', blockPrefix: 26.5 }, /blockPrefix must be an integer/)
    invalid({ name: 'Bad_Name', cidr: '10.0.0.0/24' }, /invalid IPAM pool name "Bad_Name"/)
    assert.deepEqual(validatePool({ cidr: '10.0.0.0/8', blockPrefix: 28 }), { name: 'default', cidr: '10.0.0.0/8', blockPrefix: 28, family: 4, blocks: 2 ** 20, blockSize: 16 })
    assert.deepEqual(validatePool({ name: 'v6', cidr: 'FD00:0::/104', blockPrefix: 122 }), { name: 'v6', cidr: 'fd00::/104', blockPrefix: 122, family: 6, blocks: 2 ** 18, blockSize: 64 })

    await withIpam(redis.url, async (ipam) => {
      await assert.rejects(ipam.ensurePool({ cidr: '10.0.0.0/24', blockPrefix: 31 }), IpamInvalidError)
      assert.equal((await ipam.ensurePool({ cidr: '10.60.0.0/24', blockPrefix: 28 })).result, 'created')
      assert.equal((await ipam.ensurePool({ cidr: '10.60.0.0/24', blockPrefix: 28 })).result, 'unchanged')
      assert.equal((await ipam.ensurePool({ cidr: '10.60.0.0/24', blockPrefix: 26 })).result, 'updated', 'nothing is claimed yet')
      await assert.rejects(ipam.ensurePool({ name: 'other', cidr: '10.60.0.128/25' }), /IPAM pool "other": 10.60.0.128\/25 overlaps pool "default" \(10.60.0.0\/24\)/)
      await assert.rejects(ipam.ensurePool({ name: 'other', cidr: '10.0.0.0/8', blockPrefix: 16 }), /overlaps pool "default"/)
      assert.equal((await ipam.ensurePool({ name: 'other', cidr: '10.61.0.0/24' })).result, 'created')
      assert.equal((await ipam.ensurePool({ name: 'v6', cidr: 'fd00:10::/120', blockPrefix: 124 })).result, 'created', 'families never overlap')

      await ipam.allocate({ node: 'n1', handle: 'h' })
      await assert.rejects(ipam.ensurePool({ cidr: '10.60.0.0/23', blockPrefix: 26 }), (err: unknown) => {
        assert.ok(err instanceof IpamPoolInUseError)
        assert.equal(err.code, 'ERR_IPAM_POOL_IN_USE')
        assert.equal(err.message, 'IPAM pool "default" is 10.60.0.0/24 in /26 blocks and 1 of its blocks are claimed: it cannot change to 10.60.0.0/23 in /26 blocks until every node using it is removed')
        return true
      })
      assert.equal((await ipam.ensurePool({ cidr: '10.60.0.0/24', blockPrefix: 26 })).result, 'unchanged', 'the same definition is still fine')
      await ipam.releaseNode('n1')
      assert.equal((await ipam.ensurePool({ cidr: '10.60.0.0/23', blockPrefix: 26 })).result, 'updated')
      assert.deepEqual((await ipam.pools()).map((p) => `${p.name} ${p.cidr} /${p.blockPrefix}`), ['default 10.60.0.0/23 /26', 'other 10.61.0.0/24 /26', 'v6 fd00:10::/120 /124'])

      await assert.rejects(ipam.allocate({ node: 'n1', handle: 'h', pool: 'nope' }), (err: unknown) => err instanceof NotFoundError && err.message === 'IPAM pool "nope" not found')
      await assert.rejects(ipam.claimBlock('n1', 'nope'), NotFoundError)
      await assert.rejects(ipam.allocate({ node: 'bad node', handle: 'h' }), /invalid node name "bad node"/)
      await assert.rejects(ipam.allocate({ node: 'a:b', handle: 'h' }), IpamInvalidError)
      await assert.rejects(ipam.allocate({ node: 'n1', handle: '' }), /invalid IPAM handle/)
      await assert.rejects(ipam.ownerOfBlock('nonsense'), /"nonsense" is not a CIDR/)
    })
  })

  it('computes IPv6 addresses and blocks from indices', async () => {
    await withIpam(redis.url, async (ipam) => {
      await ipam.ensurePool({ name: 'v6', cidr: 'fd00:1:2:3::/120', blockPrefix: 122 })
      assert.equal(await ipam.claimBlock('n1', 'v6'), 'fd00:1:2:3::/122')
      assert.deepEqual(await ipam.allocate({ node: 'n1', handle: 'h', pool: 'v6' }), { ip: 'fd00:1:2:3::1', block: 'fd00:1:2:3::/122' })
      assert.deepEqual(await ipam.allocate({ node: 'n2', handle: 'h', pool: 'v6' }), { ip: 'fd00:1:2:3::40', block: 'fd00:1:2:3::40/122' })
      assert.equal(await ipam.ownerOfBlock('fd00:1:2:3::40/122'), 'n2')
      const usage = await ipam.usage()
      assert.deepEqual(usage.pools[0]?.addresses, { capacity: 254, allocated: 2 })
      assert.deepEqual(await ipam.releaseNode('n2'), { blocks: ['fd00:1:2:3::40/122'], addresses: 1 })
    })
  })

  it('never hands out an address twice to 50 concurrent allocator processes', { timeout: 45_000 }, async () => {
    const processes = 50
    const perProcess = 20
    const nodes = ['node-a', 'node-b', 'node-c', 'node-d', 'node-e']
    const store = openStore(redis.url)
    const ipam = new Ipam(store)
    const fixture = fileURLToPath(new URL('./fixtures/ipam-allocator.js', import.meta.url))
    const children: ChildProcess[] = []
    try {
      // Small blocks, so that the processes also race to claim blocks, not only addresses.
      await ipam.ensurePool({ cidr: '10.96.0.0/20', blockPrefix: 28 })
      const outputs: string[] = []
      const ready: Promise<void>[] = []
      const done: Promise<{ code: number | null; stderr: string }>[] = []
      for (let i = 0; i < processes; i++) {
        const child = spawn(process.execPath, [fixture, redis.url, store.options.cluster, nodes.join(','), String(perProcess), String(i)], { stdio: ['pipe', 'pipe', 'pipe'] })
        children.push(child)
        outputs[i] = ''
        let stderr = ''
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
        ready.push(
          new Promise((resolve, reject) => {
            child.stdout!.on('data', (d: Buffer) => {
              outputs[i] += d.toString()
              if (outputs[i]!.startsWith('ready\n')) resolve()
            })
            child.once('exit', (code) => reject(new Error(`allocator ${i} exited (${code}) before it was ready: ${stderr}`)))
          }),
        )
        done.push(new Promise((resolve) => child.once('exit', (code) => resolve({ code, stderr }))))
      }
      // Starting 50 node processes takes seconds of CPU on a small machine.
      await bounded(Promise.all(ready), 25_000, 'every allocator process to connect')
      for (const child of children) child.stdin!.write('go\n')
      const exits = await bounded(Promise.all(done), 15_000, 'every allocator process to finish')
      exits.forEach((e, i) => assert.equal(e.code, 0, `allocator ${i} failed: ${e.stderr}`))

      const all = outputs.flatMap((out) => JSON.parse(out.slice('ready\n'.length)) as { node: string; handle: string; ip: string; block: string }[])
      assert.equal(all.length, processes * perProcess)
      const ips = new Set(all.map((r) => r.ip))
      assert.equal(ips.size, all.length, 'every address was handed out once')
      const blocksOf = new Map<string, string[]>()
      for (const node of nodes) blocksOf.set(node, await ipam.blocksOf(node))
      for (const r of all) {
        assert.ok(blocksOf.get(r.node)?.includes(r.block), `${r.block} (${r.ip}) is a block of ${r.node}`)
        assert.ok(inCidr(r.ip, r.block), `${r.ip} lies in ${r.block}`)
        assert.notEqual(r.ip, '10.96.0.0')
        assert.notEqual(r.ip, '10.96.15.255')
      }
      const claimed = [...blocksOf.values()].flat()
      assert.equal(new Set(claimed).size, claimed.length, 'no block has two owners')
      const usage = await ipam.usage()
      assert.equal(usage.pools[0]?.addresses.allocated, processes * perProcess)
      assert.equal(usage.pools[0]?.blocks.claimed, claimed.length)
    } finally {
      for (const child of children) {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      }
      await store.close()
    }
  })
})

describe('IPAM on Redis Cluster', () => {
  it('allocates, releases and reuses addresses with the same scripts', { timeout: 25_000 }, async () => {
    const cluster = await startCluster()
    try {
      await withIpam(cluster.url, allocateReleaseReuse)
    } finally {
      await cluster.stop()
    }
  })
})

async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)))])
  } finally {
    clearTimeout(timer)
  }
}
