import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { cidrContains, cidrCovers, formatCidr, formatIp, parseCidr, parseIp } from '../src/index.js'

const ip = (s: string) => {
  const v = parseIp(s)
  assert.ok(v, `${s} parses`)
  return v
}
const cidr = (s: string) => {
  const v = parseCidr(s)
  assert.ok(v, `${s} parses`)
  return v
}

describe('IP addresses', () => {
  it('round-trips IPv4 and canonical IPv6 text', () => {
    for (const s of ['0.0.0.0', '10.1.2.3', '255.255.255.255', '::', '::1', 'fd00::11', '2001:db8::1:0:0:1', '1:2:3:4:5:6:7:8', 'fe80::']) {
      assert.equal(formatIp(ip(s)), s)
    }
  })

  it('formats IPv6 by RFC 5952: longest zero run, first on ties, lower case', () => {
    assert.equal(formatIp(ip('2001:0DB8:0:0:1:0:0:1')), '2001:db8::1:0:0:1')
    assert.equal(formatIp(ip('2001:db8:0:1:1:1:1:1')), '2001:db8:0:1:1:1:1:1')
    assert.equal(formatIp(ip('0:0:0:0:0:ffff:c000:201')), '::ffff:c000:201')
  })

  it('reads an embedded IPv4 tail in IPv6', () => {
    assert.equal(formatIp(ip('::ffff:192.0.2.1')), '::ffff:c000:201')
    assert.equal(formatIp(ip('64:ff9b::198.51.100.7')), '64:ff9b::c633:6407')
  })

  it('refuses malformed addresses, leading zeros and zone ids', () => {
    for (const s of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1.2.3.-1', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', 'fe80::1%eth0', 'g::1', '12345::', '1.2.3.4/32', ' 1.2.3.4']) {
      assert.equal(parseIp(s), undefined, `"${s}" is refused`)
    }
  })
})

describe('CIDRs', () => {
  it('clears host bits and says so', () => {
    const c = cidr('10.1.2.3/16')
    assert.equal(formatCidr(c), '10.1.0.0/16')
    assert.equal(c.hostBitsSet, true)
    assert.equal(cidr('10.1.0.0/16').hostBitsSet, false)
    assert.equal(formatCidr(cidr('fd00::1234/64')), 'fd00::/64')
  })

  it('tests containment at every prefix length, across word boundaries for IPv6', () => {
    assert.ok(cidrContains(cidr('0.0.0.0/0'), ip('203.0.113.9')))
    assert.ok(cidrContains(cidr('10.0.0.0/8'), ip('10.255.255.255')))
    assert.ok(!cidrContains(cidr('10.0.0.0/8'), ip('11.0.0.0')))
    assert.ok(cidrContains(cidr('10.0.1.7/32'), ip('10.0.1.7')))
    assert.ok(!cidrContains(cidr('10.0.1.7/32'), ip('10.0.1.6')))
    assert.ok(cidrContains(cidr('fd00::/8'), ip('fdff::1')))
    assert.ok(cidrContains(cidr('2001:db8::/33'), ip('2001:db8:7fff::1')))
    assert.ok(!cidrContains(cidr('2001:db8::/33'), ip('2001:db8:8000::1')))
    assert.ok(cidrContains(cidr('::/0'), ip('::1')))
    assert.ok(!cidrContains(cidr('0.0.0.0/0'), ip('::1')), 'families never mix')
    assert.ok(cidrContains(cidr('fd00::5/128'), ip('fd00::5')))
  })

  it('knows when one prefix covers another', () => {
    assert.ok(cidrCovers(cidr('10.0.0.0/8'), cidr('10.1.0.0/16')))
    assert.ok(cidrCovers(cidr('10.0.0.0/8'), cidr('10.0.0.0/8')))
    assert.ok(!cidrCovers(cidr('10.1.0.0/16'), cidr('10.0.0.0/8')))
    assert.ok(!cidrCovers(cidr('10.0.0.0/8'), cidr('fd00::/8')))
  })

  it('refuses prefixes out of range or malformed', () => {
    for (const s of ['10.0.0.0/33', '::/129', '10.0.0.0', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/-1', '300.0.0.0/8', 'x/8']) {
      assert.equal(parseCidr(s), undefined, `"${s}" is refused`)
    }
  })
})
