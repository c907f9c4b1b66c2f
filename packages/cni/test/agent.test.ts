/**
 * `flatnet-cni` against a real agent: a one-host lab (Redis, `flatnet agent run` in the host's
 * network namespace), containers stood in for by network namespaces of this test. Every command
 * runs the real plugin process, as a runtime would.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AgentClient } from '@flatnet/agent/client'
import { workloadInterfaceName } from '@flatnet/agent/workload-link'
import { cidrContains, parseCidr, parseIp } from '@flatnet/core'
import { installCniPlugin } from '../src/index.js'
import { FLATNET, Namespaces, runPlugin, sh, skipUnlessRoot, startOneHostLab, type OneHostLab, type PluginRun } from './helpers.js'

interface Result {
  cniVersion: string
  interfaces: { name: string; mac?: string; mtu?: number; sandbox?: string }[]
  ips: { address: string; gateway: string; interface: number; version?: string }[]
  routes: { dst: string; gw?: string }[]
}

describe('flatnet-cni with a real agent', { skip: skipUnlessRoot, timeout: 300_000 }, () => {
  let h: OneHostLab
  let blocks: string[] = []
  let peerId = ''
  const namespaces = new Namespaces()
  const dirs: string[] = []

  const conf = (over: Record<string, unknown> = {}): string => JSON.stringify({ cniVersion: '1.1.0', name: 'flatnet', type: 'flatnet', agentSocket: h.socket, labels: { app: 'web' }, ...over })
  const env = (command: string, containerId: string, netns?: string, more: Record<string, string> = {}): Record<string, string | undefined> => ({
    CNI_COMMAND: command,
    CNI_CONTAINERID: containerId,
    CNI_NETNS: netns,
    CNI_IFNAME: 'eth0',
    CNI_PATH: '/opt/cni/bin',
    ...more,
  })
  const add = (containerId: string, netns: string, over: Record<string, unknown> = {}, args?: string): Promise<PluginRun> =>
    runPlugin(env('ADD', containerId, netns, { CNI_ARGS: args ?? `IgnoreUnknown=1;K8S_POD_NAME=${containerId}` }), conf(over))
  const del = (containerId: string, netns?: string, over: Record<string, unknown> = {}): Promise<PluginRun> => runPlugin(env('DEL', containerId, netns), conf(over))
  const handles = async (): Promise<Record<string, string>> => h.store.client.hgetall(`${h.store.keys.prefix}ipam:handles:${peerId}`)
  const endpoint = async (key: string): Promise<Record<string, unknown> | undefined> => (await h.store.get('Endpoint', key))?.value as Record<string, unknown> | undefined
  const attachments = (): { key: string; attachmentId?: string }[] => JSON.parse(readFileSync(join(h.stateDir, 'agents', 'node1', 'state', 'workloads.json'), 'utf8')) as { key: string; attachmentId?: string }[]
  const inBlock = (ip: string): boolean => blocks.some((b) => cidrContains(parseCidr(b)!, parseIp(ip)!))
  const ok = (r: PluginRun): void => assert.equal(r.code, 0, `exit ${r.code}: ${r.stdout} ${r.stderr}`)
  const failsWith = (r: PluginRun, code: number, msg?: RegExp): void => {
    assert.equal(r.code, 1, r.stdout)
    assert.equal(r.json?.code, code, r.stdout)
    if (msg) assert.match(`${String(r.json?.msg)} ${String(r.json?.details ?? '')}`, msg)
  }
  const addressOf = (r: PluginRun): string => ((r.json as unknown as Result).ips[0]?.address ?? '').replace(/\/\d+$/, '')

  before(async () => {
    h = await startOneHostLab()
    const status = await new AgentClient({ socketPath: h.socket }).get<{ node: { blocks: string[]; peerId: string } }>('/v1/status')
    blocks = status.node.blocks
    peerId = status.node.peerId
  })

  after(async () => {
    await namespaces.cleanup()
    await h?.close()
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })

  it('ADD attaches the container: an address of the node\'s block on CNI_IFNAME, the default route, the endpoint in the store; answered in the version asked', async () => {
    for (const version of ['0.4.0', '1.0.0', '1.1.0']) {
      const ns = await namespaces.create()
      const id = `add${version.replace(/\./g, '')}`
      const r = await add(id, ns.path, { cniVersion: version }, `IgnoreUnknown=1;K8S_POD_NAME=${id}`)
      ok(r)
      const result = r.json as unknown as Result
      assert.equal(result.cniVersion, version)
      const ip = addressOf(r)
      assert.ok(inBlock(ip), `${ip} in ${blocks.join(', ')}`)
      assert.equal(result.ips[0]?.version, version === '0.4.0' ? '4' : undefined)
      const container = result.interfaces[result.ips[0]!.interface]!
      assert.deepEqual([container.name, container.sandbox], ['eth0', ns.path])
      assert.equal(result.interfaces[0]?.name, workloadInterfaceName(`default/${id}`))
      assert.deepEqual(result.routes, [{ dst: '0.0.0.0/0', gw: '169.254.1.1' }])

      const addr = JSON.parse((await sh('ip', ['-n', ns.name, '-j', 'addr', 'show', 'dev', 'eth0'])).stdout) as { address: string; addr_info: { local: string; prefixlen: number }[] }[]
      assert.deepEqual(addr[0]?.addr_info.filter((a) => a.prefixlen === 32).map((a) => a.local), [ip])
      assert.equal(addr[0]?.address, container.mac)
      assert.match((await sh('ip', ['-n', ns.name, 'route', 'show', 'default'])).stdout, /default via 169\.254\.1\.1 dev eth0/)
      const ep = (await endpoint(`default/${id}`)) as { kind: string; metadata: { labels: Record<string, string> }; spec: { nodeName: string }; status: { podIPs: { ip: string }[] } }
      assert.equal(ep.kind, 'Pod')
      assert.deepEqual(ep.metadata.labels, { app: 'web' })
      assert.equal(ep.spec.nodeName, 'node1')
      assert.deepEqual(ep.status.podIPs, [{ ip }])
      assert.equal((await handles())[`workload:default/${id}`] !== undefined, true)
    }
  })

  it('ADD answers only once the agent enforces the new endpoint: its rules are in the nftables table', async () => {
    const ns = await namespaces.create()
    const r = await add('enforced', ns.path, {}, 'K8S_POD_NAME=enforced')
    ok(r)
    const ip = addressOf(r)
    const table = (await sh('ip', ['netns', 'exec', h.hostNetns, 'nft', 'list', 'table', 'inet', 'flatnet'])).stdout
    assert.match(table, new RegExp(`${ip.replace(/\./g, '\\.')} : jump ep\\d+-ingress`))
    assert.match(table, new RegExp(`iifname "${workloadInterfaceName('default/enforced')}" ip saddr != ${ip.replace(/\./g, '\\.')}`))
  })

  it('a repeated ADD answers the same attachment, and CHECK passes', async () => {
    const ns = await namespaces.create()
    const first = await add('again', ns.path)
    ok(first)
    const second = await add('again', ns.path)
    ok(second)
    assert.equal(addressOf(second), addressOf(first))
    const check = await runPlugin(env('CHECK', 'again', ns.path), conf({ prevResult: first.json }))
    ok(check)
    assert.equal(check.stdout, '', 'CHECK prints nothing on success')
  })

  it('CHECK reports a missing route, address, interface and nftables rule (code 103)', async () => {
    const check = async (id: string, netns: string, prevResult: unknown): Promise<PluginRun> => runPlugin(env('CHECK', id, netns), conf({ prevResult }))
    const made = async (id: string): Promise<{ ns: { name: string; path: string }; r: PluginRun }> => {
      const ns = await namespaces.create()
      const r = await add(id, ns.path)
      ok(r)
      return { ns, r }
    }
    const route = await made('chkroute')
    await sh('ip', ['-n', route.ns.name, 'route', 'del', 'default'])
    failsWith(await check('chkroute', route.ns.path, route.r.json), 103, /route: workload: no route default via 169\.254\.1\.1/)

    const address = await made('chkaddr')
    await sh('ip', ['-n', address.ns.name, 'addr', 'del', `${addressOf(address.r)}/32`, 'dev', 'eth0'])
    failsWith(await check('chkaddr', address.ns.path, address.r.json), 103, /address: workload: .* is not on eth0/)

    const iface = await made('chkif')
    await sh('ip', ['-n', h.hostNetns, 'link', 'del', workloadInterfaceName('default/chkif')])
    failsWith(await check('chkif', iface.ns.path, iface.r.json), 103, /interface: host: .* does not exist/)

    // A prevResult naming an address the agent never gave is an error too.
    const wrong = await made('chkprev')
    const forged = JSON.parse(JSON.stringify(wrong.r.json)) as Result
    forged.ips[0]!.address = '192.0.2.99/32'
    failsWith(await check('chkprev', wrong.ns.path, forged), 103, /192\.0\.2\.99/)

    // The rules: empty the ingress dispatch map behind the agent's back. Put back by the next
    // apply pass (any later change in the store), which the tests below cause.
    const rules = await made('chkrule')
    await sh('ip', ['netns', 'exec', h.hostNetns, 'nft', 'flush', 'map', 'inet', 'flatnet', 'ingress-v4'])
    failsWith(await check('chkrule', rules.ns.path, rules.r.json), 103, /rule: .* is not in the ingress map/)

    failsWith(await check('never-added', route.ns.path, undefined), 103, /no attachment cni:flatnet:never-added:eth0/)
  })

  it('DEL frees the address and the endpoint; repeated, after the netns is gone, and without prevResult it succeeds', async () => {
    const ns = await namespaces.create()
    const r = await add('delme', ns.path)
    ok(r)
    const veth = workloadInterfaceName('default/delme')
    assert.ok((await handles())['workload:default/delme'])
    await namespaces.remove(ns.name)
    const d1 = await del('delme')
    ok(d1)
    assert.equal(d1.stdout, '')
    assert.equal((await handles())['workload:default/delme'], undefined, 'address released')
    assert.equal(await endpoint('default/delme'), undefined, 'endpoint removed')
    assert.equal((await sh('ip', ['-n', h.hostNetns, 'link', 'show', veth], { allowFail: true })).code, 1, 'host veth gone')
    assert.ok(!attachments().some((a) => a.key === 'default/delme'))
    ok(await del('delme'))
    ok(await del('delme', '/run/netns/fn-cni-gone-for-good'))
    ok(await del('never-existed'))
  })

  it('an attachment whose container went away without a DEL (the agent was down) is removed at the next ADD', async () => {
    const gone = await namespaces.create()
    ok(await add('orphan', gone.path))
    assert.ok((await handles())['workload:default/orphan'])
    await namespaces.remove(gone.name)
    const next = await namespaces.create()
    ok(await add('next', next.path))
    const deadline = Date.now() + 10_000
    while ((await handles())['workload:default/orphan'] !== undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
    assert.equal((await handles())['workload:default/orphan'], undefined, 'address released')
    assert.equal(await endpoint('default/orphan'), undefined, 'endpoint removed')
    assert.ok(!attachments().some((a) => a.key === 'default/orphan'))
    ok(await del('orphan'))
  })

  it('GC removes the network\'s attachments not in cni.dev/valid-attachments, and nothing else', async () => {
    const keep = await namespaces.create()
    const drop = await namespaces.create()
    const other = await namespaces.create()
    ok(await add('gckeep', keep.path))
    ok(await add('gcdrop', drop.path))
    ok(await add('gcother', other.path, { name: 'othernet' }))
    const valid = attachments()
      .filter((a) => a.attachmentId?.startsWith('cni:flatnet:') && a.key !== 'default/gcdrop')
      .map((a) => ({ containerID: a.attachmentId!.split(':')[2], ifname: 'eth0' }))
    const gc = await runPlugin({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' }, conf({ 'cni.dev/valid-attachments': valid }))
    ok(gc)
    assert.equal(gc.stdout, '')
    const left = attachments().map((a) => a.key)
    assert.ok(!left.includes('default/gcdrop'), 'the stale one is gone')
    assert.ok(left.includes('default/gckeep') && left.includes('default/gcother'), left.join(' '))
    assert.equal((await handles())['workload:default/gcdrop'], undefined)
    assert.equal(await endpoint('default/gcdrop'), undefined)
  })

  it('twenty concurrent ADDs get twenty distinct addresses; twenty concurrent DELs free them all', async () => {
    const before = Object.keys(await handles()).length
    const nss = await Promise.all(Array.from({ length: 20 }, () => namespaces.create()))
    const adds = await Promise.all(nss.map((ns, i) => add(`par${i}`, ns.path)))
    adds.forEach(ok)
    const ips = adds.map(addressOf)
    assert.equal(new Set(ips).size, 20, ips.join(' '))
    for (const ip of ips) assert.ok(inBlock(ip), ip)
    assert.equal(Object.keys(await handles()).length, before + 20)
    const dels = await Promise.all(nss.map((_, i) => del(`par${i}`)))
    dels.forEach(ok)
    assert.equal(Object.keys(await handles()).length, before)
  })

  it('a failed ADD leaves nothing behind: no address, endpoint, attachment or link', async () => {
    const state = async (): Promise<string> => JSON.stringify([Object.keys(await handles()).sort(), (await h.store.list('Endpoint')).map((o) => o.key), attachments().map((a) => a.key)])
    const dual = await namespaces.create()
    ok(await add('dual', dual.path))
    const before = await state()

    // A second flatnet network for the same container: the agent refuses it (100).
    failsWith(await add('dual', dual.path, { name: 'othernet' }), 100, /joins one flatnet network/)

    // The host side's name is taken by something that is not ours.
    const ns1 = await namespaces.create()
    const taken = workloadInterfaceName('default/hostclash')
    await sh('ip', ['-n', h.hostNetns, 'link', 'add', taken, 'type', 'bridge'])
    failsWith(await add('hostclash', ns1.path), 101, /exists already/)
    assert.equal((await sh('ip', ['-n', h.hostNetns, 'link', 'show', taken], { allowFail: true })).code, 0, 'the foreign interface is left alone')
    await sh('ip', ['-n', h.hostNetns, 'link', 'del', taken])

    // CNI_IFNAME exists in the container already: the spec requires an error.
    const ns2 = await namespaces.create()
    await sh('ip', ['-n', ns2.name, 'link', 'add', 'eth0', 'type', 'bridge'])
    failsWith(await add('ifclash', ns2.path), 101, /File exists|exists/)
    assert.match((await sh('ip', ['-n', ns2.name, '-d', '-j', 'link', 'show', 'eth0'])).stdout, /"info_kind":"bridge"/)

    // The network namespace does not exist.
    failsWith(await add('nonetns', '/run/netns/fn-cni-does-not-exist'), 101)

    // A pod name Kubernetes would refuse: refused before the agent is asked.
    const ns3 = await namespaces.create()
    failsWith(await add('refused', ns3.path, {}, 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=Bad_Name'), 4, /K8S_POD_NAME/)

    assert.equal(await state(), before)
    assert.equal((await sh('ip', ['-n', h.hostNetns, 'link', 'show', workloadInterfaceName('default/ifclash')], { allowFail: true })).code, 1)
  })

  it('a Kubernetes pod keeps the labels and ports the syncer wrote, also across DEL and a new sandbox; a podman container gets the config\'s labels, changed later by flatnet endpoint label', async () => {
    const pod = {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'shop-web' } },
      spec: { nodeName: '', containers: [{ name: 'web', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }] }] },
      status: {},
    }
    await h.store.write([{ op: 'put', kind: 'Endpoint', key: 'shop/web-1', value: pod }])
    const ns = await namespaces.create()
    const r = await add('k8spod', ns.path, { labels: { ignored: 'yes' } }, 'IgnoreUnknown=1;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;K8S_POD_INFRA_CONTAINER_ID=k8spod')
    ok(r)
    const stored = (await endpoint('shop/web-1')) as typeof pod & { spec: { nodeName: string }; status: { podIPs: { ip: string }[] } }
    assert.deepEqual(stored.metadata.labels, { app: 'shop-web' })
    assert.deepEqual(stored.spec.containers, pod.spec.containers)
    assert.equal(stored.spec.nodeName, 'node1')
    assert.deepEqual(stored.status.podIPs, [{ ip: addressOf(r) }])
    // DEL of the sandbox: the syncer's Pod stays, without addresses, so that a new sandbox of
    // the same pod finds its labels.
    ok(await del('k8spod'))
    const afterDel = (await endpoint('shop/web-1')) as typeof stored
    assert.deepEqual(afterDel.metadata.labels, { app: 'shop-web' })
    assert.equal(afterDel.status.podIPs, undefined)
    const ns3 = await namespaces.create()
    ok(await add('k8spod2', ns3.path, {}, 'K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1'))
    assert.deepEqual(((await endpoint('shop/web-1')) as typeof stored).metadata.labels, { app: 'shop-web' })

    const ns2 = await namespaces.create()
    ok(await add('podman1', ns2.path, { namespace: 'lab', labels: { app: 'podman' } }, 'IgnoreUnknown=1;K8S_POD_NAME=My_Container'))
    const key = (await h.store.list('Endpoint')).map((o) => o.key).find((k) => k.startsWith('lab/my-container-'))
    assert.ok(key, 'podman name made into a Kubernetes name')
    assert.deepEqual(((await endpoint(key)) as { metadata: { labels: Record<string, string> } }).metadata.labels, { app: 'podman' })
    const label = await sh(process.execPath, [FLATNET, 'endpoint', 'label', key, 'tier=db'], { env: { ...process.env, FLATNET_REDIS_URL: h.lab.redisUrl } })
    assert.equal(label.code, 0, label.stderr)
    assert.deepEqual(((await endpoint(key)) as { metadata: { labels: Record<string, string> } }).metadata.labels, { app: 'podman', tier: 'db' })
  })

  it('the native front end hands ADD, CHECK and DEL to the agent, which answers exactly as the Node plugin does (no Node is started: the fallback is made impossible)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fn-cni-native-'))
    dirs.push(dir)
    // A Node that does not exist: a call the front end does not hand to the agent cannot succeed.
    const installed = await installCniPlugin({ binDir: join(dir, 'bin'), confDir: join(dir, 'net.d'), agentSocket: h.socket, native: true, nodePath: '/nonexistent/node' })
    const front = [installed.plugin]
    const ns = await namespaces.create()
    const r = await runPlugin(env('ADD', 'native1', ns.path, { CNI_ARGS: 'K8S_POD_NAME=native1' }), conf(), front)
    ok(r)
    const ip = addressOf(r)
    assert.ok(inBlock(ip), ip)
    assert.equal(((await endpoint('default/native1')) as { status: { podIPs: { ip: string }[] } }).status.podIPs[0]?.ip, ip)
    ok(await runPlugin(env('CHECK', 'native1', ns.path), conf({ prevResult: r.json }), front))
    ok(await runPlugin(env('DEL', 'native1', ns.path), conf(), front))
    assert.equal(await endpoint('default/native1'), undefined)
    assert.equal((await handles())['workload:default/native1'], undefined)

    // The same answers as the Node plugin, byte for byte: garbage, a bad variable, VERSION.
    for (const [e, input] of [
      // Garbage after the socket (a config without one goes to the default socket).
      [env('ADD', 'native2', ns.path), `{"agentSocket":${JSON.stringify(h.socket)},"cniVersion":"1.0.0", garbage`],
      [env('ADD', 'native2', ns.path, { CNI_IFNAME: 'eth0/x' }), conf()],
      [{ CNI_COMMAND: 'VERSION' }, conf({ cniVersion: '0.4.0' })],
      [env('ADD', 'native2', ns.path), conf({ cniVersion: '9.9.9' })],
    ] as const) {
      const viaAgent = await runPlugin(e, input, front)
      const node = await runPlugin(e, input)
      assert.deepEqual({ code: viaAgent.code, stdout: viaAgent.stdout }, { code: node.code, stdout: node.stdout })
    }
    assert.equal((await handles())['workload:default/native2'], undefined, 'nothing allocated for refused calls')
  })

  it('the agent refuses an exec request that is not a CNI call (400, ERR_CNI_EXEC_REQUEST) and runs nothing', async () => {
    const client = new AgentClient({ socketPath: h.socket })
    for (const body of [{}, { env: { PATH: '/bin' }, stdin: '' }, { env: { CNI_COMMAND: 5 }, stdin: '' }, { env: {}, stdin: 'not base64!' }]) {
      await assert.rejects(client.post('/v1/cni/exec', body), (err: { status?: number; code?: string }) => err.status === 400 && err.code === 'ERR_CNI_EXEC_REQUEST')
    }
  })

  it('STATUS succeeds on a ready agent and answers 50 with the reason for one that has not reached its store', async () => {
    ok(await runPlugin({ CNI_COMMAND: 'STATUS' }, conf()))
    const dir = mkdtempSync(join(tmpdir(), 'fn-cni-agent-'))
    dirs.push(dir)
    const ns = await namespaces.create()
    const socket = join(dir, 'agent.sock')
    const config = { nodeName: 'lonely', stateDir: join(dir, 'state'), runDir: join(dir, 'run'), store: { url: `unix://${join(dir, 'no-redis.sock')}` }, api: { socket }, metrics: { listen: '' }, log: { level: 'warn' }, reconnect: { minMs: 200, maxMs: 1000 } }
    writeFileSync(join(dir, 'agent.yaml'), JSON.stringify(config))
    const agent = spawn('ip', ['netns', 'exec', ns.name, process.execPath, FLATNET, 'agent', 'run', '--config', join(dir, 'agent.yaml')], { stdio: 'ignore' })
    try {
      let r: PluginRun | undefined
      const deadline = Date.now() + 30_000
      do {
        await new Promise((res) => setTimeout(res, 200))
        r = await runPlugin({ CNI_COMMAND: 'STATUS' }, conf({ agentSocket: socket }))
      } while (r.json?.msg !== undefined && /not reachable/.test(String(r.json.msg)) && Date.now() < deadline)
      failsWith(r, 50, /has not reached the store/)
      // ADD is refused as "try again later", and leaves nothing.
      const ns2 = await namespaces.create()
      failsWith(await runPlugin(env('ADD', 'early', ns2.path), conf({ agentSocket: socket })), 11, /not reached the store/)
    } finally {
      if (agent.pid !== undefined) process.kill(agent.pid, 'SIGTERM')
      await new Promise((res) => (agent.exitCode !== null ? res(undefined) : agent.once('exit', res)))
    }
  })
})
