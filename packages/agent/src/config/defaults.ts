/**
 * Every default of the agent's configuration, in one place. examples/agent.yaml repeats these
 * values (a test checks that it does) and docs/agent.md lists them.
 */
import { DEFAULT_PROC_SYS_NET } from '../dataplane/proc-sys-net.js'
import type { AgentConfig, FailsafePort } from './types.js'

/** Read when no file is named; a missing file there simply means "all defaults". */
export const DEFAULT_AGENT_CONFIG_FILE = '/etc/flatnet/agent.yaml'

/** The `apiVersion` and `kind` a configuration file may declare (both optional). */
export const AGENT_CONFIG_API_VERSION = 'flatnet.dev/v1alpha1'
export const AGENT_CONFIG_KIND = 'AgentConfiguration'

/** The file name of the API socket in `runDir` when `api.socket` is left empty. */
export const API_SOCKET_NAME = 'agent.sock'

const port = (protocol: FailsafePort['protocol'], p: number): FailsafePort => Object.freeze({ protocol, port: p, cidr: '' })

/**
 * Like Calico's failsafe ports: inbound SSH and DHCP replies; outbound DNS and DHCP requests.
 * With stateful rules the answers to these come back in; the agent's own WireGuard and mesh
 * ports are failsafe too, always, whatever these lists say.
 */
export const DEFAULT_FAILSAFE_INBOUND: readonly FailsafePort[] = Object.freeze([port('TCP', 22), port('UDP', 68)])
export const DEFAULT_FAILSAFE_OUTBOUND: readonly FailsafePort[] = Object.freeze([port('UDP', 53), port('TCP', 53), port('UDP', 67)])

/**
 * The configuration with nothing configured. Empty strings here mean: `nodeName` the host
 * name, `hostEndpoint.name` the node name, `api.socket` `<runDir>/agent.sock`, `store.url` the
 * embedded Redis, `join.*` no token; `underlay.addresses` empty means detected.
 */
export const AGENT_CONFIG_DEFAULTS: AgentConfig = deepFreeze({
  nodeName: '',
  nodeLabels: {},
  cluster: 'default',
  stateDir: '/var/lib/flatnet',
  runDir: '/run/flatnet',
  store: { url: '', timeoutMs: 5_000 },
  join: { token: '', tokenFile: '' },
  wireguard: { backend: 'auto', interfaceName: 'flatnet0', listenPort: 51820, mtu: 1420 },
  mesh: { listen: ['/ip4/0.0.0.0/tcp/7946'], announce: [], bootstrap: [], relayServer: false },
  underlay: { addresses: [] },
  hostEndpoint: { enabled: true, namespace: 'hosts', name: '', labels: {}, ports: [] },
  workloads: [],
  policy: {
    failsafe: { inbound: DEFAULT_FAILSAFE_INBOUND, outbound: DEFAULT_FAILSAFE_OUTBOUND },
    conntrackCut: true,
    keepRulesOnStop: true,
  },
  dataplane: { procSysNet: DEFAULT_PROC_SYS_NET },
  api: { socket: '' },
  metrics: { listen: '127.0.0.1:9469' },
  log: { level: 'info' },
  reconnect: { minMs: 500, maxMs: 30_000 },
})

export function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object') {
    for (const v of Object.values(value)) deepFreeze(v)
    Object.freeze(value)
  }
  return value
}
