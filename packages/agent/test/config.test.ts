/**
 * The agent's configuration: defaults, the order of sources (defaults < file < environment <
 * flags), derived values, freezing, the shipped example, and that the docs list every field,
 * variable and flag. Bad input is covered in config-errors.test.ts.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseSource } from '@flatnet/policy'
import {
  AGENT_CONFIG_DEFAULTS,
  AGENT_CONFIG_FIELDS,
  AgentConfigReadError,
  DEFAULT_AGENT_CONFIG_FILE,
  loadAgentConfig,
  loadAgentConfigWithSource,
  redactAgentConfig,
  type AgentConfig,
} from '../src/index.js'

const repo = fileURLToPath(new URL('../../../../', import.meta.url))
const example = join(repo, 'examples', 'agent.yaml')
const dir = mkdtempSync(join(tmpdir(), 'fn-agent-config-'))
after(() => rmSync(dir, { recursive: true, force: true }))

let fileCount = 0
function configFile(text: string): string {
  const file = join(dir, `agent-${++fileCount}.yaml`)
  writeFileSync(file, text)
  return file
}

const host = { hostname: () => 'Node-A.Example.' }

/** The defaults with the derived values filled in as the loader does for host `node-a.example`. */
function resolvedDefaults(): AgentConfig {
  const d = structuredClone(AGENT_CONFIG_DEFAULTS) as { -readonly [K in keyof AgentConfig]: AgentConfig[K] }
  d.nodeName = 'node-a.example'
  d.hostEndpoint = { ...d.hostEndpoint, name: 'node-a.example' }
  d.api = { socket: '/run/flatnet/agent.sock' }
  return d
}

/** Every field path of the defaults: nested objects are walked, lists and (empty) maps are leaves. */
function leafPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Object.keys(value).length === 0) return [prefix]
  return Object.entries(value).flatMap(([k, v]) => leafPaths(v, prefix === '' ? k : `${prefix}.${k}`))
}

describe('agent configuration: defaults and sources', () => {
  it('without file, environment or flags every field has its default, and the node is named after the host', (t) => {
    if (existsSync(DEFAULT_AGENT_CONFIG_FILE)) return t.skip(`${DEFAULT_AGENT_CONFIG_FILE} exists on this machine, so the defaults cannot be observed alone`)
    const loaded = loadAgentConfigWithSource({ env: {} }, host)
    assert.equal(loaded.file, undefined, 'a missing default file is not an error, and nothing was read')
    assert.deepEqual(loaded.config, resolvedDefaults())
  })

  it('the defaults are the documented ones', () => {
    assert.equal(AGENT_CONFIG_DEFAULTS.stateDir, '/var/lib/flatnet')
    assert.equal(AGENT_CONFIG_DEFAULTS.runDir, '/run/flatnet')
    assert.deepEqual(AGENT_CONFIG_DEFAULTS.wireguard, { backend: 'auto', interfaceName: 'flatnet0', listenPort: 51820, mtu: 1420 })
    assert.deepEqual(AGENT_CONFIG_DEFAULTS.mesh.listen, ['/ip4/0.0.0.0/tcp/7946'])
    assert.equal(AGENT_CONFIG_DEFAULTS.metrics.listen, '127.0.0.1:9469')
    const ports = (list: AgentConfig['policy']['failsafe']['inbound']): string[] => list.map((p) => `${p.protocol}/${p.port}`)
    assert.deepEqual(ports(AGENT_CONFIG_DEFAULTS.policy.failsafe.inbound), ['TCP/22', 'UDP/68'])
    assert.deepEqual(ports(AGENT_CONFIG_DEFAULTS.policy.failsafe.outbound), ['UDP/53', 'TCP/53', 'UDP/67'])
    assert.equal(AGENT_CONFIG_DEFAULTS.policy.conntrackCut, true)
    assert.equal(AGENT_CONFIG_DEFAULTS.policy.keepRulesOnStop, true)
    assert.equal(AGENT_CONFIG_DEFAULTS.dataplane.procSysNet, '/proc/sys/net')
    assert.ok(Object.isFrozen(AGENT_CONFIG_DEFAULTS.policy.failsafe.inbound[0]), 'the defaults object is frozen all the way down')
  })

  it('an empty file, or sections left empty, keep every default', () => {
    const expected = resolvedDefaults()
    assert.deepEqual(loadAgentConfig({ file: configFile(''), env: {} }, host), expected)
    assert.deepEqual(loadAgentConfig({ file: configFile('# nothing set\n'), env: {} }, host), expected)
    assert.deepEqual(loadAgentConfig({ file: configFile('store:\nwireguard:\n  mtu:\nmetrics: {listen: null}\n'), env: {} }, host), expected)
  })

  it('the result is frozen all the way down', () => {
    const config = loadAgentConfig({ file: example, env: {} }, host)
    assert.ok(Object.isFrozen(config))
    assert.ok(Object.isFrozen(config.wireguard))
    assert.ok(Object.isFrozen(config.workloads[0]?.ips))
    assert.ok(Object.isFrozen(config.policy.failsafe.inbound[0]))
    assert.throws(() => {
      ;(config.wireguard as { mtu: number }).mtu = 9000
    }, TypeError)
  })

  it('flags win over the environment, which wins over the file, which wins over the defaults, field by field', () => {
    const file = configFile('wireguard: {listenPort: 1001, mtu: 1380}\nlog: {level: debug}\ncluster: from-file\n')
    const env = { FLATNET_WG_PORT: '2002', FLATNET_LOG_LEVEL: 'warn' }
    const flags = { wgPort: '3003' }
    const all = loadAgentConfig({ file, env, flags }, host)
    assert.equal(all.wireguard.listenPort, 3003, 'flag')
    assert.equal(all.log.level, 'warn', 'environment over file')
    assert.equal(all.wireguard.mtu, 1380, 'file over default')
    assert.equal(all.cluster, 'from-file')
    assert.equal(all.wireguard.interfaceName, 'flatnet0', 'default')
    assert.equal(loadAgentConfig({ file, env }, host).wireguard.listenPort, 2002)
    assert.equal(loadAgentConfig({ file, env: {} }, host).wireguard.listenPort, 1001)
  })

  it('dataplane.procSysNet is read from the file', () => {
    assert.equal(loadAgentConfig({ file: configFile('dataplane:\n  procSysNet: /host/proc/sys/net\n'), env: {} }, host).dataplane.procSysNet, '/host/proc/sys/net')
  })

  it('a list from a higher source replaces the list below it whole', () => {
    const file = configFile('mesh:\n  bootstrap: [/ip4/192.0.2.1/tcp/7946, /ip4/192.0.2.2/tcp/7946]\n')
    const fromEnv = loadAgentConfig({ file, env: { FLATNET_MESH_BOOTSTRAP: '/dns4/a.example/tcp/7946, /ip6/fd00::1/tcp/7946' } }, host)
    assert.deepEqual(fromEnv.mesh.bootstrap, ['/dns4/a.example/tcp/7946', '/ip6/fd00::1/tcp/7946'])
    const emptied = loadAgentConfig({ file, env: { FLATNET_MESH_BOOTSTRAP: '' } }, host)
    assert.deepEqual(emptied.mesh.bootstrap, [], 'an empty variable sets an empty list')
    const repeated = loadAgentConfig({ file, env: {}, flags: { meshBootstrap: ['/ip4/192.0.2.9/tcp/1', '/ip4/192.0.2.8/tcp/2,/ip4/192.0.2.7/tcp/3'] } }, host)
    assert.deepEqual(repeated.mesh.bootstrap, ['/ip4/192.0.2.9/tcp/1', '/ip4/192.0.2.8/tcp/2', '/ip4/192.0.2.7/tcp/3'])
  })

  it('every variable sets its field', () => {
    const env = {
      FLATNET_NODE_NAME: 'web-1',
      FLATNET_CLUSTER: 'prod',
      FLATNET_STATE_DIR: '/srv/flatnet',
      FLATNET_RUN_DIR: '/run/fn',
      FLATNET_REDIS_URL: 'redis-sentinel://s1:26379,s2:26379/main',
      FLATNET_STORE_TIMEOUT_MS: '2500',
      FLATNET_JOIN_TOKEN_FILE: '/etc/flatnet/join-token',
      FLATNET_WG_BACKEND: 'userspace',
      FLATNET_WG_INTERFACE: 'fn1',
      FLATNET_WG_PORT: '51821',
      FLATNET_WG_MTU: '1380',
      FLATNET_MESH_LISTEN: '/ip4/0.0.0.0/tcp/7000,/ip6/::/tcp/7000',
      FLATNET_MESH_ANNOUNCE: '/dns4/web-1.example/tcp/7000',
      FLATNET_MESH_BOOTSTRAP: '/ip4/192.0.2.1/tcp/7946',
      FLATNET_MESH_RELAY_SERVER: 'true',
      FLATNET_UNDERLAY_ADDRESSES: '192.0.2.10,[2001:db8::10]:51821',
      FLATNET_HOST_ENDPOINT: 'false',
      FLATNET_API_SOCKET: '/run/fn/api.sock',
      FLATNET_METRICS_LISTEN: '',
      FLATNET_LOG_LEVEL: 'trace',
    }
    const envFields = AGENT_CONFIG_FIELDS.filter((f) => f.env !== undefined && f.path !== 'join.token')
    assert.deepEqual(Object.keys(env).sort(), envFields.map((f) => f.env).sort(), 'the test covers every variable but the token (below)')
    const c = loadAgentConfig({ file: configFile(''), env }, host)
    assert.deepEqual(
      [c.nodeName, c.cluster, c.stateDir, c.runDir, c.store, c.join, c.wireguard],
      [
        'web-1',
        'prod',
        '/srv/flatnet',
        '/run/fn',
        { url: 'redis-sentinel://s1:26379,s2:26379/main', timeoutMs: 2500 },
        { token: '', tokenFile: '/etc/flatnet/join-token' },
        { backend: 'userspace', interfaceName: 'fn1', listenPort: 51821, mtu: 1380 },
      ],
    )
    assert.deepEqual(c.mesh, { listen: ['/ip4/0.0.0.0/tcp/7000', '/ip6/::/tcp/7000'], announce: ['/dns4/web-1.example/tcp/7000'], bootstrap: ['/ip4/192.0.2.1/tcp/7946'], relayServer: true })
    assert.deepEqual(c.underlay.addresses, ['192.0.2.10', '[2001:db8::10]:51821'])
    assert.equal(c.hostEndpoint.enabled, false)
    assert.equal(c.api.socket, '/run/fn/api.sock')
    assert.equal(c.metrics.listen, '', 'an empty FLATNET_METRICS_LISTEN disables metrics')
    assert.equal(c.log.level, 'trace')
    const token = 'fnt_abc123.0123456789abcdefXYZ_-'
    assert.equal(loadAgentConfig({ file: configFile(''), env: { FLATNET_JOIN_TOKEN: token } }, host).join.token, token)
  })

  it('flags take strings as commander gives them, or typed values', () => {
    const file = configFile('')
    const asText = loadAgentConfig({ file, env: {}, flags: { wgMtu: '1300', meshRelayServer: 'true', redis: 'unix:///run/redis.sock', logLevel: 'error' } }, host)
    const typed = loadAgentConfig({ file, env: {}, flags: { wgMtu: 1300, meshRelayServer: true, redis: 'unix:///run/redis.sock', logLevel: 'error', nodeName: undefined } }, host)
    assert.deepEqual(asText, typed)
    assert.equal(typed.wireguard.mtu, 1300)
    assert.equal(typed.mesh.relayServer, true)
    assert.equal(typed.store.url, 'unix:///run/redis.sock')
  })

  it('derived values follow what they derive from, unless set themselves', () => {
    const file = configFile('runDir: /run/flatnet-b\nnodeName: vm-b\n')
    const c = loadAgentConfig({ file, env: {} }, host)
    assert.equal(c.api.socket, '/run/flatnet-b/agent.sock')
    assert.equal(c.hostEndpoint.name, 'vm-b')
    const own = loadAgentConfig({ file: configFile('runDir: /run/flatnet-b\napi: {socket: /run/api.sock}\nhostEndpoint: {name: bastion}\n'), env: {} }, host)
    assert.equal(own.api.socket, '/run/api.sock')
    assert.equal(own.hostEndpoint.name, 'bastion')
    assert.equal(own.nodeName, 'node-a.example', 'the host name, lower case, without the trailing dot')
  })

  it('a file named by FLATNET_CONFIG is read, and --config (options.file) wins over it', () => {
    const a = configFile('cluster: from-env-file\n')
    const b = configFile('cluster: from-option\n')
    assert.equal(loadAgentConfig({ env: { FLATNET_CONFIG: a } }, host).cluster, 'from-env-file')
    const loaded = loadAgentConfigWithSource({ file: b, env: { FLATNET_CONFIG: a } }, host)
    assert.equal(loaded.config.cluster, 'from-option')
    assert.equal(loaded.file, b)
  })

  it('a file that was named must exist: ERR_AGENT_CONFIG_READ, exit status 78', () => {
    const missing = join(dir, 'no-such.yaml')
    for (const options of [{ file: missing, env: {} }, { env: { FLATNET_CONFIG: missing } }]) {
      assert.throws(
        () => loadAgentConfig(options, host),
        (err: unknown) => {
          assert.ok(err instanceof AgentConfigReadError)
          assert.equal(err.code, 'ERR_AGENT_CONFIG_READ')
          assert.equal(err.exitCode, 78)
          assert.equal(err.message, `cannot read the agent configuration ${missing}: no such file`)
          return true
        },
      )
    }
    assert.throws(() => loadAgentConfig({ file: dir, env: {} }, host), { message: `cannot read the agent configuration ${dir}: it is a directory, not a file` })
  })

  it('JSON is read too (it is YAML)', () => {
    const c = loadAgentConfig({ file: configFile('{"wireguard": {"listenPort": 4000}, "nodeLabels": {"zone": "a"}}'), env: {} }, host)
    assert.equal(c.wireguard.listenPort, 4000)
    assert.deepEqual(c.nodeLabels, { zone: 'a' })
  })

  it('redactAgentConfig hides the join token and the Redis password, and nothing else', () => {
    const c = loadAgentConfig({ file: configFile('store: {url: "redis://agent:s3cret@redis.example:6379/2"}\njoin: {token: fnt_abc123.0123456789abcdefXYZ_-}\n'), env: {} }, host)
    const shown = redactAgentConfig(c)
    assert.equal(shown.store.url, 'redis://agent:***@redis.example:6379/2')
    assert.equal(shown.join.token, '***')
    assert.ok(!JSON.stringify(shown).includes('s3cret') && !JSON.stringify(shown).includes('0123456789abcdef'))
    assert.deepEqual({ ...shown, store: c.store, join: c.join }, c)
    assert.equal(redactAgentConfig(resolvedDefaults()).join.token, '', 'no token stays no token')
  })
})

describe('examples/agent.yaml', () => {
  const text = readFileSync(example, 'utf8')

  it('loads without a problem and equals the defaults but for the fields whose comment says they differ', () => {
    const c = loadAgentConfig({ file: example, env: {} }, host)
    const differing = ['hostEndpoint.labels', 'hostEndpoint.ports', 'workloads']
    const expected = resolvedDefaults()
    const get = (o: unknown, path: string): unknown => path.split('.').reduce((v, k) => (v as Record<string, unknown>)[k], o)
    for (const path of leafPaths(expected)) {
      if (differing.includes(path)) assert.notDeepEqual(get(c, path), get(expected, path), `${path} is marked as differing`)
      else assert.deepEqual(get(c, path), get(expected, path), `${path} equals the default`)
    }
    // Each differing field says so right above it.
    const lines = text.split('\n')
    for (const field of ['labels:', 'ports:', 'workloads:']) {
      const at = lines.findIndex((l) => l.trim().startsWith(field) && !l.trim().startsWith('- '))
      const comment = lines.slice(Math.max(0, at - 3), at).join('\n')
      assert.match(comment, /Differs from the default/, `the comment above ${field} says it differs`)
    }
  })

  it('shows every field', () => {
    const doc = parseSource(example, text).documents[0]?.value as Record<string, unknown>
    for (const path of leafPaths(AGENT_CONFIG_DEFAULTS)) {
      const keys = path.split('.')
      let v: unknown = doc
      for (const k of keys) {
        assert.ok(v !== null && typeof v === 'object' && k in v, `examples/agent.yaml has ${path}`)
        v = (v as Record<string, unknown>)[k]
      }
    }
    const workload = (doc.workloads as Record<string, unknown>[])[0] as Record<string, unknown>
    assert.deepEqual(Object.keys(workload).sort(), ['ips', 'labels', 'name', 'namespace', 'ports'])
    assert.match(text, /cidr: 10\.0\.0\.0\/8/, 'the optional cidr of a failsafe entry is shown')
  })

  it('names the variable and flag of every field that has one', () => {
    for (const f of AGENT_CONFIG_FIELDS) {
      if (f.env) assert.ok(text.includes(f.env), `examples/agent.yaml mentions ${f.env}`)
      if (f.flag) assert.ok(text.includes(`--${f.flag}`), `examples/agent.yaml mentions --${f.flag}`)
    }
  })
})

describe('docs/agent.md', () => {
  const doc = readFileSync(join(repo, 'docs', 'agent.md'), 'utf8')
  const rows = doc.split('\n').filter((l) => l.startsWith('| `'))

  it('has a reference row for every field, with its variable, flag and default', () => {
    for (const path of leafPaths(AGENT_CONFIG_DEFAULTS)) {
      const row = rows.find((r) => r.startsWith(`| \`${path}\` |`))
      assert.ok(row, `docs/agent.md has a row for ${path}`)
      const f = AGENT_CONFIG_FIELDS.find((x) => x.path === path)
      if (f?.env) assert.ok(row.includes(`\`${f.env}\``), `the row of ${path} names ${f.env}`)
      if (f?.flag) assert.ok(row.includes(`\`--${f.flag}\``), `the row of ${path} names --${f.flag}`)
      const value = path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown>)[k], AGENT_CONFIG_DEFAULTS)
      if (typeof value === 'number' || (typeof value === 'string' && value !== '') || typeof value === 'boolean') {
        assert.ok(row.includes(`\`${String(value)}\``), `the row of ${path} shows the default ${String(value)}`)
      }
    }
  })
})
