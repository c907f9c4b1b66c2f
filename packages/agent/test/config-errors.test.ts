/**
 * Bad agent configurations: each kind of mistake, in the file, the environment and the flags,
 * gives the exact message, naming file:line:column (or the variable or flag) and the field.
 * Secrets never appear in a message.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { formatIssue } from '@flatnet/core'
import { AgentConfigInvalidError, loadAgentConfig, type AgentConfigFlags } from '../src/index.js'

const dir = mkdtempSync(join(tmpdir(), 'fn-agent-config-errors-'))
after(() => rmSync(dir, { recursive: true, force: true }))

const host = { hostname: () => 'node-a' }

interface Input {
  readonly yaml?: string | Uint8Array
  readonly env?: Record<string, string>
  readonly flags?: AgentConfigFlags
  readonly hostname?: string
}

/** The problems of a configuration, one line each, with the temp file shown as agent.yaml. */
function problems(input: Input): string[] {
  const file = join(dir, 'agent.yaml')
  writeFileSync(file, input.yaml ?? '')
  try {
    loadAgentConfig({ file, env: input.env ?? {}, flags: input.flags ?? {} }, input.hostname === undefined ? host : { hostname: () => input.hostname as string })
  } catch (err) {
    assert.ok(err instanceof AgentConfigInvalidError, `expected AgentConfigInvalidError, got ${String(err)}`)
    assert.equal(err.code, 'ERR_AGENT_CONFIG_INVALID')
    assert.equal(err.exitCode, 78)
    const lines = err.issues.map((i) => formatIssue(i).replaceAll(file, 'agent.yaml'))
    assert.equal(err.message.replaceAll(file, 'agent.yaml'), `${lines.length} problem${lines.length === 1 ? '' : 's'} in the agent configuration:\n${lines.map((l) => `  ${l}`).join('\n')}`)
    return lines
  }
  assert.fail('the configuration was accepted')
}

describe('agent configuration: bad input in the file', () => {
  it('unknown fields, with the likely meaning', () => {
    assert.deepEqual(problems({ yaml: 'nodename: a\nlistenPort: 1\nwireguard:\n  port: 1\n  mtU: 1400\nredis: redis://r\nmesh: {relayserver: true}\n' }), [
      'agent.yaml:1:1: nodename: unknown field "nodename"; did you mean "nodeName"?',
      'agent.yaml:2:1: listenPort: unknown field "listenPort": "listenPort" belongs under "wireguard"',
      'agent.yaml:4:3: wireguard.port: unknown field "port": the UDP port is listenPort',
      'agent.yaml:5:3: wireguard.mtU: unknown field "mtU"; did you mean "mtu"?',
      'agent.yaml:6:1: redis: unknown field "redis": the Redis URL is store.url',
      'agent.yaml:7:8: mesh.relayserver: unknown field "relayserver"; did you mean "relayServer"?',
    ])
  })

  it('wrong types', () => {
    assert.deepEqual(problems({ yaml: 'wireguard: {listenPort: "51820", mtu: 1400.5}\nmesh: {relayServer: yes, listen: /ip4/0.0.0.0/tcp/7946}\nstore: 5\nnodeLabels: {version: 1.0}\ncluster: [a]\n' }), [
      'agent.yaml:1:25: wireguard.listenPort: must be an integer, got a string ("51820")',
      'agent.yaml:1:39: wireguard.mtu: must be an integer, got a number (1400.5)',
      'agent.yaml:2:21: mesh.relayServer: must be true or false, got a string ("yes")',
      'agent.yaml:2:34: mesh.listen: must be a list, got a string ("/ip4/0.0.0.0/tcp/7946")',
      'agent.yaml:3:8: store: must be an object, got a number (5)',
      'agent.yaml:4:23: nodeLabels.version: must be a string, got a number (1); put the value in quotes',
      'agent.yaml:5:10: cluster: must be a string, got a list',
    ])
  })

  it('numbers out of range, and values outside a fixed set', () => {
    assert.deepEqual(problems({ yaml: 'wireguard: {listenPort: 0, mtu: 70000, backend: kernal}\nstore: {timeoutMs: 10}\nlog: {level: verbose}\nreconnect: {minMs: 5}\n' }), [
      'agent.yaml:1:25: wireguard.listenPort: must be between 1 and 65535, got 0',
      'agent.yaml:1:33: wireguard.mtu: must be between 576 and 65535, got 70000',
      'agent.yaml:1:49: wireguard.backend: must be one of "auto", "kernel", "userspace", got a string ("kernal")',
      'agent.yaml:2:20: store.timeoutMs: must be between 100 and 600000, got 10',
      'agent.yaml:3:14: log.level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got a string ("verbose")',
      'agent.yaml:4:20: reconnect.minMs: must be between 10 and 600000, got 5',
    ])
  })

  it('names, paths and interface names', () => {
    const yaml = [
      'nodeName: Web_1',
      'cluster: Prod',
      'stateDir: var/lib/flatnet',
      'wireguard: {interfaceName: flatnet-interface0}',
      'hostEndpoint: {namespace: "", name: "-x"}',
      `api: {socket: /run/${'s'.repeat(110)}.sock}`,
      'join: {tokenFile: token.txt}',
      '',
    ].join('\n')
    assert.deepEqual(problems({ yaml }), [
      `agent.yaml:1:11: nodeName: invalid node name "Web_1": must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
      `agent.yaml:2:10: cluster: invalid cluster name "Prod": must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character`,
      'agent.yaml:3:11: stateDir: must be an absolute path (starting with "/"), got "var/lib/flatnet"',
      'agent.yaml:4:28: wireguard.interfaceName: must be no more than 15 characters, got 18',
      'agent.yaml:5:27: hostEndpoint.namespace: must not be empty',
      `agent.yaml:5:37: hostEndpoint.name: invalid endpoint name "-x": must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`,
      'agent.yaml:6:15: api.socket: a unix socket path must be no more than 107 bytes, got 120',
      'agent.yaml:7:19: join.tokenFile: must be an absolute path (starting with "/"), got "token.txt"',
    ])
  })

  it('addresses: multiaddrs, underlay addresses, the metrics listener', () => {
    const yaml = [
      'mesh:',
      '  listen: [/ip4/0.0.0.0/udp/7946, /dns4/a.example/tcp/7946, /ip4/1.2.3/tcp/1, /ip4/0.0.0.0/tcp/0]',
      '  announce: [/ip4/192.0.2.1/tcp/0, /ip4/192.0.2.1/tcp/7946/p2p/12D3KooWLRPJAA5o6Z6pBNSSnHfn9MDzwBeVuN6yrAA8rYjt9u7Y]',
      '  bootstrap: [/ip4/192.0.2.1/tcp/7946/p2p/Qm123, ip4/192.0.2.1/tcp/7946, /ip6/fd00::1/tcp/7946/ws]',
      'underlay: {addresses: [192.0.2.10, "192.0.2.10:70000", "fd00::1:51820", host.example, 192.0.2.10]}',
      'metrics: {listen: "localhost:9469"}',
      '',
    ].join('\n')
    assert.deepEqual(problems({ yaml }), [
      'agent.yaml:2:12: mesh.listen[0]: invalid multiaddr "/ip4/0.0.0.0/udp/7946": the mesh runs over TCP: the address must continue with /tcp/<port>',
      'agent.yaml:2:35: mesh.listen[1]: invalid multiaddr "/dns4/a.example/tcp/7946": must start with /ip4, /ip6',
      'agent.yaml:2:61: mesh.listen[2]: invalid multiaddr "/ip4/1.2.3/tcp/1": "1.2.3" is not an IPv4 address',
      'agent.yaml:3:14: mesh.announce[0]: invalid multiaddr "/ip4/192.0.2.1/tcp/0": port 0 must be between 1 and 65535',
      'agent.yaml:3:36: mesh.announce[1]: invalid multiaddr "/ip4/192.0.2.1/tcp/7946/p2p/12D3KooWLRPJAA5o6Z6pBNSSnHfn9MDzwBeVuN6yrAA8rYjt9u7Y": nothing may follow the port in an announce address',
      'agent.yaml:4:15: mesh.bootstrap[0]: invalid multiaddr "/ip4/192.0.2.1/tcp/7946/p2p/Qm123": "Qm123" is not a PeerId (Incorrect length)',
      'agent.yaml:4:50: mesh.bootstrap[1]: invalid multiaddr "ip4/192.0.2.1/tcp/7946": expected a form like /ip4/192.0.2.10/tcp/7946/p2p/12D3KooW...',
      'agent.yaml:4:74: mesh.bootstrap[2]: invalid multiaddr "/ip6/fd00::1/tcp/7946/ws": only /p2p/<PeerId> may follow the port',
      'agent.yaml:5:36: underlay.addresses[1]: port 70000 must be between 1 and 65535',
      `agent.yaml:5:56: underlay.addresses[2]: "fd00::1:51820" is not an IP address, 'ipv4:port' or '[ipv6]:port'`,
      `agent.yaml:5:73: underlay.addresses[3]: "host.example" is not an IP address, 'ipv4:port' or '[ipv6]:port'`,
      'agent.yaml:5:87: underlay.addresses[4]: "192.0.2.10" is listed twice',
      'agent.yaml:6:19: metrics.listen: "localhost:9469": the host must be an IP address (e.g. 127.0.0.1:9469 or [::1]:9469), not a name',
    ])
  })

  it('labels, named ports and failsafe rules', () => {
    const yaml = [
      'nodeLabels: {"bad key!": x, zone: "a b"}',
      'hostEndpoint:',
      '  ports:',
      '  - {name: SSH, port: 22}',
      '  - {name: web, port: 70000, protocol: ICMP}',
      '  - {name: web, containerPort: 80}',
      'policy:',
      '  failsafe:',
      '    inbound:',
      '    - {protocol: tcp, port: 22}',
      '    - {protocol: TCP, port: 22, cidr: 10.0.0.1/8}',
      '    - {protocol: UDP, port: 68, cidr: 10.0.0.0/33}',
      '    - {protocol: UDP}',
      '    outbound:',
      '    - {protocol: UDP, port: 53}',
      '    - {protocol: UDP, port: 53}',
      '',
    ].join('\n')
    assert.deepEqual(problems({ yaml }), [
      `agent.yaml:1:14: nodeLabels["bad key!"]: invalid key "bad key!": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
      `agent.yaml:1:35: nodeLabels.zone: invalid value "a b": must be empty or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
      `agent.yaml:4:12: hostEndpoint.ports[0].name: invalid port name "SSH": must contain only lower case alphanumeric characters or '-'`,
      'agent.yaml:5:23: hostEndpoint.ports[1].port: must be between 1 and 65535, got 70000',
      'agent.yaml:5:40: hostEndpoint.ports[1].protocol: must be one of "TCP", "UDP", "SCTP", got "ICMP"',
      'agent.yaml:6:5: hostEndpoint.ports[2].port: required field is missing',
      'agent.yaml:6:12: hostEndpoint.ports[2].name: port name "web" is used twice',
      'agent.yaml:6:17: hostEndpoint.ports[2].containerPort: unknown field "containerPort": a named port has "port", not "containerPort"',
      'agent.yaml:10:18: policy.failsafe.inbound[0].protocol: must be one of "TCP", "UDP", "SCTP", got "tcp"',
      'agent.yaml:11:39: policy.failsafe.inbound[1].cidr: CIDR "10.0.0.1/8" has host bits set: did you mean 10.0.0.0/8?',
      `agent.yaml:12:39: policy.failsafe.inbound[2].cidr: invalid CIDR "10.0.0.0/33": must be an IPv4 or IPv6 address, '/', and a prefix length (e.g. 10.0.0.0/16 or fd00::/64)`,
      'agent.yaml:13:7: policy.failsafe.inbound[3].port: required field is missing',
      'agent.yaml:16:7: policy.failsafe.outbound[1]: UDP port 53 is listed twice',
    ])
  })

  it('workloads: required fields, IPs, one identity per name and per address', () => {
    const yaml = [
      'hostEndpoint: {namespace: hosts, name: node-a}',
      'workloads:',
      '- {namespace: data, name: pg, ips: [10.64.2.5, 10.64.2.500]}',
      '- {namespace: data, name: pg, ips: [10.64.2.6]}',
      '- {namespace: data, name: pg2, ips: ["fd00::5", "fd00:0::5"]}',
      '- {namespace: data, name: cache, ips: []}',
      '- {namespace: data, name: web, ips: [10.64.2.5/32]}',
      '- {name: orphan, ips: [10.64.2.9], labels: {app: x}}',
      '- {namespace: app, name: web, ips: [10.64.2.6]}',
      '',
    ].join('\n')
    assert.deepEqual(problems({ yaml }), [
      'agent.yaml:3:48: workloads[0].ips[1]: invalid IP address "10.64.2.500": must be an IPv4 address (e.g. 10.0.0.1) or an IPv6 address (e.g. fd00::1), without a prefix length',
      'agent.yaml:4:27: workloads[1].name: workload data/pg is declared twice',
      'agent.yaml:5:49: workloads[2].ips[1]: IP address "fd00:0::5" is already used by this workload',
      'agent.yaml:6:39: workloads[3].ips: must have at least 1 item',
      'agent.yaml:7:38: workloads[4].ips[0]: invalid IP address "10.64.2.5/32": must be an IPv4 address (e.g. 10.0.0.1) or an IPv6 address (e.g. fd00::1), without a prefix length',
      'agent.yaml:8:3: workloads[5].namespace: required field is missing',
      'agent.yaml:9:37: workloads[6].ips[0]: IP address "10.64.2.6" is already used by workload data/pg',
    ])
  })

  it('a workload may not take the host endpoint\'s name', () => {
    assert.deepEqual(problems({ yaml: 'hostEndpoint: {namespace: hosts}\nworkloads:\n- {namespace: hosts, name: node-a, ips: [10.0.0.1]}\n' }), [
      "agent.yaml:3:28: workloads[0].name: workload hosts/node-a has the name of this host's own endpoint (hostEndpoint); rename one of them",
    ])
    // Without a host endpoint the name is free.
    assert.doesNotThrow(() => loadAgentConfig({ file: writeConfig('hostEndpoint: {enabled: false}\nworkloads:\n- {namespace: hosts, name: node-a, ips: [10.0.0.1]}\n'), env: {} }, host))
  })

  it('the store URL and the join token, never showing a secret', () => {
    const token = 'fnt_abc123.TOPSECRETvalue'
    const lines = problems({ yaml: `store: {url: "redis://agent:hunter2@redis.example:99999"}\njoin: {token: "${token}x!"}\n` })
    assert.deepEqual(lines, [
      'agent.yaml:1:14: store.url: invalid Redis URL "redis://agent:***@redis.example:99999": port 99999 of host redis.example is out of range 1-65535',
      'agent.yaml:2:15: join.token: invalid join token: a join token looks like fnt_<id>.<secret>; check that it was copied whole',
    ])
    assert.ok(!lines.join('\n').includes('hunter2') && !lines.join('\n').includes('TOPSECRET'))
    assert.deepEqual(problems({ yaml: 'join: {token: 12345678}\n' }), ['agent.yaml:1:15: join.token: must be a string, got a number'])
  })

  it('dataplane.procSysNet: misplaced, misspelt, relative or empty', () => {
    assert.deepEqual(problems({ yaml: 'procSysNet: /host/proc/sys/net\ndataplane:\n  procSysnet: /host/proc/sys/net\n  sysctlRoot: /host\n' }), [
      'agent.yaml:1:1: procSysNet: unknown field "procSysNet": "procSysNet" belongs under "dataplane"',
      'agent.yaml:3:3: dataplane.procSysnet: unknown field "procSysnet"; did you mean "procSysNet"?',
      'agent.yaml:4:3: dataplane.sysctlRoot: unknown field "sysctlRoot"',
    ])
    assert.deepEqual(problems({ yaml: 'dataplane: {procSysNet: host/proc/sys/net}\n' }), ['agent.yaml:1:25: dataplane.procSysNet: must be an absolute path (starting with "/"), got "host/proc/sys/net"'])
    assert.deepEqual(problems({ yaml: 'dataplane:\n  procSysNet: ""\n' }), ['agent.yaml:2:15: dataplane.procSysNet: must not be empty'])
    assert.deepEqual(problems({ yaml: 'dataplane: [/proc/sys/net]\n' }), ['agent.yaml:1:12: dataplane: must be an object, got a list'])
  })

  it('a token and a token file at once, wherever each is set', () => {
    const token = 'fnt_abc123.0123456789abcdefXYZ_-'
    assert.deepEqual(problems({ yaml: 'join:\n  tokenFile: /etc/flatnet/join-token\n', env: { FLATNET_JOIN_TOKEN: token } }), [
      'environment variable FLATNET_JOIN_TOKEN: join.token: join.token and join.tokenFile are both set (join.tokenFile by agent.yaml:2:14); set only one',
    ])
  })

  it('reconnect.maxMs below reconnect.minMs', () => {
    assert.deepEqual(problems({ yaml: 'reconnect:\n  minMs: 2000\n  maxMs: 1000\n' }), ['agent.yaml:3:10: reconnect.maxMs: must be at least reconnect.minMs (2000), got 1000'])
  })

  it('a runDir too long for the API socket that would follow it', () => {
    const runDir = `/run/${'r'.repeat(100)}`
    assert.deepEqual(problems({ yaml: `runDir: ${runDir}\n` }), [
      `agent.yaml:1:9: runDir: the API socket would be ${runDir}/agent.sock, but a unix socket path must be no more than 107 bytes, got 116: choose a shorter runDir or set api.socket`,
    ])
  })

  it('a host name that cannot name the node, when nodeName is left empty', () => {
    assert.deepEqual(problems({ hostname: 'web_1.example' }), [
      `default: nodeName: is empty, so the node would be named after the host name "web_1.example", which must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character: set nodeName (or FLATNET_NODE_NAME, --node-name)`,
    ])
  })

  it('not YAML, more than one document, not UTF-8, not an object, another format', () => {
    assert.deepEqual(problems({ yaml: 'wireguard:\n  mtu: [1400\n' }), ['agent.yaml:3:1: invalid YAML: Flow sequence in block collection must be sufficiently indented and end with a ]'])
    assert.deepEqual(problems({ yaml: 'cluster: a\n---\ncluster: b\n' }), ['agent.yaml:3:1: the agent configuration is one YAML document; this file holds more (remove the "---" separators)'])
    assert.deepEqual(problems({ yaml: new Uint8Array([0x63, 0x3a, 0x20, 0xff, 0x0a]) }), ['agent.yaml:1:4: file is not valid UTF-8 (byte 0xff at offset 3)'])
    assert.deepEqual(problems({ yaml: '- a\n- b\n' }), ['agent.yaml:1:1: must be an object, got a list'])
    assert.deepEqual(problems({ yaml: 'apiVersion: v1\nkind: KubeletConfiguration\n' }), [
      'agent.yaml:1:13: apiVersion: must be "flatnet.dev/v1alpha1" (or left out), got "v1"',
      'agent.yaml:2:7: kind: must be "AgentConfiguration" (or left out), got "KubeletConfiguration"',
    ])
  })

  it('every problem of a file is reported at once', () => {
    const lines = problems({ yaml: 'wireguard: {mtu: 1, listenPort: 0}\nlog: {level: loud}\nmesh: {listen: [x]}\n' })
    assert.equal(lines.length, 4)
  })
})

describe('agent configuration: bad input in the environment and the flags', () => {
  it('variables: not a number, not a boolean, empty where a value is needed, a bad item of a list', () => {
    const env = {
      FLATNET_WG_PORT: '51820x',
      FLATNET_WG_MTU: '',
      FLATNET_MESH_RELAY_SERVER: 'yes',
      FLATNET_CLUSTER: '',
      FLATNET_MESH_BOOTSTRAP: '/ip4/192.0.2.1/tcp/7946,/ip4/192.0.2.1/udp/7946',
      FLATNET_JOIN_TOKEN: 'not-a-token-secret',
      FLATNET_LOG_LEVEL: 'INFO',
    }
    const lines = problems({ env })
    assert.deepEqual(lines, [
      'environment variable FLATNET_CLUSTER: cluster: must not be empty',
      'environment variable FLATNET_JOIN_TOKEN: join.token: invalid join token: a join token looks like fnt_<id>.<secret>; check that it was copied whole',
      'environment variable FLATNET_WG_PORT: wireguard.listenPort: must be an integer, got "51820x"',
      'environment variable FLATNET_WG_MTU: wireguard.mtu: must be an integer, got ""',
      'environment variable FLATNET_MESH_BOOTSTRAP: mesh.bootstrap[1]: invalid multiaddr "/ip4/192.0.2.1/udp/7946": the mesh runs over TCP: the address must continue with /tcp/<port>',
      'environment variable FLATNET_MESH_RELAY_SERVER: mesh.relayServer: must be "true" or "false", got "yes"',
      'environment variable FLATNET_LOG_LEVEL: log.level: must be one of "fatal", "error", "warn", "info", "debug", "trace", "silent", got a string ("INFO")',
    ])
    assert.ok(!lines.join('\n').includes('not-a-token-secret'))
  })

  it('variables that are not flatnet settings are left alone', () => {
    assert.doesNotThrow(() => loadAgentConfig({ file: writeConfig(''), env: { FLATNET_DEBUG: '1', FLATNET_WG_TEST_REKEY_AFTER_MESSAGES: '200', PATH: '/bin' } }, host))
  })

  it('flags: unknown, a bad value, typed values of the wrong type, a single-valued flag given twice', () => {
    assert.deepEqual(problems({ flags: { wgPort: '0', wgMtu: true, meshRelayServer: 1, logLevel: ['info', 'debug'], config: '/etc/flatnet/agent.yaml', redis: 'http://r' } }), [
      'flag --wg-port: wireguard.listenPort: must be between 1 and 65535, got 0',
      'flag --wg-mtu: wireguard.mtu: must be an integer, got a boolean (true)',
      'flag --mesh-relay-server: mesh.relayServer: must be true or false, got a number (1)',
      'flag --log-level: log.level: was given more than once; it takes one value',
      'flag --config: is not an option of the agent',
      'flag --redis: store.url: invalid Redis URL "http://r": unsupported scheme "http://"; flatnet reads redis://, rediss://, unix://, redis+unix://, redis-sentinel://, redis-cluster://',
    ])
  })

  it('problems of the file, the environment and the flags are reported together, in that order', () => {
    assert.deepEqual(problems({ yaml: 'wireguard: {mtu: 1}\n', env: { FLATNET_WG_MTU: '2' }, flags: { wgMtu: 3 } }), [
      'agent.yaml:1:18: wireguard.mtu: must be between 576 and 65535, got 1',
      'environment variable FLATNET_WG_MTU: wireguard.mtu: must be between 576 and 65535, got 2',
      'flag --wg-mtu: wireguard.mtu: must be between 576 and 65535, got 3',
    ])
  })
})

let written = 0
function writeConfig(text: string): string {
  const file = join(dir, `ok-${++written}.yaml`)
  writeFileSync(file, text)
  return file
}
