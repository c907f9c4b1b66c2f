/**
 * What a user sees when the data plane cannot start: the addon not built, no /dev/net/tun, no
 * CAP_NET_ADMIN, bad names and addresses, taken ports. Conditions that cannot be made in this
 * process (a missing device node, a dropped capability) run in a child made for them.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { InvalidArgumentError } from '@flatnet/core'
import { DataPlaneIoError, NativeAddonError, TunDevice, UdpSocket } from '../src/index.js'
import { kernelSkipReason, run, uniqueName } from './native-harness.js'

const indexUrl = new URL('../src/index.js', import.meta.url).href

interface ChildResult {
  readonly code?: string
  readonly sysCode?: string
  readonly message?: string
  readonly opened?: string
}

/** Runs `body` (with TunDevice and UdpSocket in scope) in a child node, through `wrapper` if given. */
async function inChild(body: string, wrapper: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): Promise<ChildResult> {
  const script = `
    const { TunDevice, UdpSocket } = await import(${JSON.stringify(indexUrl)})
    try { ${body} } catch (e) { console.log(JSON.stringify({ code: e.code, sysCode: e.sysCode, message: e.message })) }
  `
  const [cmd, ...pre] = [...wrapper, process.execPath]
  const { stdout, stderr } = await run(cmd!, [...pre, '--input-type=module', '-e', script], { timeoutMs: 20_000, env, allowFail: true })
  const line = stdout.trim().split('\n').pop() ?? ''
  assert.ok(line.startsWith('{'), `child printed no result: ${stdout} ${stderr}`)
  return JSON.parse(line) as ChildResult
}

describe('data-plane errors', () => {
  it('tells how to build the addon when it is missing, and the package loads without it', async () => {
    const r = await inChild(`UdpSocket.bind({ address: '127.0.0.1' })`, [], { ...process.env, FLATNET_NATIVE_ADDON: '/nonexistent/flatnet_native.node' })
    assert.equal(r.code, 'ERR_NATIVE_ADDON')
    assert.match(r.message ?? '', /not built .*run npm run setup/)
    assert.ok(new NativeAddonError('x').code === 'ERR_NATIVE_ADDON')
  })

  it('rejects malformed interface names before touching the kernel', () => {
    for (const [name, why] of [
      ['fn-this-is-too-long', /longer than 15 bytes/],
      ['a/b', /contains '\/'/],
      ['a b', /whitespace/],
      ['..', /reserved/],
    ] as const) {
      assert.throws(() => TunDevice.open({ name }), (e: unknown) => e instanceof InvalidArgumentError && why.test(e.message) && e.message.includes(`"${name}"`))
    }
    assert.throws(() => TunDevice.open({ name: 'fn-x', mtu: 40 }), InvalidArgumentError)
    assert.throws(() => TunDevice.open({ name: 'fn-x', batchSize: 0 }), InvalidArgumentError)
  })

  it('rejects bad UDP addresses and options, and explains bind failures', () => {
    assert.throws(() => UdpSocket.bind({ address: '127.0.0.300' }), (e: unknown) => e instanceof InvalidArgumentError && /invalid IP address "127\.0\.0\.300"/.test(e.message))
    assert.throws(() => UdpSocket.bind({ address: '127.0.0.1', port: 70000 }), InvalidArgumentError)
    assert.throws(() => UdpSocket.bind({ address: '127.0.0.1', slotSize: 10 }), InvalidArgumentError)
    assert.throws(() => UdpSocket.bind({ address: '127.0.0.1', fwmark: -1 }), InvalidArgumentError)
    const taken = UdpSocket.bind({ address: '127.0.0.1' })
    try {
      assert.throws(
        () => UdpSocket.bind({ address: '127.0.0.1', port: taken.localPort }),
        (e: unknown) => e instanceof DataPlaneIoError && e.sysCode === 'EADDRINUSE' && e.message === `UDP address 127.0.0.1:${taken.localPort} is already in use`,
      )
    } finally {
      taken.close()
    }
    assert.throws(
      () => UdpSocket.bind({ address: '192.0.2.55', port: 51820 }),
      (e: unknown) => e instanceof DataPlaneIoError && e.sysCode === 'EADDRNOTAVAIL' && /not assigned to any interface/.test(e.message),
    )
  })

  describe('needing root', { skip: kernelSkipReason() }, () => {
    it('names an existing interface that is not a TUN device', () => {
      assert.throws(
        () => TunDevice.open({ name: 'lo' }),
        (e: unknown) => e instanceof DataPlaneIoError && e.code === 'ERR_DATAPLANE_IO' && /interface lo exists but is not a TUN device/.test(e.message),
      )
    })

    it('says the tun module is missing when /dev/net/tun is absent', async () => {
      // a private mount namespace where /dev/net is an empty tmpfs
      const r = await inChild(`TunDevice.open({ name: ${JSON.stringify(uniqueName('fn-m'))} }); console.log(JSON.stringify({ opened: 'yes' }))`, [
        'unshare',
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        'mount -t tmpfs none /dev/net && exec "$@"',
        'sh',
      ])
      assert.equal(r.code, 'ERR_DATAPLANE_IO')
      assert.equal(r.sysCode, 'ENOENT')
      assert.match(r.message ?? '', /the kernel module tun is not loaded or \/dev\/net\/tun is missing/)
    })

    it('says CAP_NET_ADMIN is needed when it is not held', async () => {
      const r = await inChild(`TunDevice.open({ name: ${JSON.stringify(uniqueName('fn-p'))} }); console.log(JSON.stringify({ opened: 'yes' }))`, [
        'setpriv',
        '--inh-caps=-all',
        '--bounding-set=-net_admin',
      ])
      assert.equal(r.code, 'ERR_DATAPLANE_IO')
      assert.equal(r.sysCode, 'EPERM')
      assert.match(r.message ?? '', /needs CAP_NET_ADMIN \(run as root\)/)
    })
  })
})
