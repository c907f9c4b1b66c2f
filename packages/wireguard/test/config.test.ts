/**
 * The wg-quick style configuration parser: a good file round-trips through formatConfig, and
 * every kind of mistake is reported with file, line, column and key.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { InputReadError, InvalidArgumentError, ValidationError, type ValidationIssue } from '@flatnet/core'
import {
  canonicalEndpoint,
  formatConfig,
  generatePrivateKeyBase64,
  isWireguardKey,
  parseConfig,
  publicKeyFromPrivateKey,
  readConfigFile,
  type WireguardConfig,
} from '../src/index.js'

// RFC 7748 section 6.1: Alice's X25519 key pair.
const ALICE_PRIVATE = Buffer.from('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a', 'hex').toString('base64')
const ALICE_PUBLIC = Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64')

const PRIV = 'yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk='
const PUB1 = 'xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg='
const PUB2 = 'TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0='
const PSK = 'FpCyhws9cxwWoV4xELtfJvjJN+zQVRPISllRWgeopVE='

const GOOD = `# flatnet node a
[Interface]
PrivateKey = ${PRIV}
Address = 10.99.0.1/24, fd00:99::0001/64   # both families
ListenPort = 51820
mtu = 1420

[Peer]
PublicKey = ${PUB1}
PresharedKey = ${PSK}
AllowedIPs = 10.99.0.2/32
AllowedIPs = 10.100.0.0/16, fd00:100::/48
Endpoint = 192.0.2.2:51820
PersistentKeepalive = 25

[peer]
# a peer that roams: no endpoint, learned from its packets
publickey=${PUB2}
allowedips=10.99.0.3
Endpoint = [2001:DB8::3]:4500
PersistentKeepalive = off
`

const GOOD_PARSED: WireguardConfig = {
  interface: { privateKey: PRIV, addresses: ['10.99.0.1/24', 'fd00:99::1/64'], listenPort: 51820, mtu: 1420 },
  peers: [
    {
      publicKey: PUB1,
      presharedKey: PSK,
      endpoint: '192.0.2.2:51820',
      allowedIps: ['10.99.0.2/32', '10.100.0.0/16', 'fd00:100::/48'],
      persistentKeepalive: 25,
    },
    { publicKey: PUB2, endpoint: '[2001:db8::3]:4500', allowedIps: ['10.99.0.3/32'] },
  ],
}

const HEAD = `[Interface]\nPrivateKey = ${PRIV}\n`

function issuesOf(text: string, file = 'wg0.conf'): readonly ValidationIssue[] {
  try {
    parseConfig(text, file)
  } catch (e) {
    assert.ok(e instanceof ValidationError, String(e))
    assert.equal(e.code, 'ERR_VALIDATION')
    return e.issues
  }
  assert.fail('expected a ValidationError')
}

/** The only issue of `text`, checked for position, key path and message. */
function expectIssue(text: string, line: number, column: number, path: string, message: RegExp): void {
  const issues = issuesOf(text)
  assert.equal(issues.length, 1, JSON.stringify(issues, null, 2))
  const [i] = issues
  assert.deepEqual({ file: i!.file, line: i!.line, column: i!.column, path: i!.path }, { file: 'wg0.conf', line, column, path })
  assert.match(i!.message, message)
}

describe('parseConfig: good files', () => {
  it('parses comments, blank lines, any key case, repeated list keys, both families, and canonicalises values', () => {
    assert.deepEqual(parseConfig(GOOD, 'wg0.conf'), GOOD_PARSED)
  })

  it('round-trips through formatConfig', () => {
    const text = formatConfig(GOOD_PARSED)
    assert.deepEqual(parseConfig(text), GOOD_PARSED)
    assert.equal(formatConfig(parseConfig(text)), text)
    assert.match(text, /^\[Interface\]\nPrivateKey = /)
    assert.match(text, /\n\[Peer\]\nPublicKey = xTIB/)
  })

  it('accepts CRLF line ends and a file with an interface and no peers', () => {
    const c = parseConfig(`[Interface]\r\nPrivateKey = ${PRIV}\r\n`)
    assert.deepEqual(c, { interface: { privateKey: PRIV, addresses: [] }, peers: [] })
    assert.deepEqual(parseConfig(formatConfig(c)), c)
  })

  it('treats PersistentKeepalive = 0 as off', () => {
    const c = parseConfig(`${HEAD}[Peer]\nPublicKey = ${PUB1}\nPersistentKeepalive = 0\n`)
    assert.equal(c.peers[0]!.persistentKeepalive, undefined)
  })

  it('readConfigFile names the file in issues, and a missing file is an InputReadError', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'flatnet-wgconf-'))
    after(() => rmSync(dir, { recursive: true, force: true }))
    const good = join(dir, 'good.conf')
    writeFileSync(good, GOOD)
    assert.deepEqual(await readConfigFile(good), GOOD_PARSED)
    const bad = join(dir, 'bad.conf')
    writeFileSync(bad, `${HEAD}Bogus = 1\n`)
    await assert.rejects(readConfigFile(bad), (e: unknown) => e instanceof ValidationError && e.issues[0]!.file === bad && e.message.includes(`${bad}:3:1`))
    await assert.rejects(readConfigFile(join(dir, 'missing.conf')), (e: unknown) => e instanceof InputReadError && e.code === 'ERR_INPUT_READ')
  })
})

describe('parseConfig: each kind of error, with its line and column', () => {
  it('an unknown key, and a key in the wrong section', () => {
    expectIssue(`${HEAD}  Table2 = 1\n`, 3, 3, 'Interface.Table2', /unknown key "Table2" in \[Interface\]; known keys: PrivateKey, Address/)
    expectIssue(`${HEAD}[Peer]\nPublicKey = ${PUB1}\nListenPort = 1\n`, 5, 1, 'Peer[0].ListenPort', /ListenPort belongs in \[Interface\]/)
  })

  it('wg-quick host settings are refused with the reason', () => {
    expectIssue(`${HEAD}DNS = 1.1.1.1\n`, 3, 1, 'Interface.DNS', /DNS is a wg-quick setting not supported by flatnet wg/)
    expectIssue(`${HEAD}PostUp = iptables -A FORWARD -j ACCEPT\n`, 3, 1, 'Interface.PostUp', /PostUp .* not supported by flatnet wg: flatnet runs no hook commands/)
    expectIssue(`${HEAD}SaveConfig = true\n`, 3, 1, 'Interface.SaveConfig', /not supported/)
    expectIssue(`${HEAD}Table = off\n`, 3, 1, 'Interface.Table', /not supported/)
    expectIssue(`${HEAD}FwMark = 0x1\n`, 3, 1, 'Interface.FwMark', /not supported by flatnet wg/)
  })

  it('keys that are not base64 of 32 bytes', () => {
    expectIssue(`[Interface]\nPrivateKey = not-a-key\n`, 2, 14, 'Interface.PrivateKey', /base64 WireGuard key \(32 bytes/)
    const short = Buffer.alloc(31, 7).toString('base64')
    expectIssue(`${HEAD}[Peer]\nPublicKey =   ${short}\n`, 4, 15, 'Peer[0].PublicKey', /32 bytes/)
    // Same bytes as PUB1 would decode from, but not the canonical spelling (low bits set).
    const sloppy = PUB1.slice(0, 42) + 'h='
    assert.equal(isWireguardKey(sloppy), false)
    expectIssue(`${HEAD}[Peer]\nPublicKey = ${PUB1}\nPresharedKey = ${sloppy}\n`, 5, 16, 'Peer[0].PresharedKey', /base64/)
  })

  it('endpoints: hostnames, unbracketed IPv6, bad ports', () => {
    const peer = `${HEAD}[Peer]\nPublicKey = ${PUB1}\n`
    expectIssue(`${peer}Endpoint = vpn.example.com:51820\n`, 5, 12, 'Peer[0].Endpoint', /"vpn.example.com" is a hostname; flatnet wg does no DNS lookups, give an IP address/)
    expectIssue(`${peer}Endpoint = 2001:db8::1:51820\n`, 5, 12, 'Peer[0].Endpoint', /must be bracketed/)
    expectIssue(`${peer}Endpoint = 192.0.2.1:65536\n`, 5, 12, 'Peer[0].Endpoint', /port "65536" must be an integer from 1 to 65535/)
    expectIssue(`${peer}Endpoint = 192.0.2.1\n`, 5, 12, 'Peer[0].Endpoint', /has no port/)
    expectIssue(`${peer}Endpoint = [192.0.2.1]:1\n`, 5, 12, 'Peer[0].Endpoint', /only IPv6 addresses go in brackets/)
    assert.throws(() => canonicalEndpoint('host.example:1'), InvalidArgumentError)
  })

  it('AllowedIPs and Address: bad CIDRs, host bits, duplicates, each item at its own column', () => {
    const peer = `${HEAD}[Peer]\nPublicKey = ${PUB1}\n`
    expectIssue(`${peer}AllowedIPs = 10.0.0.0/8,  10.1.2.3/24\n`, 5, 27, 'Peer[0].AllowedIPs', /"10.1.2.3\/24" has host bits set; did you mean 10.1.2.0\/24\?/)
    expectIssue(`${peer}AllowedIPs = 10.0.0.0/33\n`, 5, 14, 'Peer[0].AllowedIPs', /not an IP address or CIDR/)
    expectIssue(`${peer}AllowedIPs = 10.0.0.0/8, 10.0.0.0/8\n`, 5, 26, 'Peer[0].AllowedIPs', /listed twice/)
    expectIssue(`${peer}AllowedIPs = 10.0.0.0/8,,10.1.0.0/16\n`, 5, 25, 'Peer[0].AllowedIPs', /empty item/)
    expectIssue(`${HEAD}Address = 10.0.0.1/24, 300.0.0.1/24\n`, 3, 24, 'Interface.Address', /"300.0.0.1\/24" is not an IP address/)
  })

  it('ListenPort, MTU and PersistentKeepalive out of range', () => {
    expectIssue(`${HEAD}ListenPort = 70000\n`, 3, 14, 'Interface.ListenPort', /0 to 65535/)
    expectIssue(`${HEAD}MTU = 100\n`, 3, 7, 'Interface.MTU', /576 to 65535/)
    expectIssue(`${HEAD}MTU = 1420.5\n`, 3, 7, 'Interface.MTU', /integer/)
    expectIssue(`${HEAD}[Peer]\nPublicKey = ${PUB1}\nPersistentKeepalive = -1\n`, 5, 23, 'Peer[0].PersistentKeepalive', /"off" or an integer/)
  })

  it('a single-valued key given twice, and a key with no value', () => {
    expectIssue(`${HEAD}ListenPort = 1\nListenPort = 2\n`, 4, 1, 'Interface.ListenPort', /given twice in this section \(first on line 3\)/)
    expectIssue(`${HEAD}MTU =\n`, 3, 6, 'Interface.MTU', /MTU has no value/)
  })

  it('structure: keys before a section, unknown sections, lines without "="', () => {
    expectIssue(`ListenPort = 1\n${HEAD}`, 1, 1, 'ListenPort', /before any \[Interface\] or \[Peer\] section/)
    expectIssue(`${HEAD}[Peers]\nPublicKey = ${PUB1}\n`, 3, 1, '', /unknown section \[Peers\]; expected \[Interface\] or \[Peer\]/)
    expectIssue(`${HEAD}  just some words\n`, 3, 3, '', /expected "Key = Value"/)
  })

  it('missing and repeated sections and keys', () => {
    expectIssue(`[Interface]\nListenPort = 1\n`, 1, 1, 'Interface.PrivateKey', /\[Interface\] has no PrivateKey/)
    expectIssue(`${HEAD}[Peer]\nAllowedIPs = 10.0.0.0/8\n`, 3, 1, 'Peer[0].PublicKey', /\[Peer\] has no PublicKey/)
    expectIssue(`[Peer]\nPublicKey = ${PUB1}\n`, 1, 1, 'Interface', /no \[Interface\] section/)
    expectIssue(`${HEAD}${HEAD}`, 3, 1, 'Interface', /a second \[Interface\] section \(the first is on line 1\)/)
    expectIssue(`${HEAD}[Peer]\nPublicKey = ${PUB1}\n[Peer]\nPublicKey = ${PUB1}\n`, 6, 13, 'Peer[1].PublicKey', /the same peer appears twice \(first \[Peer\] on line 3\)/)
    expectIssue(`[Interface]\nPrivateKey = ${ALICE_PRIVATE}\n[Peer]\nPublicKey = ${ALICE_PUBLIC}\n`, 4, 13, 'Peer[0].PublicKey', /own public key/)
    const empty = issuesOf('')
    assert.deepEqual(
      empty.map((i) => [i.line, i.column]),
      [[0, 0]],
    )
  })

  it('reports every problem at once, in file order, each line naming file:line:column and key', () => {
    const text = `[Interface]\nPrivateKey = short\nDNS = 1.1.1.1\n[Peer]\nPublicKey = ${PUB1}\nEndpoint = host:1\nAllowedIPs = 10.0.0.1/8\n`
    const issues = issuesOf(text)
    assert.deepEqual(
      issues.map((i) => `${i.line}:${i.column} ${i.path}`),
      ['2:14 Interface.PrivateKey', '3:1 Interface.DNS', '6:12 Peer[0].Endpoint', '7:14 Peer[0].AllowedIPs'],
    )
    try {
      parseConfig(text, 'wg0.conf')
    } catch (e) {
      assert.match((e as Error).message, /^4 problems in input:\n {2}wg0\.conf:2:14: Interface\.PrivateKey: /)
    }
  })
})

describe('formatConfig', () => {
  it('refuses values the parser would refuse, so nothing can inject a line', () => {
    const base = GOOD_PARSED
    const withPeer = (p: object): WireguardConfig => ({ ...base, peers: [{ ...base.peers[0]!, ...p }] })
    assert.throws(() => formatConfig(withPeer({ endpoint: '192.0.2.1:1\nPostUp = rm -rf /' })), InvalidArgumentError)
    assert.throws(() => formatConfig(withPeer({ allowedIps: ['10.0.0.1/8'] })), InvalidArgumentError)
    assert.throws(() => formatConfig(withPeer({ persistentKeepalive: 0 })), InvalidArgumentError)
    assert.throws(() => formatConfig({ ...base, interface: { ...base.interface, mtu: 10 } }), InvalidArgumentError)
    assert.throws(
      () => formatConfig({ ...base, interface: { ...base.interface, privateKey: 'x' } }),
      (e: unknown) => e instanceof InvalidArgumentError && !e.message.includes('"x"'),
    )
  })
})

describe('keys', () => {
  it('derives the X25519 public key (RFC 7748 vector) and generates canonical, clamped keys', () => {
    assert.equal(publicKeyFromPrivateKey(ALICE_PRIVATE), ALICE_PUBLIC)
    const k = generatePrivateKeyBase64()
    assert.ok(isWireguardKey(k))
    const raw = Buffer.from(k, 'base64')
    assert.equal(raw[0]! & 7, 0)
    assert.equal(raw[31]! & 0xc0, 0x40)
    assert.throws(() => publicKeyFromPrivateKey('nope'), InvalidArgumentError)
  })
})
