/**
 * podman, a real CNI runtime, runs containers on the flat network through `flatnet-cni`: the
 * default lab (three hosts with agents), podman in the k8s-node host's network namespace with
 * a network of plugin type `flatnet` installed by `flatnet cni install`, containers started
 * from a busybox root filesystem (`podman run --rootfs`, no image registry).
 *
 * podman's configuration is this test's own (CONTAINERS_CONF, --root, --runroot, --tmpdir in a
 * temporary directory): the machine's podman setup is neither read nor changed.
 */
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { AgentClient } from '@flatnet/agent/client'
import { workloadInterfaceName } from '@flatnet/agent/workload-link'
import { cidrContains, parseCidr, parseIp } from '@flatnet/core'
import { connectRedis, FlatnetStore, snapshotFromStore } from '@flatnet/store'
import { labDown, labUp, loadTopology, probeLab, type LabUpResult } from '../src/index.js'
import { repoRoot, skipReason, tempStateDir, uniqueLabId } from './helpers.js'
import { exec, PodmanSandbox, podmanMissing, type Run } from './podman-sandbox.js'

const FLATNET = join(repoRoot(), 'packages', 'cli', 'bin', 'flatnet.js')
function missingTools(): string | false {
  if (skipReason) return skipReason
  return podmanMissing() ?? false
}

describe('podman runs containers on the flat network through flatnet-cni', { skip: missingTools(), timeout: 600_000 }, () => {
  let lab: LabUpResult
  let stateDir: string
  let sandbox: PodmanSandbox
  let store: FlatnetStore
  let k8sNodeNetns: string
  let k8sNodeBlocks: string[] = []
  let peerId = ''
  const hostStatus = (host: string) =>
    new AgentClient({ socketPath: lab.agentSockets[host] as string }).get<{ node: { blocks: string[]; peerId: string }; peers: { node?: string; rxBytes: number; txBytes: number }[] }>('/v1/status')
  const handles = async (): Promise<Record<string, string>> => store.client.hgetall(`${store.keys.prefix}ipam:handles:${peerId}`)
  const endpointIps = async (key: string): Promise<string[] | undefined> => {
    const v = (await store.get('Endpoint', key))?.value as { status?: { podIPs?: { ip: string }[] } } | undefined
    return v?.status?.podIPs?.map((p) => p.ip)
  }
  const attachments = (): { key: string }[] => JSON.parse(readFileSync(join(stateDir, 'agents', 'k8s-node', 'state', 'workloads.json'), 'utf8')) as { key: string }[]
  const inK8sNodeBlock = (ip: string): boolean => k8sNodeBlocks.some((b) => cidrContains(parseCidr(b)!, parseIp(ip)!))
  const flatnet = (...args: string[]): Promise<Run> => exec(process.execPath, [FLATNET, ...args], { env: { ...process.env, FLATNET_REDIS_URL: lab.redisUrl } })
  const postgresIp = async (): Promise<string> => lab.info.endpoints.find((e) => e.key === 'data/postgres')!.addresses[0]!
  /** From inside a running container: the answer line of `ip:port`, or '' when nothing answered in 2 s. */
  const connect = async (container: string, ip: string, port: number): Promise<string> => (await sandbox.podman(['exec', container, '/bin/sh', '-c', `nc -w 2 ${ip} ${port} </dev/null`])).stdout.trim()
  const ipOf = async (container: string): Promise<string> => {
    const r = await sandbox.podman(['exec', container, '/bin/sh', '-c', 'ip -4 -o addr show dev eth0'])
    const m = /inet (\d+\.\d+\.\d+\.\d+)\/32/.exec(r.stdout)
    assert.ok(m, `${container}: ${r.stdout} ${r.stderr}`)
    return m[1] as string
  }

  before(async () => {
    stateDir = await tempStateDir()
    const id = uniqueLabId()
    lab = await labUp({ topology: await loadTopology(), stateDir, id, agentArgv: [process.execPath, FLATNET, 'agent', 'run'], logLevel: 'warn' })
    k8sNodeNetns = `fn-lab-${id}-k8s-node`
    const status = await hostStatus('k8s-node')
    k8sNodeBlocks = status.node.blocks
    peerId = status.node.peerId
    store = new FlatnetStore({ redis: connectRedis(lab.redisUrl, { connectTimeoutMs: 2000, commandTimeoutMs: 5000 }), where: lab.redisUrl }, { cluster: 'default', commandTimeoutMs: 5000 })
    sandbox = new PodmanSandbox(await mkdtemp(join(tmpdir(), 'fn-podman-')), k8sNodeNetns)
    const socket = lab.agentSockets['k8s-node'] as string
    const install = (...extra: string[]): Promise<Run> => flatnet('cni', 'install', '--bin-dir', sandbox.cniBin, '--conf-dir', sandbox.netDir, '--socket', socket, '--namespace', 'shop', ...extra)
    for (const r of [
      await install('--label', 'app=podman'),
      await install('--network', 'flatnet-client', '--label', 'app=podman', '--label', 'role=client', '--priority', '11'),
      await install('--network', 'flatnet-v04', '--cni-version', '0.4.0', '--priority', '12'),
    ]) {
      assert.equal(r.code, 0, r.stderr)
    }
  })

  after(async () => {
    await sandbox?.cleanup().catch(() => undefined)
    await store?.close().catch(() => undefined)
    if (stateDir) await labDown({ stateDir }).catch(() => undefined)
    if (sandbox) await rm(sandbox.dir, { recursive: true, force: true })
    if (stateDir) await rm(stateDir, { recursive: true, force: true })
  })

  it('podman lists the flatnet networks, and a container gets an address of its host agent\'s block', async () => {
    const nets = await sandbox.podman(['network', 'ls', '--format', '{{.Name}} {{.Driver}}'])
    assert.match(nets.stdout, /^flatnet flatnet$/m, nets.stderr)
    for (const network of ['flatnet', 'flatnet-v04']) {
      const r = await sandbox.run(['--rm', '--network', network, '--name', `addr-${network}`], 'ip -4 -o addr show dev eth0; ip route')
      assert.equal(r.code, 0, r.stderr)
      const ip = /inet (\d+\.\d+\.\d+\.\d+)\/32/.exec(r.stdout)?.[1]
      assert.ok(ip && inK8sNodeBlock(ip), `${network}: ${r.stdout}`)
      assert.match(r.stdout, /default via 169\.254\.1\.1 dev eth0/)
    }
  })

  it('a container reaches a workload on another lab host, through the WireGuard overlay', async () => {
    const pg = await postgresIp()
    const before = (await hostStatus('k8s-node')).peers.find((p) => p.node === 'vm')
    const r = await sandbox.run(['--rm', '--network', 'flatnet'], `nc -w 3 ${pg} 5432 </dev/null`)
    assert.equal(r.code, 0, r.stderr)
    assert.equal(r.stdout.trim(), 'data/postgres 5432/TCP')
    // The host routes the flat network into its WireGuard interface, and the vm peer's counters moved.
    const route = await exec('ip', ['-n', k8sNodeNetns, 'route', 'get', pg])
    assert.match(route.stdout, new RegExp(`dev fl${lab.info.id}w2 `), route.stdout)
    const after = (await hostStatus('k8s-node')).peers.find((p) => p.node === 'vm')
    assert.ok(before && after && after.txBytes > before.txBytes && after.rxBytes > before.rxBytes, JSON.stringify({ before, after }))
  })

  it('NetworkPolicy applies to containers exactly as to the lab\'s other endpoints, labels from the network or from flatnet endpoint label', async () => {
    for (const [name, network] of [
      ['plain', 'flatnet'],
      ['client', 'flatnet-client'],
    ] as const) {
      const r = await sandbox.run(['-d', '--network', network, '--name', name, '--env', `ANSWER=shop/${name}`], 'nc -ll -p 8080 -e /bin/serve')
      assert.equal(r.code, 0, r.stderr)
    }
    const pg = await postgresIp()
    const plainIp = await ipOf('plain')
    const policy = join(stateDir, 'cni-policies.yaml')
    writeFileSync(
      policy,
      [
        'apiVersion: networking.k8s.io/v1',
        'kind: NetworkPolicy',
        'metadata: {name: postgres-clients, namespace: data}',
        'spec:',
        '  podSelector: {matchLabels: {app: postgres}}',
        '  ingress:',
        '  - from: [{namespaceSelector: {}, podSelector: {matchLabels: {role: client}}}]',
        '---',
        'apiVersion: networking.k8s.io/v1',
        'kind: NetworkPolicy',
        'metadata: {name: podman-from-data, namespace: shop}',
        'spec:',
        '  podSelector: {matchLabels: {app: podman}}',
        '  ingress:',
        '  - from: [{namespaceSelector: {matchLabels: {team: data}}}]',
        '',
      ].join('\n'),
    )
    const applied = await flatnet('policy', 'apply', '-f', policy)
    assert.equal(applied.code, 0, applied.stderr)
    const revision = await store.revision()
    await Promise.all(
      Object.keys(lab.agentSockets).map(async (host) => {
        const deadline = Date.now() + 10_000
        while (((await new AgentClient({ socketPath: lab.agentSockets[host] as string }).get<{ applied?: { revision: number } }>('/v1/status')).applied?.revision ?? 0) < revision) {
          assert.ok(Date.now() < deadline, `${host} did not apply revision ${revision}`)
          await new Promise((r) => setTimeout(r, 100))
        }
      }),
    )
    const { snapshot } = await snapshotFromStore(store)
    const expected = (from: string, to: string, port: number): boolean => snapshot.evaluateRefs(from, to, port, 'TCP').allowed

    // Egress from containers, measured from inside them.
    const measured = {
      client: (await connect('client', pg, 5432)) === 'data/postgres 5432/TCP',
      plain: (await connect('plain', pg, 5432)) === 'data/postgres 5432/TCP',
    }
    assert.deepEqual(measured, { client: true, plain: false })
    assert.deepEqual({ client: expected('shop/client', 'data/postgres', 5432), plain: expected('shop/plain', 'data/postgres', 5432) }, measured)

    // Ingress to a container, measured by the lab's endpoints as for any other flow.
    const probes = await probeLab({
      stateDir,
      timeoutMs: 1500,
      evaluate: (f) => snapshot.evaluateRefs(f.from, f.to, f.port, f.protocol),
      flows: [
        { from: 'data/postgres', to: plainIp, port: 8080, protocol: 'TCP' },
        { from: 'shop/frontend', to: plainIp, port: 8080, protocol: 'TCP' },
        { from: 'shop/api', to: 'data/postgres', port: 5432, protocol: 'TCP' },
      ],
    })
    assert.deepEqual(
      probes.map((p) => [p.from, p.allowed, p.expected, p.probe.reply ?? p.probe.result]),
      [
        ['data/postgres', true, true, 'shop/plain 8080/TCP'],
        ['shop/frontend', false, false, 'timeout'],
        ['shop/api', false, false, 'timeout'],
      ],
    )
    assert.equal(probes[1]?.policy, 'shop/podman-from-data')

    // A label set later follows the container into policy, as for any endpoint.
    const label = await flatnet('endpoint', 'label', 'shop/plain', 'role=client')
    assert.equal(label.code, 0, label.stderr)
    const deadline = Date.now() + 5_000
    let reached = ''
    while (reached === '' && Date.now() < deadline) reached = await connect('plain', pg, 5432)
    assert.equal(reached, 'data/postgres 5432/TCP')
  })

  it('podman rm (CNI DEL) frees the address and removes the endpoint and the link', async () => {
    const r = await sandbox.run(['-d', '--network', 'flatnet', '--name', 'short-lived'], 'sleep 600')
    assert.equal(r.code, 0, r.stderr)
    const ip = await ipOf('short-lived')
    assert.ok((await handles())['workload:shop/short-lived'], 'address allocated')
    assert.deepEqual(await endpointIps('shop/short-lived'), [ip])
    const veth = workloadInterfaceName('shop/short-lived')
    assert.equal((await exec('ip', ['-n', k8sNodeNetns, 'link', 'show', veth])).code, 0)
    const removed = await sandbox.podman(['rm', '--force', '--time', '0', 'short-lived'])
    assert.equal(removed.code, 0, removed.stderr)
    assert.equal((await handles())['workload:shop/short-lived'], undefined, 'address released')
    assert.equal(await endpointIps('shop/short-lived'), undefined, 'endpoint removed')
    assert.notEqual((await exec('ip', ['-n', k8sNodeNetns, 'link', 'show', veth])).code, 0, 'link removed')
    assert.ok(!attachments().some((a) => a.key === 'shop/short-lived'))
  })

  it('a failed ADD leaves nothing behind, and the container starts once the cause is gone', async () => {
    const created = await sandbox.podman(['create', '--network', 'flatnet', '--name', 'clash', '--rootfs', sandbox.rootfs, '/bin/sh', '-c', 'ip -4 -o addr show dev eth0'])
    assert.equal(created.code, 0, created.stderr)
    const before = JSON.stringify([Object.keys(await handles()).sort(), (await store.list('Endpoint')).map((o) => o.key), attachments().map((a) => a.key)])
    // The host-side name of the container's veth is taken by something that is not flatnet's.
    const veth = workloadInterfaceName('shop/clash')
    assert.equal((await exec('ip', ['-n', k8sNodeNetns, 'link', 'add', veth, 'type', 'bridge'])).code, 0)
    const failed = await sandbox.podman(['start', '--attach', 'clash'])
    assert.notEqual(failed.code, 0, failed.stdout)
    assert.match(failed.stderr, /exists already on the host/)
    const after = JSON.stringify([Object.keys(await handles()).sort(), (await store.list('Endpoint')).map((o) => o.key), attachments().map((a) => a.key)])
    assert.equal(after, before)
    assert.match((await exec('ip', ['-n', k8sNodeNetns, '-d', '-j', 'link', 'show', veth])).stdout, /"info_kind":"bridge"/, 'the foreign interface is left alone')
    await exec('ip', ['-n', k8sNodeNetns, 'link', 'del', veth])
    const started = await sandbox.podman(['start', '--attach', 'clash'])
    assert.equal(started.code, 0, started.stderr)
    assert.match(started.stdout, /inet 10\.244\./)
  })
})
