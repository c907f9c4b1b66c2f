/**
 * The plugin's CNI protocol without processes: environment variables, network config, endpoint
 * identity, version rules and the result layout of each version.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { AGENT_SOCKET_PATH } from '@flatnet/agent/client'
import {
  addResult,
  checkCommandVersion,
  CNI_CODES,
  CniConfigError,
  CniEnvironmentError,
  CniUnsupportedFieldError,
  CniVersionError,
  endpointIdentity,
  objectName,
  parseCniArgs,
  readEnvironment,
  readNetConfig,
  requestVersion,
  resultAddresses,
  resultFormat,
  SUPPORTED_VERSIONS,
} from '../src/index.js'

const facts = { hostIfname: 'fnwabc', hostMac: 'ee:ee:ee:ee:ee:ee', ifname: 'eth0', mac: '02:00:00:00:00:01', mtu: 1420, netns: '/run/netns/x', ips: ['10.244.1.7'] }

describe('environment variables', () => {
  it('names every missing variable a command needs, with code 4', () => {
    assert.throws(
      () => readEnvironment({ CNI_COMMAND: 'ADD', CNI_IFNAME: 'eth0' }),
      (e: unknown) => e instanceof CniEnvironmentError && e.cniCode === 4 && /CNI_CONTAINERID, CNI_NETNS/.test(e.message),
    )
  })

  it('DEL needs no CNI_NETNS; GC, STATUS and VERSION need none of the per-container variables', () => {
    assert.equal(readEnvironment({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0' }).netns, undefined)
    for (const c of ['GC', 'STATUS', 'VERSION']) assert.equal(readEnvironment({ CNI_COMMAND: c }).command, c)
  })

  it('refuses an unknown or missing CNI_COMMAND with code 4', () => {
    for (const env of [{}, { CNI_COMMAND: 'add' }, { CNI_COMMAND: 'DELETE' }]) {
      assert.throws(() => readEnvironment(env), (e: unknown) => e instanceof CniEnvironmentError && /CNI_COMMAND/.test(e.message))
    }
  })

  it('checks container IDs, interface names and the netns path as the spec defines them', () => {
    const base = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'abc', CNI_NETNS: '/run/netns/x', CNI_IFNAME: 'eth0' }
    assert.equal(readEnvironment(base).ifname, 'eth0')
    for (const bad of [{ CNI_CONTAINERID: '-abc' }, { CNI_CONTAINERID: 'a/b' }, { CNI_IFNAME: 'a'.repeat(16) }, { CNI_IFNAME: '..' }, { CNI_IFNAME: 'eth:0' }, { CNI_IFNAME: 'eth 0' }, { CNI_NETNS: 'relative' }]) {
      assert.throws(() => readEnvironment({ ...base, ...bad }), CniEnvironmentError, JSON.stringify(bad))
    }
  })

  it('parses CNI_ARGS and refuses a piece that is not KEY=VALUE', () => {
    assert.deepEqual([...parseCniArgs('IgnoreUnknown=1;K8S_POD_NAME=web;;X=a=b')], [
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAME', 'web'],
      ['X', 'a=b'],
    ])
    assert.throws(() => parseCniArgs('K8S_POD_NAME'), CniEnvironmentError)
  })
})

describe('network config', () => {
  const ok = { cniVersion: '1.0.0', name: 'flatnet', type: 'flatnet' }

  it('fills in the defaults; the socket is the agent\'s default', () => {
    const c = readNetConfig(ok, { needsName: true })
    assert.equal(c.agentSocket, AGENT_SOCKET_PATH)
    assert.equal(c.namespace, 'default')
    assert.deepEqual(c.labels, {})
    assert.equal(c.policyWaitMs, 10_000)
  })

  it('refuses an unknown key with code 2, naming key and value; and ipam, which flatnet does itself', () => {
    assert.throws(() => readNetConfig({ ...ok, lables: { a: 'b' } }, { needsName: true }), (e: unknown) => e instanceof CniUnsupportedFieldError && e.cniCode === 2 && e.message.includes('lables={"a":"b"}'))
    assert.throws(() => readNetConfig({ ...ok, ipam: { type: 'host-local' } }, { needsName: true }), (e: unknown) => e instanceof CniUnsupportedFieldError && /ipam=/.test(e.message))
  })

  it('accepts what runtimes insert: prevResult, runtimeConfig, args and cni.dev/ keys', () => {
    const c = readNetConfig({ ...ok, prevResult: { cniVersion: '1.0.0' }, runtimeConfig: {}, args: {}, 'cni.dev/valid-attachments': [{ containerID: 'c1', ifname: 'eth0' }] }, { needsName: true })
    assert.deepEqual(c.validAttachments, [{ containerId: 'c1', ifname: 'eth0' }])
  })

  it('refuses a bad name, namespace, label, socket or number with code 7', () => {
    for (const bad of [{ name: '' }, { name: '-x' }, { type: undefined }, { namespace: 'Shop' }, { labels: { 'bad key': 'x' } }, { labels: { app: 5 } }, { agentSocket: 'agent.sock' }, { timeoutMs: 1.5 }, { policyWaitMs: -1 }, { 'cni.dev/valid-attachments': [{ containerID: 1 }] }]) {
      assert.throws(() => readNetConfig({ ...ok, ...bad }, { needsName: true }), (e: unknown) => e instanceof CniConfigError && e.cniCode === 7, JSON.stringify(bad))
    }
  })
})

describe('versions', () => {
  it('speaks every version from 0.1.0 to 1.1.0 and refuses others with code 1 listing them', () => {
    for (const v of SUPPORTED_VERSIONS) assert.equal(requestVersion(v), v)
    assert.equal(requestVersion(undefined), '0.1.0')
    assert.throws(() => requestVersion('2.0.0'), (e: unknown) => e instanceof CniVersionError && e.cniCode === CNI_CODES.incompatibleVersion && /1\.1\.0/.test(e.details))
  })

  it('allows CHECK from 0.4.0, STATUS and GC from 1.1.0', () => {
    assert.throws(() => checkCommandVersion('CHECK', '0.3.1'), CniVersionError)
    checkCommandVersion('CHECK', '0.4.0')
    for (const c of ['STATUS', 'GC']) {
      assert.throws(() => checkCommandVersion(c, '1.0.0'), CniVersionError)
      checkCommandVersion(c, '1.1.0')
    }
    checkCommandVersion('ADD', '0.1.0')
  })

  it('answers ADD in the layout of the version it was given', () => {
    assert.equal(resultFormat('0.2.0'), 'legacy')
    const legacy = addResult('0.2.0', facts)
    assert.deepEqual(legacy, { cniVersion: '0.2.0', ip4: { ip: '10.244.1.7/32', gateway: '169.254.1.1', routes: [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }] } })

    const v04 = addResult('0.4.0', facts)
    assert.equal(v04.cniVersion, '0.4.0')
    assert.deepEqual(v04.ips, [{ version: '4', address: '10.244.1.7/32', gateway: '169.254.1.1', interface: 1 }])
    assert.deepEqual(v04.interfaces, [
      { name: 'fnwabc', mac: 'ee:ee:ee:ee:ee:ee' },
      { name: 'eth0', mac: '02:00:00:00:00:01', sandbox: '/run/netns/x' },
    ])

    const v10 = addResult('1.0.0', facts)
    assert.deepEqual(v10.ips, [{ address: '10.244.1.7/32', gateway: '169.254.1.1', interface: 1 }])
    assert.deepEqual(v10.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }])

    const v11 = addResult('1.1.0', { ...facts, ips: ['10.244.1.7', 'fd00::7'] }, { dns: { nameservers: ['10.96.0.10'] } })
    assert.deepEqual((v11.interfaces as { mtu?: number }[]).map((i) => i.mtu), [1420, 1420])
    assert.deepEqual(v11.ips, [
      { address: '10.244.1.7/32', gateway: '169.254.1.1', interface: 1 },
      { address: 'fd00::7/128', gateway: 'fe80::1', interface: 1 },
    ])
    assert.deepEqual(v11.routes, [
      { dst: '0.0.0.0/0', gw: '169.254.1.1' },
      { dst: '::/0', gw: 'fe80::1' },
    ])
    assert.deepEqual(v11.dns, { nameservers: ['10.96.0.10'] })
  })

  it('passes a prevResult through, adding its own interfaces after the earlier plugin\'s', () => {
    const prev = { cniVersion: '1.0.0', interfaces: [{ name: 'lo0' }], ips: [{ address: '192.0.2.1/24', interface: 0 }], routes: [{ dst: '192.0.2.0/24' }] }
    const r = addResult('1.0.0', facts, { prevResult: prev })
    assert.deepEqual((r.interfaces as { name: string }[]).map((i) => i.name), ['lo0', 'fnwabc', 'eth0'])
    assert.deepEqual((r.ips as { interface: number }[]).map((i) => i.interface), [0, 2])
    assert.equal((r.routes as unknown[]).length, 2)
  })

  it('reads the addresses back from a result of any layout', () => {
    assert.deepEqual(resultAddresses(addResult('1.1.0', facts)), ['10.244.1.7'])
    assert.deepEqual(resultAddresses(addResult('0.1.0', facts)), ['10.244.1.7'])
    assert.deepEqual(resultAddresses(undefined), [])
  })
})

describe('endpoint identity', () => {
  it('takes namespace and name of a Kubernetes pod from K8S_POD_NAMESPACE and K8S_POD_NAME; labels are the syncer\'s', () => {
    assert.deepEqual(endpointIdentity(new Map([['K8S_POD_NAMESPACE', 'shop'], ['K8S_POD_NAME', 'web-7d9c.v1']]), 'cid', 'default'), { namespace: 'shop', name: 'web-7d9c.v1', labelsFrom: 'kubernetes' })
  })

  it('takes the name alone from podman\'s K8S_POD_NAME, the namespace and labels from the config', () => {
    assert.deepEqual(endpointIdentity(new Map([['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'web']]), 'cid', 'lab'), { namespace: 'lab', name: 'web', labelsFrom: 'config' })
  })

  it('names a container with neither by its ID', () => {
    assert.equal(endpointIdentity(new Map(), 'ABCDEF0123456789', 'default').name, 'c-abcdef012345')
  })

  it('makes Kubernetes object names of podman names, keeping names that differ apart', () => {
    assert.equal(objectName('web'), 'web')
    const a = objectName('My_App')
    const b = objectName('my-app')
    assert.match(a, /^my-app-[0-9a-f]{6}$/)
    assert.equal(b, 'my-app')
    assert.notEqual(objectName('my_app'), a)
    for (const raw of ['_x_', 'A.B..C', 'x'.repeat(300), '---', 'a.-b']) {
      const n = objectName(raw)
      assert.match(n, /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/, raw)
      assert.ok(n.length <= 253 && n.split('.').every((l) => l.length <= 63), n)
    }
  })

  it('refuses a K8S_POD_NAMESPACE without K8S_POD_NAME, or names Kubernetes would refuse', () => {
    assert.throws(() => endpointIdentity(new Map([['K8S_POD_NAMESPACE', 'shop']]), 'c', 'd'), CniEnvironmentError)
    assert.throws(() => endpointIdentity(new Map([['K8S_POD_NAMESPACE', 'Shop'], ['K8S_POD_NAME', 'x']]), 'c', 'd'), CniEnvironmentError)
  })
})
