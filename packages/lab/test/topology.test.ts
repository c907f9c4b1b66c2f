/**
 * The topology file: what a valid one becomes, and every problem of a bad one reported with
 * file, line, column and field path.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { formatIssue, InputReadError, ValidationError } from '@flatnet/core'
import { DEFAULT_TOPOLOGY_YAML, loadTopology, readTopology, topologyEndpoints } from '../src/index.js'

const root = new URL('../../../../', import.meta.url).pathname

function problems(file: string, text: string): string[] {
  try {
    readTopology(file, text)
  } catch (err) {
    assert.ok(err instanceof ValidationError)
    assert.equal(err.code, 'ERR_VALIDATION')
    return err.issues.map(formatIssue)
  }
  assert.fail('expected a ValidationError')
}

const HEAD = 'apiVersion: flatnet.dev/v1alpha1\nkind: LabTopology\n'

describe('lab topology', () => {
  it('the embedded default has three hosts of the three kinds, and examples/lab/default.yaml is the same text', async () => {
    assert.equal(readFileSync(join(root, 'examples/lab/default.yaml'), 'utf8'), DEFAULT_TOPOLOGY_YAML)
    const t = await loadTopology()
    assert.equal(t.file, '<default>')
    assert.deepEqual(
      t.hosts.map((h) => `${h.name}:${h.kind}:${h.namespace}`),
      ['vm:vm:hosts', 'baremetal:baremetal:hosts', 'k8s-node:k8s-node:hosts'],
    )
    assert.deepEqual(t.underlay, { cidr: '192.168.77.0/24', mtu: 1500 })
    assert.ok(t.workloads.length >= 3)
    assert.ok(Object.isFrozen(t) && Object.isFrozen(t.hosts) && Object.isFrozen(t.hosts[0]) && Object.isFrozen(t.workloads[0]!.ports))
    // Namespaces carry the automatic name label, as in Kubernetes.
    assert.deepEqual(t.namespaces.find((n) => n.name === 'shop')?.labels, { env: 'prod', team: 'web', 'kubernetes.io/metadata.name': 'shop' })
  })

  it('netpol-3x3 is the conformance model: x, y, z with a, b, c each, 80 and 81 on TCP and UDP, spread over three hosts', async () => {
    const t = await loadTopology(join(root, 'examples/lab/netpol-3x3.yaml'))
    assert.deepEqual(
      t.workloads.map((w) => `${w.namespace}/${w.name}`),
      ['x/a', 'x/b', 'x/c', 'y/a', 'y/b', 'y/c', 'z/a', 'z/b', 'z/c'],
    )
    for (const w of t.workloads) {
      assert.deepEqual(w.labels, { pod: w.name })
      assert.deepEqual(
        w.ports.map((p) => `${p.name}=${p.port}/${p.protocol}`),
        ['serve-80-tcp=80/TCP', 'serve-80-udp=80/UDP', 'serve-81-tcp=81/TCP', 'serve-81-udp=81/UDP'],
      )
    }
    for (const ns of ['x', 'y', 'z']) assert.equal(t.namespaces.find((n) => n.name === ns)?.labels.ns, ns)
    // Every host holds three workloads, one of each namespace: 6 of 9 pairs cross hosts.
    for (const h of t.hosts) {
      const mine = t.workloads.filter((w) => w.host === h.name)
      assert.deepEqual(mine.map((w) => w.namespace).sort(), ['x', 'y', 'z'])
    }
    const crossing = t.workloads.flatMap((a) => t.workloads.filter((b) => a.host !== b.host)).length
    assert.equal(crossing, 54)
    assert.equal(topologyEndpoints(t).filter((e) => e.ports.length > 0).length, 9)
  })

  it('reports every problem of a bad file with line, column and field path', () => {
    const text = `${HEAD}underlay: {cidr: 192.168.77.0/30, mtu: 100}
namespaces:
  x: {labels: {ns: x}}
  Bad_NS: {}
hosts:
- {name: vm, kind: vm, namespace: x}
- {name: ul, kind: vm, namespace: x}
- {name: h3, kind: laptop, namespace: q, labels: {"-bad": v}}
- {name: vm, kind: vm, namespace: x, ports: [{name: serve_80, port: 80}, {name: a, port: 70000}, {name: b, port: 80, protocol: SCTP}]}
workloads:
- {namespace: x, name: a, host: vm2, labels: {pod: a}}
- {namespace: x, name: b, host: vm, lables: {pod: b}, ports: [{name: http, port: 80}, {name: web, port: 80}, {name: http, port: 81, protocol: UDP}]}
- {namespace: x, name: vm, host: vm}
`
    assert.deepEqual(problems('bad.yaml', text), [
      'bad.yaml:3:18: underlay.cidr: invalid underlay "192.168.77.0/30": must be an IPv4 network from /8 to /29, e.g. 192.168.77.0/24',
      'bad.yaml:3:40: underlay.mtu: must be between 1280 and 9000, got 100',
      `bad.yaml:6:3: namespaces.Bad_NS: invalid namespace name "Bad_NS": must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
      `bad.yaml:9:10: hosts[1].name: host name "ul" is reserved for the lab's underlay`,
      'bad.yaml:10:20: hosts[2].kind: must be one of "vm", "baremetal", "k8s-node", got "laptop"',
      'bad.yaml:10:39: hosts[2].namespace: namespace "q" is not declared under namespaces',
      `bad.yaml:10:51: hosts[2].labels.-bad: invalid key "-bad": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
      'bad.yaml:11:10: hosts[3].name: host "vm" is declared twice',
      `bad.yaml:11:53: hosts[3].ports[0].name: invalid port name "serve_80": must contain only lower case alphanumeric characters or '-'`,
      'bad.yaml:11:90: hosts[3].ports[1].port: must be between 1 and 65535, got 70000',
      'bad.yaml:11:128: hosts[3].ports[2].protocol: SCTP is not served in the lab; use TCP or UDP',
      'bad.yaml:13:33: workloads[0].host: unknown host "vm2"; the hosts are "vm", "ul", "h3"',
      'bad.yaml:14:37: workloads[1].lables: unknown field "lables"; did you mean "labels"?',
      'bad.yaml:14:105: workloads[1].ports[1].port: port 80/TCP is declared twice (also ports[0])',
      'bad.yaml:14:117: workloads[1].ports[2].name: port name "http" is used twice (also ports[0])',
      'bad.yaml:15:24: workloads[2].name: endpoint "x/vm" is declared twice (also at hosts[0])',
    ])
  })

  it('requires apiVersion, kind, namespaces and hosts, and names the expected values', () => {
    const issues = problems('t.yaml', 'apiVersion: v1\nkind: Topology\nworkloads: []\n')
    assert.ok(issues.includes('t.yaml:1:13: apiVersion: must be "flatnet.dev/v1alpha1", got "v1"'), issues.join('\n'))
    assert.ok(issues.includes('t.yaml:2:7: kind: must be "LabTopology", got "Topology"'))
    assert.ok(issues.includes('t.yaml:1:1: namespaces: required field is missing'))
    assert.ok(issues.includes('t.yaml:1:1: hosts: required field is missing'))
    assert.deepEqual(problems('t.yaml', `${HEAD}namespaces: {x: {}}\nhosts: []\n`), ['t.yaml:4:8: hosts: must have at least 1 item'])
    assert.deepEqual(problems('t.yaml', `${HEAD}namespaces: [x]\nhosts: [{name: a, kind: vm, namespace: x}]\n`), [
      't.yaml:3:13: namespaces: must be a map of namespace names to {labels}, e.g. "x: {labels: {ns: x}}"',
      't.yaml:4:40: hosts[0].namespace: namespace "x" is not declared under namespaces',
    ])
  })

  it('checks that the underlay has room for every host', () => {
    const hosts = ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => `- {name: ${n}, kind: vm, namespace: x}`).join('\n')
    assert.deepEqual(problems('t.yaml', `${HEAD}underlay: {cidr: 10.1.0.0/29}\nnamespaces: {x: {}}\nhosts:\n${hosts}\n`), ['t.yaml:3:18: underlay.cidr: 10.1.0.0/29 has room for 6 hosts, the topology declares 7'])
  })

  it('holds one document, and says so for an empty file or a list', () => {
    assert.deepEqual(problems('two.yaml', `${HEAD}---\nkind: x\n`), ['two.yaml:4:1: a topology file holds one document; remove the others or the "---" separators'])
    assert.deepEqual(problems('empty.yaml', '# nothing\n'), ['empty.yaml: the file holds no topology'])
    assert.deepEqual(problems('list.yaml', '- a\n'), ['list.yaml:1:1: must be an object, got a list'])
    assert.deepEqual(problems('yaml.yaml', `${HEAD}hosts: [\n`).length, 1)
  })

  it('names a file it cannot read', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fn-topo-'))
    try {
      await assert.rejects(loadTopology(join(dir, 'missing.yaml')), (err: unknown) => err instanceof InputReadError && err.message === `${join(dir, 'missing.yaml')}: cannot read: no such file`)
      const file = join(dir, 'bad.yaml')
      await writeFile(file, `${HEAD}namespaces: {x: {}}\nhosts: [{name: a, kind: vm, namespace: x, extra: 1}]\n`)
      await assert.rejects(loadTopology(file), (err: unknown) => err instanceof ValidationError && formatIssue(err.issues[0]!) === `${file}:4:43: hosts[0].extra: unknown field "extra"`)
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
