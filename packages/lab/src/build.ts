/**
 * Builds a lab in network namespaces:
 *
 *   fn-lab-<id>-ul          the underlay: bridge br0, one port h<i> per host
 *   fn-lab-<id>-<host>      a host: ul0 on the underlay (192.168.77.<i+1>/24 by default), forwarding
 *                           on, the host endpoint's addresses on lo, its workloads' veths
 *   fn-lab-<id>-<ns>.<name> a workload: eth0 with its addresses, attached like a pod
 *                           (attachWorkload from the agent)
 *
 * and an endpoint daemon in every host and workload namespace (serving the declared ports,
 * answering probes). Each namespace, link, process and file is recorded in the state file
 * before it is made, so labDown() removes it all, also after a crash.
 *
 * The steps are public so that `lab up` can start its own processes (Redis, one agent per
 * host) after the hosts exist and before the endpoints get their addresses:
 *
 *   const b = await LabBuilder.create({ topology })
 *   await b.buildHosts()
 *   ...start Redis and agents with b.startProcess(...)...
 *   await b.addEndpoints(allocate)
 *   await b.startDaemons()
 *   const info = b.finish()
 *
 * buildLab() runs them all in one call.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { formatIp, InvalidArgumentError, parseCidr } from '@flatnet/core'
import { attachWorkload } from '@flatnet/agent/workload-link'
import type { Allocate } from './allocator.js'
import { LabCommandError, mapLimit, runCommand } from './command.js'
import { DaemonClient } from './daemon-client.js'
import type { DaemonConfig } from './daemon/protocol.js'
import { labDown } from './down.js'
import { labInfo, type LabInfo } from './info.js'
import { checkLabId, DEFAULT_LAB_ID, HOST_UNDERLAY_IF, hostNetns, labNetnsPrefix, underlayNetns, underlayPortName, UNDERLAY_BRIDGE, workloadHostIfname, workloadNetns } from './names.js'
import { LabProcessError, startLabProcess, type StartLabProcessOptions } from './processes.js'
import { DEFAULT_LAB_STATE_DIR, LabExistsError, LabState, type EndpointRecord, type ProcessRecord } from './state.js'
import type { LabHost, LabWorkload, Topology } from './topology.js'

export const DAEMON_SCRIPT = fileURLToPath(new URL('./daemon/endpoint-daemon.js', import.meta.url))

export const BUILD_DEFAULTS = Object.freeze({
  stateDir: DEFAULT_LAB_STATE_DIR,
  id: DEFAULT_LAB_ID,
  /** Namespaces and links made at once. */
  concurrency: 4,
  /** WireGuard adds 80 bytes (IPv6 outer header) to every packet it carries. */
  overlayOverhead: 80,
  daemonStartTimeoutMs: 20_000,
})

/** What the builder is doing, for progress output. */
export interface LabProgress {
  readonly step: 'underlay' | 'host' | 'route' | 'workload' | 'daemon' | 'process' | 'down'
  readonly message: string
  /** How many of this step are done, of `total`. */
  readonly done?: number
  readonly total?: number
}

export interface LabBuilderOptions {
  readonly topology: Topology
  /** Default /var/lib/flatnet/lab. */
  readonly stateDir?: string | undefined
  /** Lab id (1-8 lowercase letters or digits), part of every namespace name; default `1`. */
  readonly id?: string | undefined
  readonly onProgress?: ((p: LabProgress) => void) | undefined
  /** The node binary for the endpoint daemons; default this process's. */
  readonly nodePath?: string | undefined
  readonly concurrency?: number | undefined
}

export interface AttachWorkloadRequest {
  readonly host: LabHost
  readonly workload: LabWorkload
  /** `namespace/name`. */
  readonly key: string
  /** The workload's network namespace (made by the lab, empty but for lo). */
  readonly netns: string
  /** The host's network namespace. */
  readonly hostNetns: string
  readonly mtu: number
}

/** Attaches a workload's namespace to its host and says which addresses it got. */
export type AttachWorkloadVia = (request: AttachWorkloadRequest) => Promise<{ readonly addresses: readonly string[]; readonly hostIfname?: string | undefined }>

export interface AddEndpointsOptions {
  /** Both ends of every workload veth; default the underlay MTU minus WireGuard's 80 bytes. */
  readonly workloadMtu?: number | undefined
  /**
   * Attach workloads through this (e.g. a request to the host's agent) instead of the lab's own
   * attachWorkload with addresses from `allocate`.
   */
  readonly attach?: AttachWorkloadVia | undefined
}

/** The socket path must fit sockaddr_un (108 bytes with the terminating NUL). */
const MAX_SOCKET_PATH = 107

export class LabBuilder {
  readonly state: LabState
  readonly #topology: Topology
  readonly #progress: (p: LabProgress) => void
  readonly #nodePath: string
  readonly #concurrency: number

  private constructor(state: LabState, options: LabBuilderOptions) {
    this.state = state
    this.#topology = options.topology
    this.#progress = options.onProgress ?? (() => undefined)
    this.#nodePath = options.nodePath ?? process.execPath
    this.#concurrency = options.concurrency ?? BUILD_DEFAULTS.concurrency
  }

  /**
   * Claims the state directory for a new lab. LabExistsError when a lab lives there already or
   * namespaces of a lab with this id exist (from another state directory).
   */
  static async create(options: LabBuilderOptions): Promise<LabBuilder> {
    const id = checkLabId(options.id ?? BUILD_DEFAULTS.id)
    const stateDir = options.stateDir ?? BUILD_DEFAULTS.stateDir
    const longest = join(stateDir, 'run', `${options.topology.hosts.length + options.topology.workloads.length}.sock`)
    if (Buffer.byteLength(longest) > MAX_SOCKET_PATH) {
      throw new InvalidArgumentError(`state directory "${stateDir}" is too long for the daemons' unix sockets (${longest} is over ${MAX_SOCKET_PATH} bytes)`)
    }
    const existing = await listLabNetns(id)
    if (existing.length > 0) {
      throw new LabExistsError(`network namespaces of lab "${id}" exist already (${existing.slice(0, 3).join(', ')}${existing.length > 3 ? ', ...' : ''}); run "flatnet lab down" or pick another lab id`)
    }
    const { topology } = options
    const state = LabState.create({
      id,
      stateDir,
      topologyFile: topology.file,
      underlay: { cidr: topology.underlay.cidr, mtu: topology.underlay.mtu, netns: underlayNetns(id) },
      namespaces: topology.namespaces,
    })
    return new LabBuilder(state, options)
  }

  get id(): string {
    return this.state.data.id
  }

  get topology(): Topology {
    return this.#topology
  }

  /** Makes a namespace, recorded first; a namespace that exists already is not ours and is left alone. */
  async #addNetns(name: string, role: 'underlay' | 'host' | 'workload'): Promise<void> {
    this.state.recordNetns({ name, role })
    const r = await runCommand(['ip', 'netns', 'add', name], { allowFail: true })
    if (!r.ok) {
      this.state.forgetNetns(name)
      if (/File exists/.test(r.stderr)) throw new LabExistsError(`network namespace ${name} exists already: not made by this lab, left alone`)
      throw new LabCommandError(`ip netns add ${name}`, r.stderr, r.stderr.trim())
    }
    await runCommand(['ip', '-n', name, 'link', 'set', 'lo', 'up'])
  }

  /** The underlay and every host namespace on it, with forwarding on. */
  async buildHosts(): Promise<void> {
    const { id } = this.state.data
    const ul = underlayNetns(id)
    const { mtu } = this.#topology.underlay
    this.#progress({ step: 'underlay', message: `underlay ${ul} (${this.#topology.underlay.cidr})` })
    await this.#addNetns(ul, 'underlay')
    this.state.recordLink({ netns: ul, name: UNDERLAY_BRIDGE })
    await runCommand(['ip', '-n', ul, 'link', 'add', UNDERLAY_BRIDGE, 'mtu', String(mtu), 'type', 'bridge'])
    await runCommand(['ip', '-n', ul, 'link', 'set', UNDERLAY_BRIDGE, 'up'])
    const cidr = parseCidr(this.#topology.underlay.cidr)!
    const hosts = this.#topology.hosts
    let done = 0
    await mapLimit(hosts, this.#concurrency, async (host, i) => {
      const netns = hostNetns(id, host.name)
      const address = formatIp({ family: 4, words: [(cidr.network.words[0] + i + 1) >>> 0, 0, 0, 0] })
      this.state.setHost({ name: host.name, kind: host.kind, netns, underlayAddress: address, endpoint: `${host.namespace}/${host.name}`, prefixes: [] })
      await this.#addNetns(netns, 'host')
      await runCommand(['ip', 'netns', 'exec', netns, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1'])
      const port = underlayPortName(i)
      this.state.recordLink({ netns: ul, name: port, peerNetns: netns, peerName: HOST_UNDERLAY_IF })
      await runCommand(['ip', '-n', ul, 'link', 'add', port, 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', HOST_UNDERLAY_IF, 'mtu', String(mtu), 'netns', netns])
      await runCommand(['ip', '-n', ul, 'link', 'set', port, 'master', UNDERLAY_BRIDGE, 'up'])
      await runCommand(['ip', '-n', netns, 'addr', 'add', `${address}/${cidr.prefix}`, 'dev', HOST_UNDERLAY_IF])
      await runCommand(['ip', '-n', netns, 'link', 'set', HOST_UNDERLAY_IF, 'up'])
      this.#progress({ step: 'host', message: `host ${host.name} (${host.kind}) ${netns}, underlay ${address}`, done: ++done, total: hosts.length })
    })
  }

  /**
   * Plain routes between hosts over the underlay, without encryption: every host routes each
   * other host's prefixes via that host's underlay address. For tests and labs without agents;
   * with agents the overlay routes instead.
   */
  async routeHostsOverUnderlay(prefixesOf: (host: string) => readonly string[]): Promise<void> {
    const hosts = this.state.data.hosts
    for (const h of hosts) this.state.setHost({ ...h, prefixes: [...prefixesOf(h.name)] })
    await mapLimit(hosts, this.#concurrency, async (h) => {
      for (const other of hosts) {
        if (other.name === h.name) continue
        for (const prefix of prefixesOf(other.name)) {
          await runCommand(['ip', '-n', h.netns, 'route', 'replace', prefix, 'via', other.underlayAddress, 'dev', HOST_UNDERLAY_IF])
        }
      }
    })
    this.#progress({ step: 'route', message: `plain routes between ${hosts.length} hosts over the underlay` })
  }

  /**
   * Gives every endpoint its addresses: a host's own endpoint gets them from `allocate` on lo
   * of the host namespace (none when allocate returns none); a workload gets its own namespace,
   * attached to its host by the lab with addresses from `allocate` (attachWorkload), or by
   * `opts.attach` (e.g. the host's agent, which allocates from its own block).
   */
  async addEndpoints(allocate: Allocate, opts: AddEndpointsOptions = {}): Promise<void> {
    const { id, stateDir } = this.state.data
    const mtu = opts.workloadMtu ?? this.#topology.underlay.mtu - BUILD_DEFAULTS.overlayOverhead
    const hostByName = new Map(this.#topology.hosts.map((h) => [h.name, h]))
    const socketOf = (i: number): string => join(stateDir, 'run', `${i}.sock`)
    const runDir = join(stateDir, 'run')
    this.state.recordPath(runDir)
    mkdirSync(runDir, { recursive: true, mode: 0o700 })

    // Addresses are asked for in topology order, one at a time, so an allocator may hand them out in sequence.
    const hosts = this.#topology.hosts
    for (const [i, host] of hosts.entries()) {
      const key = `${host.namespace}/${host.name}`
      const netns = hostNetns(id, host.name)
      const addresses = plainAddresses(await allocate({ host, endpoint: { role: 'host', namespace: host.namespace, name: host.name, key } }), key, { allowNone: true })
      this.state.setEndpoint({ key, role: 'host', kind: 'HostEndpoint', namespace: host.namespace, name: host.name, host: host.name, netns, labels: host.labels, ports: host.ports, addresses, socket: socketOf(i) })
      for (const a of addresses) await runCommand(['ip', '-n', netns, 'addr', 'add', `${a}/${a.includes(':') ? 128 : 32}`, 'dev', 'lo'])
    }
    const workloads = this.#topology.workloads
    const planned: { record: EndpointRecord; host: LabHost; workload: LabWorkload }[] = []
    for (const [j, w] of workloads.entries()) {
      const host = hostByName.get(w.host)!
      const key = `${w.namespace}/${w.name}`
      const addresses = opts.attach ? [] : plainAddresses(await allocate({ host, endpoint: { role: 'workload', namespace: w.namespace, name: w.name, key } }), key)
      const record: EndpointRecord = {
        key,
        role: 'workload',
        kind: host.kind === 'k8s-node' ? 'Pod' : 'HostEndpoint',
        namespace: w.namespace,
        name: w.name,
        host: w.host,
        netns: workloadNetns(id, w.namespace, w.name),
        labels: w.labels,
        ports: w.ports,
        addresses,
        hostIfname: opts.attach ? undefined : workloadHostIfname(w.namespace, w.name),
        socket: socketOf(hosts.length + j),
      }
      this.state.setEndpoint(record)
      planned.push({ record, host, workload: w })
    }
    let done = 0
    await mapLimit(planned, this.#concurrency, async ({ record, host, workload }) => {
      const hostNs = hostNetns(id, host.name)
      await this.#addNetns(record.netns, 'workload')
      let attached = record
      if (opts.attach) {
        // Whoever attaches records the link itself; it dies with the namespaces either way.
        const result = await opts.attach({ host, workload, key: record.key, netns: record.netns, hostNetns: hostNs, mtu })
        attached = { ...record, addresses: plainAddresses(result.addresses, record.key), hostIfname: result.hostIfname }
        this.state.setEndpoint(attached)
      } else {
        this.state.recordLink({ netns: hostNs, name: record.hostIfname!, peerNetns: record.netns, peerName: 'eth0' })
        await attachWorkload({
          netns: record.netns,
          hostNetns: hostNs,
          hostIfname: record.hostIfname!,
          addresses: record.addresses.map((a) => `${a}/${a.includes(':') ? 128 : 32}`),
          mtu,
        })
      }
      this.#progress({ step: 'workload', message: `workload ${attached.key} on ${host.name}: ${attached.addresses.join(', ')}`, done: ++done, total: planned.length })
    })
  }

  /** Starts the endpoint daemons (hosts and workloads) and waits until each answers. */
  async startDaemons(timeoutMs = BUILD_DEFAULTS.daemonStartTimeoutMs): Promise<void> {
    const { stateDir } = this.state.data
    const configDir = join(stateDir, 'endpoints')
    this.state.recordPath(configDir)
    mkdirSync(configDir, { recursive: true, mode: 0o700 })
    const endpoints = this.state.data.endpoints
    const deadline = Date.now() + timeoutMs
    let done = 0
    await mapLimit(endpoints, this.#concurrency, async (ep, i) => {
      const configFile = join(configDir, `${i}.json`)
      const config: DaemonConfig = { key: ep.key, addresses: ep.addresses, ports: ep.ports.map((p) => ({ port: p.port, protocol: p.protocol })), socket: ep.socket }
      writeFileSync(configFile, JSON.stringify(config), { mode: 0o600 })
      const record = await this.startProcess({ name: `daemon ${ep.key}`, netns: ep.netns, argv: [this.#nodePath, DAEMON_SCRIPT, configFile] })
      await waitForDaemon(ep.key, ep.socket, record, deadline)
      this.#progress({ step: 'daemon', message: `daemon ${ep.key} serving ${ep.ports.map((p) => `${p.port}/${p.protocol}`).join(' ') || 'no ports'}`, done: ++done, total: endpoints.length })
    })
  }

  /** Starts a long-running process of the lab (recorded; stopped by labDown). */
  async startProcess(opts: StartLabProcessOptions): Promise<ProcessRecord> {
    const record = await startLabProcess(this.state, opts)
    if (!opts.name.startsWith('daemon ')) this.#progress({ step: 'process', message: `${opts.name} started (pid ${record.pid})` })
    return record
  }

  /** Adds shell variables for `flatnet lab env`, e.g. FLATNET_REDIS_URL. */
  setEnv(vars: Readonly<Record<string, string>>): void {
    this.state.setEnv(vars)
  }

  /** Marks the lab as up and describes it. */
  finish(): LabInfo {
    this.state.setPhase('up')
    return labInfo(this.state.data)
  }
}

function plainAddresses(list: readonly string[], key: string, opts: { allowNone?: boolean } = {}): string[] {
  if (list.length === 0 && !opts.allowNone) throw new InvalidArgumentError(`allocate gave ${key} no address`)
  return list.map((text) => {
    const slash = text.indexOf('/')
    const plain = slash === -1 ? text : text.slice(0, slash)
    const cidr = parseCidr(`${plain}/${plain.includes(':') ? 128 : 32}`)
    if (!cidr || (slash !== -1 && text.slice(slash + 1) !== String(cidr.prefix))) {
      throw new InvalidArgumentError(`allocate gave ${key} "${text}": expected an address, optionally with a host mask (/32, /128)`)
    }
    return formatIp(cidr.network)
  })
}

async function waitForDaemon(key: string, socket: string, record: ProcessRecord, deadline: number): Promise<void> {
  let lastError = ''
  while (Date.now() < deadline) {
    try {
      const client = await DaemonClient.connect(key, socket, 1000)
      try {
        await client.ping()
        return
      } finally {
        client.close()
      }
    } catch (err) {
      lastError = (err as Error).message
    }
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new LabProcessError(`daemon of ${key} (pid ${record.pid}) did not answer on ${socket}: ${lastError}; see ${record.logFile}`)
}

/** Network namespaces whose names start with this lab's prefix. */
export async function listLabNetns(id: string): Promise<string[]> {
  const prefix = labNetnsPrefix(id)
  const r = await runCommand(['ip', 'netns', 'list'])
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(prefix))
}

export interface BuildLabOptions extends LabBuilderOptions {
  readonly allocate: Allocate
  /** Attaches workloads instead of the lab (see AddEndpointsOptions.attach). */
  readonly attach?: AttachWorkloadVia | undefined
  /** When given, hosts route each other's prefixes over the plain underlay (no agents, no encryption). */
  readonly hostPrefixes?: ((host: string) => readonly string[]) | undefined
  readonly workloadMtu?: number | undefined
  /** Runs after the hosts exist and before endpoints get addresses (start Redis and agents here). */
  readonly beforeEndpoints?: ((builder: LabBuilder) => Promise<void>) | undefined
  /** On failure, leave what was built (for debugging) instead of taking it down. */
  readonly keepOnFailure?: boolean | undefined
}

/** Builds the whole lab; on failure takes down what it made (unless keepOnFailure) and rethrows. */
export async function buildLab(options: BuildLabOptions): Promise<LabInfo> {
  const builder = await LabBuilder.create(options)
  try {
    await builder.buildHosts()
    if (options.hostPrefixes) await builder.routeHostsOverUnderlay(options.hostPrefixes)
    await options.beforeEndpoints?.(builder)
    await builder.addEndpoints(options.allocate, { workloadMtu: options.workloadMtu, attach: options.attach })
    await builder.startDaemons()
    return builder.finish()
  } catch (err) {
    if (!options.keepOnFailure) await labDown({ stateDir: builder.state.data.stateDir, onProgress: options.onProgress }).catch(() => undefined)
    throw err
  }
}
