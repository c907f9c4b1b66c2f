/**
 * The agent's attach path (WorkloadManager) on a fresh host: forwarding is turned on, and
 * logged, before the first workload; a host whose settings cannot be written gets a clear error
 * for that attach and keeps no address, endpoint or veth of it. A real redis-server (reached
 * over its unix socket from the host's namespace) and real network namespaces.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { connectRedis, FlatnetStore, Ipam } from '@flatnet/store'
import { startRedis, type RedisServer } from '@flatnet/store/testing'
import { workloadInterfaceName } from '../src/dataplane/workload-link.js'
import { failure, inHost, succeeded } from './host-side.js'

const exec = promisify(execFile)
const skip = process.getuid?.() !== 0 ? 'needs root for network namespaces' : false

async function sh(...argv: string[]): Promise<string> {
  return (await exec(argv[0]!, argv.slice(1), { timeout: 10_000 })).stdout
}

const tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`
const NODE = 'node-fw'

describe('workload attach on a fresh host', { skip, timeout: 120_000 }, () => {
  const made: string[] = []
  let redis: RedisServer
  let store: FlatnetStore
  let ipam: Ipam
  let dir: string
  let host: string

  async function netns(role: string): Promise<string> {
    const name = `fn-wf-${tag}-${role}`
    made.push(name)
    await sh('ip', 'netns', 'add', name)
    return name
  }

  before(async () => {
    redis = await startRedis({ unixSocket: true })
    store = new FlatnetStore({ redis: connectRedis(redis.url, { commandTimeoutMs: 5_000 }), where: redis.url }, { cluster: 'default', commandTimeoutMs: 5_000 })
    ipam = new Ipam(store)
    await ipam.ensurePool({ name: 'default', cidr: '10.252.0.0/16', blockPrefix: 26 })
    await ipam.claimBlock(NODE)
    dir = mkdtempSync(join(tmpdir(), 'fn-wf-'))
    host = await netns('h')
    // A fresh host: forwarding off, whatever the machine's own setting is.
    await sh('ip', 'netns', 'exec', host, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0')
  })

  after(async () => {
    for (const name of made) await sh('ip', 'netns', 'del', name).catch(() => undefined)
    await store?.close().catch(() => undefined)
    await redis?.stop()
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  const allocated = async (): Promise<number> => (await ipam.usage()).pools[0]?.addresses.allocated ?? -1

  it('turns forwarding on before the first workload and says so; a read-only /proc/sys/net fails that attach and leaves nothing', async () => {
    const [w1, w2, w3] = [await netns('w1'), await netns('w2'), await netns('w3')]
    const readOnly = join(dir, 'ro')
    mkdirSync(readOnly)
    const base = { redisUrl: `unix://${redis.socketPath as string}`, ipamNode: NODE, stateDir: join(dir, 'state') }
    const before = await allocated()
    const [refused, stillOff, attached, linkRefused] = await inHost(host, {
      binds: [{ at: readOnly, readOnly: true }],
      ops: [
        // Forwarding is off and cannot be turned on: the attach fails before anything is made.
        { op: 'manager-attach', ...base, procSysNet: readOnly, request: { namespace: 'fw', name: 'a', netns: w1 } },
        { op: 'read', path: '/proc/sys/net/ipv4/ip_forward' },
        { op: 'manager-attach', ...base, procSysNet: '/proc/sys/net', request: { namespace: 'fw', name: 'b', netns: w2 } },
        // Forwarding is on now (reading it is enough); the veth's own settings cannot be written.
        { op: 'manager-attach', ...base, procSysNet: readOnly, request: { namespace: 'fw', name: 'c', netns: w3 } },
      ],
    })

    const e1 = failure(refused)
    assert.deepEqual([e1.code, e1.errno, e1.path], ['ERR_HOST_FORWARDING', 'EROFS', `${readOnly}/ipv4/ip_forward`])
    assert.equal(succeeded(stillOff).value, '0')

    const a = succeeded(attached)
    const ip = (a.value as { ips: string[] }).ips[0] as string
    assert.match(ip, /^10\.252\./)
    assert.deepEqual(
      (a.logs as { msg: string }[]).filter((l) => l.msg.startsWith('turned on')),
      [{ sysctl: 'net.ipv4.ip_forward', path: '/proc/sys/net/ipv4/ip_forward', was: '0', msg: "turned on net.ipv4.ip_forward: the host forwards its workloads' packets" }],
    )
    assert.equal(await sh('ip', 'netns', 'exec', host, 'sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding'), '1\n0\n', 'IPv4 only: IPv6 forwarding left alone')
    assert.ok((await store.get('Endpoint', 'fw/b'))?.value, 'the attached workload is in the store')

    const e3 = failure(linkRefused)
    assert.deepEqual([e3.code, e3.errno], ['ERR_WORKLOAD_LINK', 'EROFS'])
    assert.equal(e3.path, `${readOnly}/ipv4/conf/${workloadInterfaceName('fw/c')}/proxy_arp`)

    // Neither failed attach kept anything: no endpoint, no address, no veth.
    for (const key of ['fw/a', 'fw/c']) assert.equal(await store.get('Endpoint', key), undefined, `no endpoint ${key}`)
    assert.equal(await allocated(), before + 1, 'only fw/b holds an address')
    const links = JSON.parse(await sh('ip', '-n', host, '-j', 'link', 'show')) as { ifname: string }[]
    assert.deepEqual(links.map((l) => l.ifname).filter((n) => n.startsWith('fnw')), [workloadInterfaceName('fw/b')])
  })
})
