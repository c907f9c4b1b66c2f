import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { checkDns1123Label, checkDns1123Subdomain, checkLabelKey, checkLabelValue, checkPortName, endpointKey, spiffeId } from '../src/index.js'

describe('Kubernetes names', () => {
  it('accepts label keys with and without a prefix, and refuses bad ones', () => {
    for (const k of ['app', 'app.kubernetes.io/name', 'kubernetes.io/metadata.name', 'a_b-c.d', 'A1']) assert.equal(checkLabelKey(k), undefined, k)
    for (const k of ['', '-app', 'app-', 'a/b/c', 'UPPER.io/x', '/x', 'x/', 'a'.repeat(64), `${'a'.repeat(254)}/x`]) assert.ok(checkLabelKey(k), k)
  })

  it('accepts label values including empty, and refuses bad ones', () => {
    for (const v of ['', 'a', 'v1.2_3-x']) assert.equal(checkLabelValue(v), undefined, v)
    for (const v of ['-a', 'a-', 'a b', 'a/b', 'a'.repeat(64)]) assert.ok(checkLabelValue(v), v)
  })

  it('checks namespace (DNS label) and object (DNS subdomain) names', () => {
    assert.equal(checkDns1123Label('team-a'), undefined)
    assert.ok(checkDns1123Label('team.a'))
    assert.ok(checkDns1123Label('Team'))
    assert.ok(checkDns1123Label('a'.repeat(64)))
    assert.equal(checkDns1123Subdomain('allow.from-x'), undefined)
    assert.ok(checkDns1123Subdomain('allow..x'))
  })

  it('checks port names as IANA_SVC_NAME', () => {
    for (const n of ['http', 'serve-80-tcp', 'h2c', 'a']) assert.equal(checkPortName(n), undefined, n)
    for (const n of ['', '80', 'HTTP', '-http', 'http-', 'ht--tp', 'abcdefghijklmnop', 'a_b']) assert.ok(checkPortName(n), n)
  })

  it('writes endpoint identities in one string form', () => {
    assert.equal(endpointKey({ namespace: 'shop', name: 'api' }), 'shop/api')
    assert.equal(spiffeId({ namespace: 'shop', name: 'api' }), 'spiffe://cluster.local/ns/shop/ep/api')
    assert.equal(spiffeId({ namespace: 'shop', name: 'api' }, 'example.org'), 'spiffe://example.org/ns/shop/ep/api')
  })
})
