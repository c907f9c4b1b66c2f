/**
 * The primitives against published vectors: RFC 7693 (BLAKE2s), the BLAKE2 reference KAT (keyed
 * BLAKE2s), RFC 7748 (X25519), RFC 8439 (ChaCha20-Poly1305), draft-irtf-cfrg-xchacha-03
 * (HChaCha20, XChaCha20-Poly1305), and wireguard-go's own KDF vectors (device/kdf_test.go).
 */
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { describe, it } from 'node:test'
import { InvalidArgumentError } from '@flatnet/core'
import {
  aeadOpen,
  aeadOpenWords,
  aeadSeal,
  aeadSealWords,
  Blake2s,
  blake2s,
  chachaPolyOpen,
  chachaPolySeal,
  generatePrivateKey,
  hash,
  hchacha20,
  hmac,
  INITIAL_CHAIN_KEY,
  INITIAL_HASH,
  kdf1,
  kdf2,
  kdf3,
  keyFromBase64,
  keyFromHex,
  keyToBase64,
  keyToHex,
  mac,
  aeadOpenBytes,
  publicKey,
  aeadSealBytes,
  x25519,
  xaeadOpen,
  xaeadSeal,
} from '../src/index.js'

const h = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex')
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')
const seq = (start: number, n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (start + i) & 0xff))

describe('BLAKE2s', () => {
  it('hashes "abc" as RFC 7693 Appendix B shows', () => {
    assert.equal(hex(blake2s(Buffer.from('abc'))), '508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982')
  })

  it('passes the RFC 7693 Appendix E self-test (keyed and unkeyed, four output lengths)', () => {
    // Fibonacci-style generator of the RFC's selftest_seq().
    const selftestSeq = (len: number, seed: number): Uint8Array => {
      const out = new Uint8Array(len)
      let a = Math.imul(0xdead4bad, seed) >>> 0
      let b = 1
      for (let i = 0; i < len; i++) {
        const t = (a + b) >>> 0
        a = b
        b = t
        out[i] = t >>> 24
      }
      return out
    }
    const grand = new Blake2s(32)
    for (const outLen of [16, 20, 28, 32]) {
      for (const inLen of [0, 3, 64, 65, 255, 1024]) {
        const input = selftestSeq(inLen, inLen)
        grand.update(blake2s(input, outLen))
        grand.update(blake2s(input, outLen, selftestSeq(outLen, outLen)))
      }
    }
    assert.equal(hex(grand.digest()), '6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe')
  })

  it('matches the BLAKE2 reference keyed KAT (key 00..1f)', () => {
    const key = seq(0, 32)
    assert.equal(hex(blake2s(new Uint8Array(0), 32, key)), '48a8997da407876b3d79c0d92325ad3b89cbb754d86ab71aee047ad345fd2c49')
    assert.equal(hex(blake2s(seq(0, 1), 32, key)), '40d15fee7c328830166ac3f918650f807e7e01e177258cdc0a39b11f598066f1')
  })

  it('gives the same digest however the input is split, and agrees with node:crypto unkeyed', () => {
    for (const len of [0, 1, 63, 64, 65, 127, 128, 129, 1000]) {
      const data = randomBytes(len)
      const whole = blake2s(data)
      assert.equal(hex(whole), createHash('blake2s256').update(data).digest('hex'))
      const parts = new Blake2s(32)
      for (let i = 0; i < len; i += 7) parts.update(data, i, Math.min(7, len - i))
      assert.equal(hex(parts.digest()), hex(whole))
    }
  })

  it('refuses bad parameters and reuse', () => {
    assert.throws(() => new Blake2s(0), RangeError)
    assert.throws(() => new Blake2s(33), RangeError)
    assert.throws(() => new Blake2s(32, new Uint8Array(33)), RangeError)
    const b = new Blake2s(16)
    b.digest()
    assert.throws(() => b.digest())
    assert.throws(() => b.update(new Uint8Array(1)))
  })
})

describe('HASH, MAC, HMAC and KDF', () => {
  it('derives the protocol constants every WireGuard implementation starts from', () => {
    assert.equal(hex(INITIAL_CHAIN_KEY), '60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36')
    assert.equal(hex(INITIAL_HASH), '2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3')
    assert.equal(hex(hash(Buffer.from('Noise_IKpsk2_'), Buffer.from('25519_ChaChaPoly_BLAKE2s'))), hex(INITIAL_CHAIN_KEY))
  })

  it('MAC is keyed BLAKE2s with a 16-byte output', () => {
    const key = seq(0, 32)
    assert.equal(hex(mac(key, seq(0, 10), seq(10, 5))), hex(blake2s(seq(0, 15), 16, key)))
    assert.equal(mac(key, Buffer.alloc(0)).length, 16)
  })

  it('matches wireguard-go\'s KDF vectors', () => {
    const vectors = [
      ['746573742d6b6579', '746573742d696e707574', '6f0e5ad38daba1bea8a0d213688736f19763239305e0f58aba697f9ffc41c633', 'df1194df20802a4fe594cde27e92991c8cae66c366e8106aaa937a55fa371e8a', 'fac6e2745a325f5dc5d11a5b165aad08b0ada28e7b4e666b7c077934a4d76c24'],
      ['776972656775617264', '776972656775617264', '491d43bbfdaa8750aaf535e334ecbfe5129967cd64635101c566d4caefda96e8', '1e71a379baefd8a79aa4662212fcafe19a23e2b609a3db7d6bcba8f560e3d25f', '31e1ae48bddfbe5de38f295e5452b1909a1b4e38e183926af3780b0c1e1f0160'],
      ['', '', '8387b46bf43eccfcf349552a095d8315c4055beb90208fb1be23b894bc2ed5d0', '58a0e5f6faefccf4807bff1f05fa8a9217945762040bcec2f4b4a62bdfe0e86e', '0ce6ea98ec548f8e281e93e32db65621c45eb18dc6f0a7ad94178610a2f7338e'],
    ] as const
    for (const [key, input, t0, t1, t2] of vectors) {
      assert.deepEqual(kdf3(h(key), h(input)).map(hex), [t0, t1, t2])
      assert.deepEqual(kdf2(h(key), h(input)).map(hex), [t0, t1])
      assert.equal(hex(kdf1(h(key), h(input))), t0)
    }
  })

  it('HMAC hashes its parts as one message', () => {
    assert.equal(hex(hmac(seq(1, 40), seq(0, 3), seq(3, 100))), hex(hmac(seq(1, 40), seq(0, 103))))
  })
})

describe('X25519', () => {
  it('computes the RFC 7748 §5.2 scalar multiplications', () => {
    assert.equal(
      hex(x25519(h('a546e36bf0527c9d3b16154b82465edd62144c0ac1fc5a18506a2244ba449ac4'), h('e6db6867583030db3594c1a424b15f7c726624ec26b3353b10a903a6d0ab1c4c'))!),
      'c3da55379de9c6908e94ea4df28d084f32eccf03491c71f754b4075577a28552',
    )
    // The u-coordinate has its top bit set, which X25519 must ignore.
    assert.equal(
      hex(x25519(h('4b66e9d4d1b4673c5ad22691957d6af5c11b6421e0ea01d42ca4169e7918ba0d'), h('e5210f12786811d3f4b7959d0538ae2c31dbe7106fc03c3efc4cd549c715a493'))!),
      '95cbde9476e8907d7aade45cb4b873f88b595a68799fa152e6f8f7647aac7957',
    )
  })

  it('reproduces the RFC 7748 §6.1 Diffie-Hellman exchange', () => {
    const alice = h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    const bob = h('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb')
    assert.equal(hex(publicKey(alice)), '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a')
    assert.equal(hex(publicKey(bob)), 'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f')
    const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742'
    assert.equal(hex(x25519(alice, publicKey(bob))!), shared)
    assert.equal(hex(x25519(bob, publicKey(alice))!), shared)
  })

  it('refuses public keys of small order (all-zero shared secret)', () => {
    const sk = generatePrivateKey()
    for (const point of [
      '0000000000000000000000000000000000000000000000000000000000000000',
      '0100000000000000000000000000000000000000000000000000000000000000',
      'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
      '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
      'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
    ]) {
      assert.equal(x25519(sk, h(point)), null, point)
    }
  })

  it('generates clamped private keys', () => {
    for (let i = 0; i < 20; i++) {
      const k = generatePrivateKey()
      assert.equal(k.length, 32)
      assert.equal(k[0]! & 7, 0)
      assert.equal(k[31]! & 0xc0, 0x40)
    }
  })
})

describe('ChaCha20-Poly1305', () => {
  const key = seq(0x80, 32)
  const sunscreen = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")
  const ad = h('50515253c0c1c2c3c4c5c6c7')

  it('matches RFC 8439 §2.8.2', () => {
    const sealed = chachaPolySeal(key, h('070000004041424344454647'), sunscreen, ad)
    assert.equal(
      hex(sealed),
      'd31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116' +
        '1ae10b594f09e26a7e902ecbd0600691',
    )
    assert.deepEqual(chachaPolyOpen(key, h('070000004041424344454647'), sealed, ad), sunscreen)
  })

  // RFC 8439 Appendix A.5: its nonce is 32 zero bits and then 0x0807060504030201 little-endian,
  // exactly WireGuard's counter nonce.
  const a5 = {
    key: h('1c9240a5eb55d38af333888604f6b5f0473917c1402b80099dca5cbc207075c0'),
    ad: h('f33388860000000000004e91'),
    counter: 0x0807060504030201n,
    ciphertext: h(`64a0861575861af460f062c79be643bd5e805cfd345cf389f108670ac76c8cb2
      4c6cfc18755d43eea09ee94e382d26b0bdb7b73c321b0100d4f03b7f355894cf
      332f830e710b97ce98c8a84abd0b948114ad176e008d33bd60f982b1ff37c855
      9797a06ef4f0ef61c186324e2b3506383606907b6a7c02b0f9f6157b53c867e4
      b9166c767b804d46a59b5216cde7a4e99040c5a40433225ee282a1b0a06c523e
      af4534d7f83fa1155b0047718cbc546a0d072b04b3564eea1b422273f548271a
      0bb2316053fa76991955ebd63159434ecebb4e466dae5a1073a6727627097a10
      49e617d91d361094fa68f0ff77987130305beaba2eda04df997b714d6c6f2c29
      a6ad5cb4022b02709b eead9d67890cbb22392336fea1851f38`),
  }
  const a5Plain = 'Internet-Drafts are draft documents valid for a maximum of six months and may be updated, replaced, or obsoleted by other documents at any time. It is inappropriate to use Internet-Drafts as reference material or to cite them other than as /\u201cwork in progress./\u201d'

  it('decrypts RFC 8439 A.5 with the counter as bigint, number halves and words', () => {
    assert.equal(aeadOpenBytes(a5.key, a5.counter, a5.ciphertext, a5.ad)?.toString(), a5Plain)
    const out = Buffer.alloc(a5.ciphertext.length + 10)
    const n = aeadOpenWords(a5.key, 0x04030201, 0x08070605, a5.ciphertext, 0, a5.ciphertext.length, out, 10, a5.ad)
    assert.equal(out.subarray(10, 10 + n).toString(), a5Plain)
    assert.equal(hex(aeadSealBytes(a5.key, a5.counter, Buffer.from(a5Plain), a5.ad)), hex(a5.ciphertext))
  })

  it('seals and opens between offsets, in place, with number and bigint counters alike', () => {
    const k = randomBytes(32)
    const plain = randomBytes(1400)
    const buf = Buffer.alloc(16 + 1400 + 16)
    plain.copy(buf, 16)
    assert.equal(aeadSeal(k, 123456789, buf, 16, 1400, buf, 16), 1416)
    assert.equal(hex(buf.subarray(16)), hex(aeadSealBytes(k, 123456789n, plain)))
    const viaWords = Buffer.alloc(1416)
    aeadSealWords(k, 123456789, 0, plain, 0, 1400, viaWords, 0)
    assert.equal(hex(viaWords), hex(buf.subarray(16)))
    const out = Buffer.alloc(1400)
    assert.equal(aeadOpen(k, 123456789, buf, 16, 1416, out, 0), 1400)
    assert.deepEqual(out, plain)
    // 2^53 - 1 as a number and as a bigint name the same nonce.
    assert.equal(hex(aeadSealBytes(k, Number.MAX_SAFE_INTEGER, plain)), hex(aeadSealBytes(k, BigInt(Number.MAX_SAFE_INTEGER), plain)))
  })

  it('refuses tampering, a wrong counter or wrong AD, and leaves the output untouched', () => {
    const k = randomBytes(32)
    const sealed = aeadSealBytes(k, 7, Buffer.from('hello'), Buffer.from('ad'))
    const out = Buffer.alloc(5, 0xee)
    assert.equal(aeadOpen(k, 8, sealed, 0, sealed.length, out, 0, Buffer.from('ad')), -1)
    assert.equal(aeadOpen(k, 7, sealed, 0, sealed.length, out, 0, Buffer.from('AD')), -1)
    assert.equal(aeadOpen(k, 7, sealed, 0, sealed.length, out, 0), -1)
    sealed[2]! ^= 1
    assert.equal(aeadOpen(k, 7, sealed, 0, sealed.length, out, 0, Buffer.from('ad')), -1)
    assert.deepEqual(out, Buffer.alloc(5, 0xee))
    assert.equal(aeadOpen(k, 7, sealed, 0, 15, out, 0), -1, 'shorter than a tag')
    assert.throws(() => aeadSealBytes(k, -1, Buffer.alloc(1)), RangeError)
    assert.throws(() => aeadSealBytes(k, 1n << 64n, Buffer.alloc(1)), RangeError)
  })
})

describe('XChaCha20-Poly1305', () => {
  it('derives the HChaCha20 subkey of draft-irtf-cfrg-xchacha-03 §2.2.1', () => {
    assert.equal(hex(hchacha20(seq(0, 32), h('000000090000004a0000000031415927'))), '82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc')
  })

  it('matches the AEAD vector of draft-irtf-cfrg-xchacha-03 §A.3.1', () => {
    const key = seq(0x80, 32)
    const nonce = seq(0x40, 24)
    const ad = h('50515253c0c1c2c3c4c5c6c7')
    const plain = Buffer.from("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.")
    const expected =
      'bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e' +
      'c0875924c1c7987947deafd8780acf49'
    const sealed = xaeadSeal(key, nonce, plain, ad)
    assert.equal(hex(sealed), expected)
    assert.deepEqual(xaeadOpen(key, nonce, sealed, ad), plain)
    sealed[0]! ^= 0x80
    assert.equal(xaeadOpen(key, nonce, sealed, ad), null)
    assert.throws(() => xaeadSeal(key, nonce.subarray(0, 12), plain), RangeError)
  })
})

describe('keys as text', () => {
  it('round-trips base64 and hex, and derives the public key', () => {
    const sk = generatePrivateKey()
    assert.deepEqual(keyFromBase64(keyToBase64(sk)), sk)
    assert.deepEqual(keyFromHex(keyToHex(sk)), sk)
    // RFC 7748's Alice, as `wg pubkey` would print it.
    const alice = h('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a')
    assert.equal(keyToBase64(publicKey(alice)), Buffer.from('8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a', 'hex').toString('base64'))
  })

  it('refuses anything but the canonical 44-character form of 32 bytes', () => {
    const good = keyToBase64(seq(1, 32))
    for (const bad of ['', good.slice(0, 43), `${good}=`, ` ${good}`, good.replace('=', 'A'), `${good.slice(0, 42)}B=`, keyToBase64(seq(1, 32)).replace(/./, '*'), Buffer.alloc(33).toString('base64')]) {
      assert.throws(() => keyFromBase64(bad), InvalidArgumentError, JSON.stringify(bad))
    }
    assert.throws(() => keyFromHex('ab'), InvalidArgumentError)
    assert.throws(() => keyToBase64(new Uint8Array(31)), InvalidArgumentError)
  })
})
