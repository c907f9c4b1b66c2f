/**
 * Workload links in real network namespaces: a "host" namespace and workload namespaces
 * attached to it, traffic between them, what checkWorkload finds when something is removed,
 * and detach being safe to repeat. The host veth's settings and forwarding as the agent makes
 * them, through files under its /proc/sys/net, run in host-side-worker.ts inside a test
 * namespace.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { InvalidArgumentError } from '@flatnet/core'
import { attachPlan, attachWorkload, checkWorkload, detachWorkload, isPlannedWrite, resolveWorkloadLink, workloadInterfaceName, WorkloadLinkError } from '../src/dataplane/workload-link.js'
import { failure, inHost, succeeded } from './host-side.js'

const exec = promisify(execFile)
const skip = process.getuid?.() !== 0 ? 'needs root for network namespaces' : false

async function sh(...argv: string[]): Promise<string> {
  return (await exec(argv[0]!, argv.slice(1), { timeout: 10_000 })).stdout
}

async function succeeds(...argv: string[]): Promise<boolean> {
  return sh(...argv).then(
    () => true,
    () => false,
  )
}

const tag = `${process.pid.toString(36)}${randomBytes(2).toString('hex')}`
const made: string[] = []
async function netns(role: string): Promise<string> {
  const name = `fn-wl-${tag}-${role}`
  made.push(name)
  await sh('ip', 'netns', 'add', name)
  return name
}

const roots = mkdtempSync(join(tmpdir(), 'fn-wl-roots-'))

describe('workload link', { skip }, () => {
  let host: string
  let w1: string
  let w2: string
  const link1 = () => ({ netns: w1, hostNetns: host, hostIfname: workloadInterfaceName(`${tag}/w1`), addresses: ['10.200.1.2/32', 'fd00:200::2/128'], mtu: 1400 })
  const link2 = () => ({ netns: `/run/netns/${w2}`, hostNetns: host, hostIfname: workloadInterfaceName(`${tag}/w2`), addresses: ['10.200.1.3'] })

  before(async () => {
    host = await netns('h')
    w1 = await netns('w1')
    w2 = await netns('w2')
    await sh('ip', '-n', host, 'link', 'set', 'lo', 'up')
    await sh('ip', '-n', host, 'addr', 'add', '10.200.0.1/32', 'dev', 'lo')
    await sh('ip', 'netns', 'exec', host, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1')
  })

  after(async () => {
    for (const name of made) await sh('ip', 'netns', 'del', name).catch(() => undefined)
    // The bind mounts were the workers' own and ended with them: these are plain directories.
    rmSync(roots, { recursive: true, force: true })
  })

  it('checks its input before touching the kernel', () => {
    assert.throws(() => resolveWorkloadLink({ netns: 'x', hostIfname: 'way-too-long-name0', addresses: ['10.0.0.1/32'] }), InvalidArgumentError)
    assert.throws(() => resolveWorkloadLink({ netns: 'x', hostIfname: 'a', addresses: ['10.0.0.0/24'] }), /must be one address with a host mask/)
    assert.throws(() => resolveWorkloadLink({ netns: 'x', hostIfname: 'a', addresses: [] }), /at least one address/)
    assert.throws(() => resolveWorkloadLink({ netns: 'rel/path', hostIfname: 'a', addresses: ['10.0.0.1'] }), /absolute path/)
    assert.equal(workloadInterfaceName('x/a').length, 15)
    assert.equal(workloadInterfaceName('x/a'), workloadInterfaceName('x/a'))
    assert.notEqual(workloadInterfaceName('x/a'), workloadInterfaceName('x/b'))
  })

  it('plans two processes: the pair and host routes in one ip batch, then the host settings as files and the workload side in one ip batch at once', () => {
    const steps = attachPlan(resolveWorkloadLink({ netns: 'w', hostIfname: 'fnwx', addresses: ['10.1.2.3', 'fd00::3'] }), '/host/proc/sys/net')
    const shown = steps.map((step) => step.map((c) => (isPlannedWrite(c) ? { where: c.where, write: `${c.path}=${c.value}` } : { where: c.where, argv: c.argv.join(' '), batch: c.batch })))
    assert.deepEqual(shown, [
      [
        {
          where: 'host',
          argv: 'ip -batch -',
          batch: [
            'link add name fnwx mtu 1420 address ee:ee:ee:ee:ee:ee type veth peer name eth0 mtu 1420 netns w',
            'link set dev fnwx up',
            'addr replace fe80::1/64 dev fnwx nodad',
            'route replace 10.1.2.3/32 dev fnwx scope link',
            'route replace fd00::3/128 dev fnwx',
          ],
        },
      ],
      [
        { where: 'host', write: '/host/proc/sys/net/ipv4/conf/fnwx/proxy_arp=1' },
        { where: 'host', write: '/host/proc/sys/net/ipv4/neigh/fnwx/proxy_delay=0' },
        { where: 'host', write: '/host/proc/sys/net/ipv6/conf/fnwx/accept_ra=0' },
        {
          where: 'workload',
          argv: 'ip -batch -',
          batch: [
            'link set dev lo up',
            'addr add 10.1.2.3/32 dev eth0',
            'addr add fd00::3/128 dev eth0 nodad',
            'link set dev eth0 up',
            'route replace 169.254.1.1 dev eth0 scope link',
            'route replace default via 169.254.1.1 dev eth0',
            'neigh replace 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee dev eth0 nud permanent',
            'route replace default via fe80::1 dev eth0',
          ],
        },
      ],
    ])
    // IPv4 only: no IPv6 gateway, route or setting.
    const v4 = attachPlan(resolveWorkloadLink({ netns: 'w', hostIfname: 'fnwx', addresses: ['10.1.2.3'] })).flat()
    assert.ok(v4.every((c) => !(isPlannedWrite(c) ? [c.path] : [...c.argv, ...(c.batch ?? [])]).some((x) => x.includes('fe80::1') || x.includes('accept_ra'))))
    assert.deepEqual(v4.filter(isPlannedWrite).map((w) => w.path), ['/proc/sys/net/ipv4/conf/fnwx/proxy_arp', '/proc/sys/net/ipv4/neigh/fnwx/proxy_delay'], 'the default root')
    // A host side in another namespace: its files are not this process's to write, so one sysctl runs there.
    const elsewhere = attachPlan(resolveWorkloadLink({ netns: 'w', hostNetns: 'h', hostIfname: 'fnw.x', addresses: ['10.1.2.3', 'fd00::3'] }), '/host/proc/sys/net')[1]
    assert.deepEqual(elsewhere?.[0], { where: 'host', argv: ['sysctl', '-q', '-w', 'net/ipv4/conf/fnw.x/proxy_arp=1', 'net/ipv4/neigh/fnw.x/proxy_delay=0', 'net/ipv6/conf/fnw.x/accept_ra=0'] })
    assert.equal(elsewhere?.length, 2)
    // ip -batch splits words on blanks and cuts at "#": such a namespace path is refused.
    assert.throws(() => resolveWorkloadLink({ netns: '/run/netns/a b', hostIfname: 'a', addresses: ['10.0.0.1'] }), /must not contain blanks/)
    assert.throws(() => resolveWorkloadLink({ netns: '/run/netns/a#b', hostIfname: 'a', addresses: ['10.0.0.1'] }), InvalidArgumentError)
  })

  it('attaches two workloads (by name and by path) that reach each other and the host, over IPv4 and IPv6', async () => {
    await attachWorkload(link1())
    await attachWorkload(link2())
    assert.deepEqual(await checkWorkload(link1()), { ok: true, problems: [] })
    assert.deepEqual(await checkWorkload(link2()), { ok: true, problems: [] })
    const eth0 = JSON.parse(await sh('ip', '-n', w1, '-j', 'addr', 'show', 'dev', 'eth0')) as { mtu: number }[]
    assert.equal(eth0[0]?.mtu, 1400)
    assert.ok(await succeeds('ip', 'netns', 'exec', w1, 'ping', '-c1', '-W2', '10.200.1.3'), 'w1 -> w2 over IPv4')
    assert.ok(await succeeds('ip', 'netns', 'exec', w2, 'ping', '-c1', '-W2', '10.200.0.1'), 'w2 -> host')
    assert.ok(await succeeds('ip', 'netns', 'exec', host, 'ping', '-c1', '-W2', '-I', '10.200.0.1', '10.200.1.2'), 'host -> w1')
    // w2 has no IPv6 address: reach w1's IPv6 address from the host instead.
    assert.ok(await succeeds('ip', 'netns', 'exec', host, 'ping', '-6', '-c1', '-W2', 'fd00:200::2'), 'host -> w1 over IPv6')
  })

  it('refuses to attach over an existing host interface and leaves it alone', async () => {
    await assert.rejects(attachWorkload(link1()), (err: unknown) => err instanceof WorkloadLinkError && /exists already/.test(err.message))
    assert.deepEqual(await checkWorkload(link1()), { ok: true, problems: [] })
  })

  it('reports what is missing: routes, addresses, the neighbour entry', async () => {
    await sh('ip', '-n', w1, 'route', 'del', 'default')
    await sh('ip', '-n', w1, 'neigh', 'del', '169.254.1.1', 'dev', 'eth0')
    await sh('ip', '-n', w1, 'addr', 'del', 'fd00:200::2/128', 'dev', 'eth0')
    await sh('ip', '-n', host, 'route', 'del', '10.200.1.3/32')
    const c1 = await checkWorkload(link1())
    assert.equal(c1.ok, false)
    assert.deepEqual(c1.problems.map((p) => `${p.side} ${p.what}: ${p.detail}`), [
      'workload address: fd00:200::2/128 is not on eth0',
      'workload route: no route default via 169.254.1.1 dev eth0',
      'workload neighbor: no permanent neighbour 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee on eth0',
    ])
    const c2 = await checkWorkload(link2())
    assert.deepEqual(c2.problems.map((p) => `${p.side} ${p.what}: ${p.detail}`), [`host route: no route 10.200.1.3/32 dev ${link2().hostIfname}`])
    // The kernel drops every IPv4 route through an interface that loses its last IPv4 address.
    await sh('ip', '-n', w2, 'addr', 'del', '10.200.1.3/32', 'dev', 'eth0')
    assert.deepEqual((await checkWorkload(link2())).problems.map((p) => `${p.side} ${p.what}: ${p.detail}`), [
      `host route: no route 10.200.1.3/32 dev ${link2().hostIfname}`,
      'workload address: 10.200.1.3/32 is not on eth0',
      'workload route: no route 169.254.1.1 dev eth0 scope link',
      'workload route: no route default via 169.254.1.1 dev eth0',
      'workload neighbor: no permanent neighbour 169.254.1.1 lladdr ee:ee:ee:ee:ee:ee on eth0',
    ])
  })

  it('detaches, and detaching again or from a vanished namespace is fine', async () => {
    assert.deepEqual(await detachWorkload(link1()), { removed: true })
    assert.equal(await succeeds('ip', '-n', w1, 'link', 'show', 'dev', 'eth0'), false, 'the workload end went with the host end')
    assert.equal(await succeeds('ip', '-n', host, 'link', 'show', 'dev', link1().hostIfname), false)
    assert.deepEqual(await detachWorkload(link1()), { removed: false })
    const c = await checkWorkload(link1())
    assert.deepEqual(c.problems.map((p) => p.what), ['host-interface', 'workload-interface'])
    await sh('ip', 'netns', 'del', w2)
    assert.deepEqual(await detachWorkload(link2()), { removed: false }, 'the pair died with the workload namespace')
    assert.deepEqual(await detachWorkload({ ...link2(), hostNetns: `fn-wl-${tag}-gone` }), { removed: false })
  })

  it('rolls back when a later step fails: no host interface is left behind', async () => {
    const w3 = await netns('w3')
    const spec = { netns: w3, hostNetns: host, hostIfname: workloadInterfaceName(`${tag}/w3`), addresses: ['10.200.1.4/32'] }
    // The veth pair is made first (ip -n); the host settings after it (sysctl through nsenter) cannot run.
    await assert.rejects(attachWorkload(spec, { nsenterPath: '/nonexistent/nsenter' }), (err: unknown) => err instanceof WorkloadLinkError && /not installed/.test(err.message))
    assert.equal(await succeeds('ip', '-n', host, 'link', 'show', 'dev', spec.hostIfname), false)
    assert.equal(await succeeds('ip', '-n', w3, 'link', 'show', 'dev', 'eth0'), false)
    await assert.rejects(attachWorkload({ ...spec, netns: `fn-wl-${tag}-missing` }), WorkloadLinkError)
    assert.equal(await succeeds('ip', '-n', host, 'link', 'show', 'dev', spec.hostIfname), false)
  })

  it('rolls back when the workload batch fails midway, naming the failing line', async () => {
    const w4 = await netns('w4')
    // A namespace without IPv6: the pair is made, the IPv4 address goes on, the IPv6 one cannot.
    await sh('ip', 'netns', 'exec', w4, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1')
    const spec = { netns: w4, hostNetns: host, hostIfname: workloadInterfaceName(`${tag}/w4`), addresses: ['10.200.1.5/32', 'fd00:200::5/128'] }
    await assert.rejects(attachWorkload(spec), (err: unknown) => {
      assert.ok(err instanceof WorkloadLinkError, String(err))
      assert.equal(err.batchLine, 3)
      assert.match(err.message, new RegExp(`^ip -n ${w4} -batch -, line 3: ip addr add fd00:200::5/128 dev eth0 nodad: `))
      return true
    })
    assert.equal(await succeeds('ip', '-n', host, 'link', 'show', 'dev', spec.hostIfname), false, 'the host end is gone')
    assert.equal(await succeeds('ip', '-n', w4, 'link', 'show', 'dev', 'eth0'), false, 'and the workload end with it')
  })

  it('leaves alone an interface of the workload end\'s name in the workload namespace, and names the line that failed', async () => {
    const w5 = await netns('w5')
    await sh('ip', '-n', w5, 'link', 'add', 'eth0', 'type', 'bridge')
    const spec = { netns: w5, hostNetns: host, hostIfname: workloadInterfaceName(`${tag}/w5`), addresses: ['10.200.1.6/32'] }
    await assert.rejects(attachWorkload(spec), (err: unknown) => err instanceof WorkloadLinkError && err.batchLine === 1 && / line 1: ip link add name /.test(err.message) && !/exists already on the host/.test(err.message))
    assert.ok(await succeeds('ip', '-n', w5, 'link', 'show', 'dev', 'eth0'))
    assert.equal(await succeeds('ip', '-n', host, 'link', 'show', 'dev', spec.hostIfname), false)
  })

  it('does not delete a host interface of that name that is not a veth', async () => {
    await sh('ip', '-n', host, 'link', 'add', 'fnwbridge', 'type', 'bridge')
    await assert.rejects(detachWorkload({ hostNetns: host, hostIfname: 'fnwbridge' }), /is a bridge, not a workload veth/)
    assert.ok(await succeeds('ip', '-n', host, 'link', 'show', 'dev', 'fnwbridge'))
  })

  it('writes the host veth\'s settings under the configured /proc/sys/net, in the host\'s namespace, and CHECK reads them there', async () => {
    const w6 = await netns('w6')
    const root = join(roots, 'rw')
    const empty = join(roots, 'empty')
    mkdirSync(root)
    mkdirSync(empty)
    const spec = { netns: w6, hostIfname: workloadInterfaceName(`${tag}/w6`), addresses: ['10.200.1.7/32', 'fd00:200::7/128'] }
    const v = spec.hostIfname
    // The worker's host side is `host`; `root` is a read-write bind of /proc/sys/net made inside it.
    const [attached, checked, checkedElsewhere] = await inHost(host, {
      binds: [{ at: root, readOnly: false }],
      ops: [
        { op: 'attach', spec, options: { procSysNet: root } },
        { op: 'check', spec, options: { procSysNet: root } },
        // A root without the entries: CHECK reads through the root, and finds no proxy ARP there.
        { op: 'check', spec, options: { procSysNet: empty } },
      ],
    })
    succeeded(attached)
    assert.deepEqual(succeeded(checked).value, { ok: true, problems: [] })
    assert.deepEqual((succeeded(checkedElsewhere).value as { problems: unknown[] }).problems, [{ what: 'sysctl', side: 'host', detail: `net.ipv4.conf.${v}.proxy_arp is not 1` }])
    // Read back in the host namespace by another way (sysctl there), and the link carries traffic.
    assert.equal(await sh('ip', 'netns', 'exec', host, 'sysctl', '-n', `net.ipv4.conf.${v}.proxy_arp`, `net.ipv4.neigh.${v}.proxy_delay`, `net.ipv6.conf.${v}.accept_ra`), '1\n0\n0\n')
    assert.deepEqual(await checkWorkload({ ...spec, hostNetns: host }), { ok: true, problems: [] })
    assert.ok(await succeeds('ip', 'netns', 'exec', w6, 'ping', '-c1', '-W2', '10.200.0.1'), 'w6 -> host')
    assert.deepEqual(await detachWorkload({ ...spec, hostNetns: host }), { removed: true })
  })

  it('fails an attach whose host settings cannot be written, naming the file and the errno, and leaves no veth behind', async () => {
    const w7 = await netns('w7')
    const readOnly = join(roots, 'ro')
    const empty = join(roots, 'empty2')
    mkdirSync(readOnly)
    mkdirSync(empty)
    const spec = { netns: w7, hostIfname: workloadInterfaceName(`${tag}/w7`), addresses: ['10.200.1.8/32'] }
    const v = spec.hostIfname
    // A read-only bind of /proc/sys/net, as a container runtime mounts /proc/sys; the worker's
    // own /proc/sys/net stays writable, so only a write through the configured root can fail.
    const [ro, missing] = await inHost(host, {
      binds: [{ at: readOnly, readOnly: true }],
      ops: [
        { op: 'attach', spec, options: { procSysNet: readOnly } },
        { op: 'attach', spec, options: { procSysNet: empty } },
      ],
    })
    const e1 = failure(ro)
    assert.equal(e1.code, 'ERR_WORKLOAD_LINK')
    assert.equal(e1.errno, 'EROFS')
    assert.equal(e1.path, `${readOnly}/ipv4/conf/${v}/proxy_arp`)
    assert.match(e1.message, new RegExp(`^write 1 to ${readOnly}/ipv4/conf/${v}/proxy_arp: EROFS \\(read-only file system\\): .*dataplane\\.procSysNet`))
    const e2 = failure(missing)
    assert.equal(e2.errno, 'ENOENT')
    assert.equal(e2.path, `${empty}/ipv4/conf/${v}/proxy_arp`)
    assert.equal(await succeeds('ip', '-n', host, 'link', 'show', 'dev', v), false, 'the host end is gone')
    assert.equal(await succeeds('ip', '-n', w7, 'link', 'show', 'dev', 'eth0'), false, 'and the workload end with it')
    assert.equal(await sh('ip', '-n', host, 'route', 'show', '10.200.1.8/32'), '', 'and the route with them')
  })

  it('turns forwarding on in a fresh namespace for the address families in use, once, saying what it changed; a read-only root is an error', async () => {
    const fw = await netns('fw')
    const readOnly = join(roots, 'fw-ro')
    mkdirSync(readOnly)
    await sh('ip', 'netns', 'exec', fw, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0')
    const machine = readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8')
    const v4 = '/proc/sys/net/ipv4/ip_forward'
    const v6 = '/proc/sys/net/ipv6/conf/all/forwarding'
    const [refused, afterRefused, first, v6Untouched, both, again] = await inHost(fw, {
      binds: [{ at: readOnly, readOnly: true }],
      ops: [
        { op: 'forwarding', procSysNet: readOnly, addresses: ['10.200.2.1'] },
        { op: 'read', path: v4 },
        // Three attaches at once share one check and one write.
        { op: 'forwarding', procSysNet: '/proc/sys/net', addresses: ['10.200.2.1'], times: 3 },
        { op: 'read', path: v6 },
        { op: 'forwarding', procSysNet: '/proc/sys/net', addresses: ['10.200.2.1', 'fd00:200::2'] },
        { op: 'forwarding', procSysNet: '/proc/sys/net', addresses: ['10.200.2.1', 'fd00:200::2'] },
      ],
    })
    const e = failure(refused)
    assert.deepEqual([e.name, e.code, e.errno, e.path], ['HostForwardingError', 'ERR_HOST_FORWARDING', 'EROFS', `${readOnly}/ipv4/ip_forward`])
    assert.match(e.message, /^cannot turn on net\.ipv4\.ip_forward \(write 1 to .*\/ipv4\/ip_forward\), which the host needs to forward its workloads' IPv4 packets: EROFS/)
    assert.equal(succeeded(afterRefused).value, '0', 'nothing changed')
    assert.deepEqual(succeeded(first).logs, [{ sysctl: 'net.ipv4.ip_forward', path: v4, was: '0', msg: "turned on net.ipv4.ip_forward: the host forwards its workloads' packets" }])
    assert.equal(succeeded(v6Untouched).value, '0', 'IPv4 workloads leave IPv6 forwarding alone')
    assert.deepEqual(succeeded(both).logs, [{ sysctl: 'net.ipv6.conf.all.forwarding', path: v6, was: '0', msg: "turned on net.ipv6.conf.all.forwarding: the host forwards its workloads' packets" }])
    assert.deepEqual(succeeded(again).logs, [], 'already on: nothing written, nothing logged')
    assert.equal(await sh('ip', 'netns', 'exec', fw, 'sysctl', '-n', 'net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding'), '1\n1\n')
    assert.equal(readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8'), machine, "the machine's own setting is untouched")
  })
})
