/**
 * KernelBackend against real WireGuard devices: three namespaces made for this run, A joined to
 * B and to C by veth pairs, one device per namespace (wireguard-go here, as this kernel has no
 * WireGuard module), traffic checked with a UDP echo across the tunnel. Also the `wg show` text.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { InvalidArgumentError } from '@flatnet/core'
import {
  detectKernelWireguard,
  formatBytes,
  formatDuration,
  formatShow,
  generatePrivateKeyBase64,
  KernelBackend,
  publicKeyFromPrivateKey,
  WIREGUARD_GO_SOCKET_DIR,
  WireguardDeviceError,
  WireguardStateError,
  type PeerStatus,
} from '../src/index.js'

describe('formatShow', () => {
  const now = new Date('2024-05-01T12:00:00Z')
  const peers: PeerStatus[] = [
    {
      publicKey: 'PEER-OLD',
      endpoint: undefined,
      allowedIps: [],
      latestHandshake: undefined,
      rxBytes: 0,
      txBytes: 0,
      persistentKeepalive: undefined,
    },
    {
      publicKey: 'PEER-NEW',
      endpoint: '192.0.2.2:51820',
      allowedIps: ['10.0.0.2/32', 'fd00::2/128'],
      latestHandshake: new Date(now.getTime() - 65_000),
      rxBytes: 1536,
      txBytes: 300,
      persistentKeepalive: 25,
      hasPresharedKey: true,
    },
  ]

  it('prints what `wg show` prints, most recent handshake first', () => {
    assert.equal(
      formatShow('wg0', 'PUB', 51820, peers, now),
      [
        'interface: wg0',
        '  public key: PUB',
        '  private key: (hidden)',
        '  listening port: 51820',
        '',
        'peer: PEER-NEW',
        '  preshared key: (hidden)',
        '  endpoint: 192.0.2.2:51820',
        '  allowed ips: 10.0.0.2/32, fd00::2/128',
        '  latest handshake: 1 minute, 5 seconds ago',
        '  transfer: 1.50 KiB received, 300 B sent',
        '  persistent keepalive: every 25 seconds',
        '',
        'peer: PEER-OLD',
        '  allowed ips: (none)',
        '',
      ].join('\n'),
    )
  })

  it('spells durations and sizes as wg does', () => {
    assert.equal(formatDuration(1), '1 second')
    assert.equal(formatDuration(90061), '1 day, 1 hour, 1 minute, 1 second')
    assert.equal(formatDuration(2 * 365 * 86400 + 7200), '2 years, 2 hours')
    assert.equal(formatBytes(1023), '1023 B')
    assert.equal(formatBytes(1024), '1.00 KiB')
    assert.equal(formatBytes(5 * 1024 * 1024 * 1024), '5.00 GiB')
    const just = formatShow('wg0', 'PUB', 1, [{ ...peers[1]!, latestHandshake: now }], now)
    assert.match(just, /latest handshake: Now\n/)
  })
})

// ---- network namespaces ----

const COMMAND_TIMEOUT_MS = 15_000

function missingTools(): string[] {
  const probes: [string, string[]][] = [
    ['ip', ['-V']],
    ['wg', ['--version']],
    ['wireguard-go', ['--version']],
  ]
  return probes.filter(([cmd, args]) => spawnSync(cmd, args, { stdio: 'ignore', timeout: 5000 }).error !== undefined).map(([cmd]) => cmd)
}

function skipReason(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces)'
  const missing = missingTools()
  if (missing.length > 0) return `needs ${missing.join(', ')} (apt-get install -y wireguard-go wireguard-tools iproute2)`
  return false
}

/** Runs a command to completion; throws with its stderr on failure. */
function sh(argv: string[]): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: COMMAND_TIMEOUT_MS })
  if (r.error || r.status !== 0) throw new Error(`${argv.join(' ')} failed: ${r.error?.message ?? r.stderr.trim()}`)
  return r.stdout
}

function inNs(ns: string, argv: string[]): string {
  return sh(['ip', 'netns', 'exec', ns, ...argv])
}

function succeeds(argv: string[]): boolean {
  return spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS }).status === 0
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code !== 'ESRCH'
  }
}

const ECHO_PORT = 7777
const ECHO_SERVER = `
const s = require('node:dgram').createSocket('udp4')
s.on('message', (m, r) => s.send(m, r.port, r.address))
s.bind(${ECHO_PORT}, '0.0.0.0', () => console.log('ready'))
`
// Resends until an echo arrives, because the first packets only start the handshake.
const ECHO_CLIENT = `
const [host, ms] = [process.argv[1], Number(process.argv[2])]
const s = require('node:dgram').createSocket('udp4')
s.on('error', () => {})
s.on('message', () => process.exit(0))
const send = () => s.send('ping', ${ECHO_PORT}, host, () => {})
send()
setInterval(send, 100)
setTimeout(() => process.exit(1), ms)
`

/** Whether a UDP echo from `ns` to `host` comes back within `ms`. */
function echoes(ns: string, host: string, ms: number): boolean {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, '-e', ECHO_CLIENT, host, String(ms)], { stdio: 'ignore', timeout: ms + 5000 })
  return r.status === 0
}

async function startEchoServer(ns: string): Promise<ChildProcess> {
  const child = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', ECHO_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`echo server in ${ns} did not start within 10 s`)), 10_000)
    child.stdout!.on('data', (d: Buffer) => {
      if (d.toString().includes('ready')) {
        clearTimeout(timer)
        resolve()
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`echo server in ${ns} exited with ${code}`))
    })
  })
  return child
}

async function stopByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  process.kill(child.pid, 'SIGTERM')
  let timer: NodeJS.Timeout | undefined
  const done = await Promise.race([exited.then(() => true), new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 5000)))])
  clearTimeout(timer)
  if (!done) {
    process.kill(child.pid, 'SIGKILL')
    await exited
  }
}

describe('KernelBackend: wireguard devices in network namespaces', { skip: skipReason(), timeout: 120_000 }, () => {
  const id = randomBytes(3).toString('hex')
  const ns = { a: `fn-wgt-${id}-a`, b: `fn-wgt-${id}-b`, c: `fn-wgt-${id}-c` }
  // Unique on the host: wireguard-go's control sockets are not per namespace.
  const ifname = { a: `fn-wg${id}a`, b: `fn-wg${id}b`, c: `fn-wg${id}c` }
  const keys = { a: generatePrivateKeyBase64(), b: generatePrivateKeyBase64(), c: generatePrivateKeyBase64() }
  const pub = { a: publicKeyFromPrivateKey(keys.a), b: publicKeyFromPrivateKey(keys.b), c: publicKeyFromPrivateKey(keys.c) }
  const psk = generatePrivateKeyBase64()
  const keyDir = mkdtempSync(join(tmpdir(), 'flatnet-wgkeys-'))
  const madeNs: string[] = []
  const echo: ChildProcess[] = []
  const backends: KernelBackend[] = []
  const backend = (netns: string): KernelBackend => {
    const b = new KernelBackend({ netns, keyFileDir: keyDir, startTimeoutMs: 10_000 })
    backends.push(b)
    return b
  }
  const a = backend(ns.a)
  const b = backend(ns.b)
  const c = backend(ns.c)
  const peerB = { publicKey: pub.b, presharedKey: psk, endpoint: '10.201.1.2:51820', allowedIps: ['10.202.0.2/32'] }
  const peerC = { publicKey: pub.c, endpoint: '10.201.2.2:51820', allowedIps: ['10.202.0.3/32'], persistentKeepalive: 25 }

  before(async () => {
    for (const n of Object.values(ns)) {
      sh(['ip', 'netns', 'add', n])
      madeNs.push(n)
      inNs(n, ['ip', 'link', 'set', 'lo', 'up'])
    }
    sh(['ip', 'link', 'add', 'name', `fn${id}ab`, 'netns', ns.a, 'type', 'veth', 'peer', 'name', `fn${id}ba`, 'netns', ns.b])
    sh(['ip', 'link', 'add', 'name', `fn${id}ac`, 'netns', ns.a, 'type', 'veth', 'peer', 'name', `fn${id}ca`, 'netns', ns.c])
    for (const [n, dev, addr] of [
      [ns.a, `fn${id}ab`, '10.201.1.1/30'],
      [ns.b, `fn${id}ba`, '10.201.1.2/30'],
      [ns.a, `fn${id}ac`, '10.201.2.1/30'],
      [ns.c, `fn${id}ca`, '10.201.2.2/30'],
    ] as const) {
      inNs(n, ['ip', 'address', 'add', addr, 'dev', dev])
      inNs(n, ['ip', 'link', 'set', dev, 'up'])
    }
    echo.push(await startEchoServer(ns.b), await startEchoServer(ns.c))
  })

  after(async () => {
    for (const be of backends) await be.down().catch((e: unknown) => console.error(e))
    for (const child of echo) await stopByPid(child)
    for (const n of madeNs) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore', timeout: COMMAND_TIMEOUT_MS })
    rmSync(keyDir, { recursive: true, force: true })
  })

  it('detectKernelWireguard answers, leaving no probe link', async () => {
    const kernel = await detectKernelWireguard({ netns: ns.a })
    assert.equal(typeof kernel, 'boolean')
    assert.doesNotMatch(inNs(ns.a, ['ip', '-o', 'link', 'show']), /fn-wgp/)
  })

  it('refuses calls in the wrong state and bad arguments', async () => {
    await assert.rejects(a.setPeer(peerB), (e: unknown) => e instanceof WireguardStateError && e.code === 'ERR_WG_STATE')
    await assert.rejects(a.peers(), WireguardStateError)
    await assert.rejects(a.up({ interfaceName: 'this-name-is-too-long', privateKey: keys.a, listenPort: 1, mtu: 1420, addresses: [] }), InvalidArgumentError)
    await assert.rejects(a.up({ interfaceName: ifname.a, privateKey: 'nope', listenPort: 1, mtu: 1420, addresses: [] }), InvalidArgumentError)
    await a.down()
  })

  it('brings up three devices and configures their peers; keys only pass through files that are gone after', async () => {
    await a.up({ interfaceName: ifname.a, privateKey: keys.a, listenPort: 51820, mtu: 1420, addresses: ['10.202.0.1/24'] })
    await b.up({ interfaceName: ifname.b, privateKey: keys.b, listenPort: 51820, mtu: 1420, addresses: ['10.202.0.2/24', '10.202.0.22/32'] })
    await c.up({ interfaceName: ifname.c, privateKey: keys.c, listenPort: 51820, mtu: 1380, addresses: ['10.202.0.3/24'] })
    for (const be of [a, b, c]) {
      if (be.device === 'wireguard-go') assert.ok(be.pid !== undefined && alive(be.pid))
    }
    const link = inNs(ns.c, ['ip', '-o', 'link', 'show', 'dev', ifname.c])
    assert.match(link, /mtu 1380/)
    assert.match(link, /[<,]UP[,>]/)
    assert.match(inNs(ns.b, ['ip', '-o', 'address', 'show', 'dev', ifname.b]), /10\.202\.0\.22\/32/)
    // B has no endpoint for A: it learns it from A's first handshake.
    await b.setPeer({ publicKey: pub.a, presharedKey: psk, allowedIps: ['10.202.0.1/32'] })
    await c.setPeer({ publicKey: pub.a, endpoint: '10.201.2.1:51820', allowedIps: ['10.202.0.1/32'] })
    // A last: its keepalive to C starts a handshake at once, which C must already accept, or
    // the retry comes only after REKEY_TIMEOUT (5 s).
    await a.setPeer(peerB)
    await a.setPeer(peerC)
    assert.deepEqual(readdirSync(keyDir), [])
    const status = await a.status()
    assert.equal(status.publicKey, pub.a)
    assert.equal(status.listenPort, 51820)
    await assert.rejects(a.up({ interfaceName: ifname.a, privateKey: keys.a, listenPort: 1, mtu: 1420, addresses: [] }), WireguardStateError)
  })

  it('carries traffic across the tunnel, and peers() shows the handshake and transfer', async () => {
    assert.ok(echoes(ns.a, '10.202.0.2', 10_000), 'A -> B over the tunnel')
    assert.ok(echoes(ns.a, '10.202.0.3', 10_000), 'A -> C over the tunnel')
    const peers = await a.peers()
    assert.deepEqual(peers.map((p) => p.publicKey).sort(), [pub.b, pub.c].sort())
    const onB = peers.find((p) => p.publicKey === pub.b)!
    assert.ok(onB.latestHandshake instanceof Date && Date.now() - onB.latestHandshake.getTime() < 60_000, String(onB.latestHandshake))
    assert.ok(onB.rxBytes > 0 && onB.txBytes > 0, `rx ${onB.rxBytes} tx ${onB.txBytes}`)
    assert.equal(onB.endpoint, '10.201.1.2:51820')
    assert.deepEqual(onB.allowedIps, ['10.202.0.2/32'])
    assert.equal(onB.hasPresharedKey, true)
    assert.equal(peers.find((p) => p.publicKey === pub.c)!.persistentKeepalive, 25)
    const learned = (await b.peers())[0]!
    assert.equal(learned.endpoint, '10.201.1.1:51820')

    const text = await a.show()
    assert.match(text, new RegExp(`^interface: ${ifname.a}\n {2}public key: ${pub.a.replace(/[+/]/g, '\\$&')}\n`))
    assert.match(text, /\n {2}latest handshake: (Now|\d+ seconds? ago)\n/)
    assert.match(text, /\n {2}transfer: [\d.]+ (B|KiB) received, [\d.]+ (B|KiB) sent\n/)
    // Same lines as the real tool, apart from the counters that move between the two reads.
    // Peer order is compared as a set: wg breaks ties within a second by nanoseconds, which
    // its dump does not show.
    const real = inNs(ns.a, ['env', 'WG_COLOR_MODE=never', 'wg', 'show', ifname.a])
    const steady = (t: string): string[] =>
      t
        .trimEnd()
        .split('\n\n')
        .map((block) =>
          block
            .split('\n')
            .filter((l) => !/latest handshake|transfer/.test(l))
            .map((l) => l.trimEnd())
            .join('\n'),
        )
        .sort()
    assert.deepEqual(steady(text), steady(real))
  })

  it("changes one peer's allowed IPs at runtime without disturbing another peer", async () => {
    assert.equal(echoes(ns.a, '10.202.0.22', 1000), false, 'no peer owns 10.202.0.22 yet')
    const cBefore = (await a.peers()).find((p) => p.publicKey === pub.c)!
    await a.setPeer({ ...peerB, allowedIps: ['10.202.0.2/32', '10.202.0.22/32'] })
    assert.ok(echoes(ns.a, '10.202.0.22', 10_000), 'A -> B\'s new address')
    assert.ok(echoes(ns.a, '10.202.0.2', 10_000), 'A -> B\'s first address still')
    assert.ok(echoes(ns.a, '10.202.0.3', 10_000), 'A -> C untouched')
    const after = await a.peers()
    assert.deepEqual(after.find((p) => p.publicKey === pub.b)!.allowedIps, ['10.202.0.2/32', '10.202.0.22/32'])
    const cAfter = after.find((p) => p.publicKey === pub.c)!
    assert.deepEqual(
      { endpoint: cAfter.endpoint, allowedIps: cAfter.allowedIps, keepalive: cAfter.persistentKeepalive, handshake: cAfter.latestHandshake?.getTime() },
      { endpoint: cBefore.endpoint, allowedIps: cBefore.allowedIps, keepalive: cBefore.persistentKeepalive, handshake: cBefore.latestHandshake?.getTime() },
    )
    // Clearing the preshared key and the list is a full replacement too.
    await a.setPeer({ ...peerB, presharedKey: undefined, allowedIps: [] })
    const cleared = (await a.peers()).find((p) => p.publicKey === pub.b)!
    assert.deepEqual([cleared.allowedIps, cleared.hasPresharedKey], [[], false])
    await a.setPeer({ ...peerB, allowedIps: ['10.202.0.2/32', '10.202.0.22/32'] })
  })

  it('removes a peer, and traffic to it stops while the other peer keeps working', async () => {
    await a.removePeer(pub.c)
    assert.deepEqual((await a.peers()).map((p) => p.publicKey), [pub.b])
    assert.equal(echoes(ns.a, '10.202.0.3', 1500), false, 'A -> C after removal')
    assert.ok(echoes(ns.a, '10.202.0.2', 10_000), 'A -> B still')
    await a.removePeer(pub.c)
  })

  it('refuses a wireguard-go interface name already in use on the host, and starts nothing', async () => {
    const clash = backend(ns.c)
    await assert.rejects(
      clash.up({ interfaceName: ifname.b, privateKey: keys.c, listenPort: 0, mtu: 1420, addresses: [] }),
      (e: unknown) => (a.device === 'kernel' ? true : e instanceof WireguardDeviceError && e.code === 'ERR_WG_DEVICE' && /is taken/.test(e.message)),
    )
    assert.equal(clash.pid, undefined)
    assert.ok(echoes(ns.a, '10.202.0.2', 10_000), 'the device that owns the name is unharmed')
  })

  it('a failed up() stops what it started', async () => {
    const spare = backend(ns.c)
    const name = `fn-wg${id}x`
    // The second, identical address makes `ip address add` fail after the device exists.
    await assert.rejects(spare.up({ interfaceName: name, privateKey: keys.c, listenPort: 0, mtu: 1420, addresses: ['10.203.0.1/24', '10.203.0.1/24'] }), /already assigned|File exists/)
    assert.equal(spare.pid, undefined)
    assert.equal(succeeds(['ip', 'netns', 'exec', ns.c, 'ip', 'link', 'show', 'dev', name]), false)
    assert.equal(existsSync(join(WIREGUARD_GO_SOCKET_DIR, `${name}.sock`)), false)
  })

  it('a name taken by another kind of link is an ERR_WG_DEVICE, and that link is left alone', async () => {
    const taken = `fn-wg${id}y`
    inNs(ns.c, ['ip', 'link', 'add', 'name', taken, 'type', 'veth', 'peer', 'name', `fn-wg${id}z`])
    for (const device of ['wireguard-go', 'kernel'] as const) {
      const clash = new KernelBackend({ netns: ns.c, device, keyFileDir: keyDir })
      backends.push(clash)
      await assert.rejects(clash.up({ interfaceName: taken, privateKey: keys.c, listenPort: 0, mtu: 1420, addresses: [] }), WireguardDeviceError)
      assert.equal(clash.pid, undefined)
      assert.match(inNs(ns.c, ['ip', '-o', '-d', 'link', 'show', 'dev', taken]), /\bveth\b/)
    }
  })

  it('down() leaves no process, link or control socket', async () => {
    const pids = [a, b, c].map((be) => be.pid).filter((p): p is number => p !== undefined)
    for (const be of [a, b, c]) await be.down()
    for (const pid of pids) assert.equal(alive(pid), false, `pid ${pid} still runs`)
    for (const [n, dev] of [
      [ns.a, ifname.a],
      [ns.b, ifname.b],
      [ns.c, ifname.c],
    ] as const) {
      assert.equal(succeeds(['ip', 'netns', 'exec', n, 'ip', 'link', 'show', 'dev', dev]), false, `${dev} still exists`)
      assert.equal(existsSync(join(WIREGUARD_GO_SOCKET_DIR, `${dev}.sock`)), false)
    }
    await a.down()
    await assert.rejects(a.peers(), WireguardStateError)
  })
})
