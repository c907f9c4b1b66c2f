/**
 * The agent: the composition root that turns the store's state into an enforced, encrypted
 * flat network on this host.
 *
 *   start ─> node key ─> local snapshot? ─> enforce it at once (fail-static after a restart)
 *         ─> local API, health/metrics
 *         ─> (background, retried with backoff until it works)
 *            store ─> IPAM block + host address ─> WireGuard up ─> signed node record
 *            ─> admitted? ─> mesh ─> own endpoints published ─> watch
 *
 *   watch events ─> StoreMirror (cheap) ─┐
 *                                         └─ in-sync ─> schedule ─> apply() (coalesced, one at a time)
 *   apply(): node records verified ─> PolicySnapshot (incremental) ─> this node's endpoints
 *            ─> nftables (one transaction) + conntrack cut ─> WireGuard peers (diff)
 *            ─> mesh contacts and relay links ─> local snapshot saved ─> status reported
 *
 * Redis going away changes nothing that is enforced: the watch retries by itself, the apply
 * pass only runs on new state, and the tunnels and rules stay as they are.
 */
import { mkdirSync, readFileSync } from 'node:fs'
import type { Logger } from 'pino'
import { formatIp } from '@flatnet/core'
import type { PolicySnapshot, EndpointRecord } from '@flatnet/policy'
import {
  connectRedis,
  FlatnetStore,
  Ipam,
  NodeRegistry,
  redactUrl,
  signNodeRecord,
  startEmbeddedRedis,
  type EmbeddedRedis,
  type StoreWatch,
  type WatchEvent,
} from '@flatnet/store'
import { createMeshNode, type MeshNode } from '@flatnet/mesh'
import { generatePrivateKeyBase64, publicKeyFromPrivateKey, UserspaceBackend, type PeerStatus } from '@flatnet/wireguard'
import type { AgentConfig } from './config/types.js'
import { loadOrCreateNodeKey, type NodeKey } from './node-key.js'
import { StoreMirror } from './sync/store-mirror.js'
import { loadLocalSnapshot, saveLocalSnapshot } from './sync/local-snapshot.js'
import { PolicyCalculation, localEndpoints } from './calc/policy-calc.js'
import { NodeDirectory } from './calc/node-directory.js'
import { calculatePeers } from './calc/peers.js'
import { chooseWireguardBackend, type ChosenBackend } from './overlay/backend-choice.js'
import { WireguardPlane } from './overlay/wireguard-plane.js'
import { createRelayBinding, type RelayBinding } from './overlay/relay-binding.js'
import { WorkloadManager } from './workloads/workload-manager.js'
import { ApplyScheduler } from './apply-scheduler.js'
import { loadOrCreateWireguardKey, nextRecordSequence } from './node-state.js'
import { detectUnderlayAddress } from './underlay.js'
import { hostEndpointManifest, configWorkloadManifest } from './own-endpoints.js'
import { nodePolicyStatusRecord } from './api/policy-status.js'
import type { Enforcer, LocalEndpoint } from './enforcer.js'
import { RevisionWaiters } from './revision-waiters.js'

export interface AgentComponents {
  readonly config: AgentConfig
  readonly log: Logger
  /** Enforcement of the compiled policy on this host (nftables in production). */
  readonly enforcer: Enforcer
  /**
   * Default true. False makes a control-plane-only agent: no WireGuard interface, routes, relay
   * binding, mesh or workload attachment; it still joins the store (IPAM block, signed node
   * record, join token), watches, calculates and enforces through `enforcer`, and reports its
   * applied revision. For scale tests of the control plane on one machine (bench/propagation).
   */
  readonly dataPlane?: boolean | undefined
}

export interface AppliedState {
  readonly revision: number
  readonly at: string
  readonly durationMs: number
  readonly localEndpoints: number
  readonly rules: number
  readonly peers: number
}

export interface AgentStatus {
  readonly node: {
    readonly name: string
    readonly peerId: string
    readonly blocks: readonly string[]
    readonly hostAddress: string | undefined
    readonly wireguardPublicKey: string
    readonly backend: string | undefined
    readonly admitted: boolean
  }
  readonly store: { readonly connected: boolean; readonly revision: number; readonly where: string | undefined; readonly lastError: string | undefined }
  readonly applied: AppliedState | undefined
  readonly lastApplyError: string | undefined
  readonly peers: readonly (PeerStatus & { readonly peerId: string | undefined; readonly node: string | undefined; readonly mesh: string | undefined })[]
  readonly endpoints: readonly { readonly key: string; readonly ips: readonly string[]; readonly kind: string }[]
  readonly invalidObjects: number
  readonly refusedNodes: readonly { peerId: string; reason: string }[]
}

/**
 * Every peer gets a persistent keepalive. Besides keeping NAT and firewall state, it makes a
 * node that (re)starts send a handshake to each peer at once: without it, a peer still holding a
 * session with the node's previous run would send into the void until its own timers gave up.
 */
export const PEER_KEEPALIVE_SECONDS = 25

/**
 * The local snapshot is written at most this long after an apply, once for however many applies
 * came meanwhile (and at stop): writing the whole store to disk after every apply was most of an
 * agent's CPU under frequent changes. A crash loses at most this much; the store fills it in.
 */
export const LOCAL_SNAPSHOT_SAVE_DELAY_MS = 1_000

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

export class Agent {
  config: AgentConfig
  private readonly log: Logger
  private readonly enforcer: Enforcer
  private readonly dataPlane: boolean
  private key: NodeKey | undefined
  private wireguardPrivateKey = ''
  private store: FlatnetStore | undefined
  private storeWhere: string | undefined
  private embedded: EmbeddedRedis | undefined
  private ipam: Ipam | undefined
  private registry: NodeRegistry | undefined
  private watch: StoreWatch | undefined
  private mesh: MeshNode | undefined
  private relayBinding: RelayBinding | undefined
  private chosen: ChosenBackend | undefined
  private plane: WireguardPlane | undefined
  workloads: WorkloadManager | undefined
  private readonly mirror = new StoreMirror()
  private readonly policy = new PolicyCalculation()
  private readonly directory = new NodeDirectory()
  private readonly scheduler: ApplyScheduler
  private blocks: string[] = []
  private pools: string[] = []
  private hostAddress: string | undefined
  private admitted = false
  private connected = false
  private storeError: string | undefined
  private applied: AppliedState | undefined
  private lastApplyError: string | undefined
  private observed: { revision: number; at: string } | undefined
  private stopped = false
  private background: Promise<void> | undefined
  /** Revisions applied (whole passes), and revisions whose rules are in the kernel (ahead while a pass finishes). */
  private readonly appliedWaiters = new RevisionWaiters()
  private readonly enforcedWaiters = new RevisionWaiters()

  constructor(components: AgentComponents) {
    this.config = components.config
    this.log = components.log
    this.enforcer = components.enforcer
    this.dataPlane = components.dataPlane ?? true
    this.scheduler = new ApplyScheduler(() => this.apply(), (err) => this.applyFailed(err))
  }

  private child(component: string): Logger {
    return this.log.child({ component })
  }

  get peerId(): string | undefined {
    return this.key?.peerId
  }

  /** True while the watch follows the store (false while it runs on what it last applied). */
  get storeConnected(): boolean {
    return this.connected
  }

  get appliedState(): AppliedState | undefined {
    return this.applied
  }

  /** The userspace device's drop counters by reason (empty with the kernel backend). */
  dataPlaneDrops(): Record<string, number> {
    const b = this.plane?.backend
    return b instanceof UserspaceBackend ? (b.running?.drops.snapshot() ?? {}) : {}
  }

  /**
   * Takes a re-read configuration (SIGHUP): host endpoint, declared workloads and node labels are
   * published again; anything else needs a restart, and the answer says which fields.
   */
  async reload(next: AgentConfig): Promise<{ applied: string[]; needRestart: string[] }> {
    const live: (keyof AgentConfig)[] = ['hostEndpoint', 'workloads', 'nodeLabels', 'log']
    const needRestart = (Object.keys(next) as (keyof AgentConfig)[]).filter((k) => !live.includes(k) && JSON.stringify(next[k]) !== JSON.stringify(this.config[k]))
    const applied = live.filter((k) => JSON.stringify(next[k]) !== JSON.stringify(this.config[k]))
    this.config = { ...this.config, hostEndpoint: next.hostEndpoint, workloads: next.workloads, nodeLabels: next.nodeLabels, log: next.log }
    this.log.level = next.log.level
    if (this.store && applied.length > 0) {
      await this.publishOwnEndpoints()
      if (applied.includes('nodeLabels')) await this.publishRecord()
    }
    return { applied, needRestart }
  }

  get snapshot(): PolicySnapshot {
    return this.policy.snapshot
  }

  /** Resolves once state at `revision` or later is applied (for tests and `lab up`). */
  async waitApplied(revision: number, timeoutMs: number): Promise<AppliedState> {
    await this.appliedWaiters.wait(revision, timeoutMs, () => new Error(`revision ${revision} not applied within ${timeoutMs} ms (applied: ${this.applied?.revision ?? 'none'}, last error: ${this.lastApplyError ?? 'none'})`))
    return this.applied as AppliedState
  }

  /**
   * Resolves once the rules for `revision` or later are in the kernel: new flows meet them.
   * Earlier than `waitApplied` by what the pass does after loading rules (cutting connections
   * the rules no longer allow, WireGuard peers, reports), none of which concerns an endpoint
   * that has just been attached (a CNI ADD waits on this).
   */
  waitEnforced(revision: number, timeoutMs: number): Promise<void> {
    const enforced = (): string => (this.enforcedWaiters.revision < 0 ? 'none' : String(this.enforcedWaiters.revision))
    return this.enforcedWaiters.wait(revision, timeoutMs, () => new Error(`the rules of revision ${revision} were not in the kernel within ${timeoutMs} ms (enforced: ${enforced()}, last error: ${this.lastApplyError ?? 'none'})`))
  }

  /** Ready: enforcing state from the store (or, without it, a local snapshot) and the overlay is up. */
  readiness(): { ready: boolean; reasons: string[] } {
    const reasons: string[] = []
    if (!this.applied) reasons.push('no policy state applied yet')
    if (this.dataPlane && !this.plane?.isUp) reasons.push('the WireGuard interface is not up yet')
    if (!this.admitted) reasons.push('this node is not admitted yet (join token or `flatnet node approve`)')
    return { ready: reasons.length === 0, reasons }
  }

  async start(): Promise<void> {
    const c = this.config
    mkdirSync(c.stateDir, { recursive: true, mode: 0o700 })
    this.key = await loadOrCreateNodeKey(c.stateDir)
    this.wireguardPrivateKey = loadOrCreateWireguardKey(c.stateDir, generatePrivateKeyBase64)
    this.log.info({ peerId: this.key.peerId, created: this.key.created, node: c.nodeName }, 'node key loaded')
    await this.enforcer.start()
    const local = this.safeLoadSnapshot()
    if (local) {
      // Fail-static after a restart: enforce what was last applied before anything else. Rules
      // still in the kernel (the agent stopped or crashed, the host did not reboot) are at least
      // as new as the snapshot, which is saved after them: they stay until the store answers.
      this.keepKernelRules = await this.enforcer.holdsRules()
      this.mirror.load(local.revision, local.objects)
      this.blocks = [...local.node.blocks]
      this.pools = [...local.node.pools]
      this.hostAddress = local.node.hostAddress
      this.scheduler.schedule()
      await this.scheduler.idle()
      this.log.info({ revision: local.revision }, 'local snapshot enforced before reaching the store')
      if (this.hostAddress && this.dataPlane) await this.bringUpOverlay().catch((err: unknown) => this.log.warn({ err: String(err) }, 'overlay from the local snapshot failed; retrying with the store'))
    }
    this.background = this.joinLoop()
  }

  private safeLoadSnapshot(): ReturnType<typeof loadLocalSnapshot> {
    try {
      return loadLocalSnapshot(this.config.stateDir)
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, 'local snapshot ignored')
      return undefined
    }
  }

  /** Everything that needs the store, retried with capped backoff until it is done or the agent stops. */
  private async joinLoop(): Promise<void> {
    let attempt = 0
    while (!this.stopped) {
      try {
        await this.join()
        return
      } catch (err) {
        attempt++
        this.storeError = err instanceof Error ? err.message : String(err)
        const wait = Math.min(this.config.reconnect.maxMs, this.config.reconnect.minMs * 2 ** Math.min(attempt - 1, 16))
        this.log.warn({ err: this.storeError, retryInMs: wait, attempt }, 'joining the cluster failed; retrying')
        await delay(wait)
      }
    }
  }

  private async connectStore(): Promise<FlatnetStore> {
    if (this.store) return this.store
    const c = this.config
    let url = c.store.url
    if (url === '') {
      this.embedded ??= await startEmbeddedRedis({ stateDir: c.stateDir })
      url = this.embedded.url
    }
    const redis = connectRedis(url, { connectTimeoutMs: c.store.timeoutMs, commandTimeoutMs: c.store.timeoutMs })
    this.storeWhere = redactUrl(url)
    const store = new FlatnetStore({ redis, where: this.storeWhere }, { cluster: c.cluster, commandTimeoutMs: c.store.timeoutMs })
    try {
      await store.revision()
    } catch (err) {
      await store.close()
      throw err
    }
    this.store = store
    this.ipam = new Ipam(store)
    this.registry = new NodeRegistry(store, this.ipam)
    return store
  }

  private async join(): Promise<void> {
    const c = this.config
    const key = this.key as NodeKey
    const store = await this.connectStore()
    const ipam = this.ipam as Ipam
    this.connected = true
    this.storeError = undefined
    // The first block (claimed on first start) and the host address; both the same on every restart.
    await ipam.claimBlock(key.peerId)
    this.hostAddress = (await ipam.allocate({ node: key.peerId, handle: 'host' })).ip
    this.blocks = await ipam.blocksOf(key.peerId)
    this.pools = (await ipam.pools()).map((p) => p.cidr)
    if (this.dataPlane) {
      this.workloads ??= new WorkloadManager({ store, ipam, ipamNode: key.peerId, nodeName: c.nodeName, stateDir: c.stateDir, mtu: c.wireguard.mtu, procSysNet: c.dataplane.procSysNet, log: this.child('workloads') })
      if (!this.plane?.isUp) await this.bringUpOverlay()
      else await this.plane.routePools(this.pools)
    }
    const result = await this.publishRecord()
    this.admitted = result.admitted
    this.log.info({ admitted: result.admitted, by: result.admittedBy, blocks: this.blocks, hostAddress: this.hostAddress }, 'node record published')
    this.watch ??= store.watch({ onEvent: (e) => this.onWatchEvent(e), retryMinMs: c.reconnect.minMs, retryMaxMs: c.reconnect.maxMs })
    if (this.dataPlane) await this.startMesh()
    await this.publishOwnEndpoints()
  }

  private async bringUpOverlay(): Promise<void> {
    const c = this.config
    if (this.plane?.isUp) return
    this.chosen ??= await chooseWireguardBackend(c.wireguard.backend)
    this.log.info({ backend: this.chosen.kind, reason: this.chosen.reason }, 'WireGuard backend chosen')
    this.plane = new WireguardPlane(this.chosen.backend)
    await this.plane.up({
      interfaceName: c.wireguard.interfaceName,
      privateKey: this.wireguardPrivateKey,
      listenPort: c.wireguard.listenPort,
      mtu: c.wireguard.mtu,
      hostAddress: this.hostAddress as string,
      pools: this.pools,
    })
    this.log.info({ interface: c.wireguard.interfaceName, address: this.hostAddress, pools: this.pools }, 'WireGuard interface up')
    this.scheduler.schedule()
  }

  private underlayEndpoints(): string[] {
    const c = this.config
    const addrs = c.underlay.addresses.length > 0 ? c.underlay.addresses : [detectUnderlayAddress({ exclude: [c.wireguard.interfaceName] })]
    return addrs.map((a) => (/^\[|^[\d.]+:\d+$/.test(a) ? a : a.includes(':') ? `[${a}]:${c.wireguard.listenPort}` : `${a}:${c.wireguard.listenPort}`))
  }

  private meshAddrs(): string[] {
    const c = this.config
    const underlayHost = this.underlayEndpoints()[0]?.replace(/:\d+$/, '').replace(/^\[|\]$/g, '')
    const source = c.mesh.announce.length > 0 ? c.mesh.announce : c.mesh.listen
    return source.map((a) => a.replace(/\/p2p\/.*$/, '').replace(/^\/ip4\/0\.0\.0\.0\//, `/ip4/${underlayHost}/`))
  }

  private async publishRecord(): Promise<{ admitted: boolean; admittedBy: string | null }> {
    const c = this.config
    const key = this.key as NodeKey
    const signed = await signNodeRecord(key.privateKey, {
      wireguardPublicKey: publicKeyFromPrivateKey(this.wireguardPrivateKey),
      endpoints: this.underlayEndpoints(),
      blocks: this.blocks,
      meshAddrs: this.meshAddrs(),
      labels: { ...c.nodeLabels },
      hostname: c.nodeName,
      sequence: nextRecordSequence(c.stateDir),
    })
    this.localRecord = signed
    const token = c.join.token !== '' ? c.join.token : c.join.tokenFile !== '' ? readFileSync(c.join.tokenFile, 'utf8').trim() : ''
    return (this.registry as NodeRegistry).register(signed, token ? { joinToken: token } : {})
  }

  private localRecord: Awaited<ReturnType<typeof signNodeRecord>> | undefined

  private async startMesh(): Promise<void> {
    const c = this.config
    if (this.mesh) return
    const mesh = await createMeshNode(
      {
        privateKey: (this.key as NodeKey).privateKey,
        listen: [...c.mesh.listen],
        ...(c.mesh.announce.length > 0 ? { announce: [...c.mesh.announce] } : {}),
        isAdmitted: (peer) => this.directory.isAdmitted(peer),
        localRecord: () => this.localRecord!,
        log: this.child('mesh'),
      },
      { relayServer: c.mesh.relayServer },
    )
    await mesh.start()
    this.mesh = mesh
    if (this.plane?.backend instanceof UserspaceBackend) {
      const backend = this.plane.backend
      this.relayBinding = createRelayBinding({ mesh, device: backend, log: this.child('relay') })
    }
    for (const addr of c.mesh.bootstrap) mesh.dial(addr).catch((err: unknown) => this.log.warn({ addr, err: String(err) }, 'bootstrap dial failed'))
    this.log.info({ peerId: mesh.peerId, addrs: mesh.multiaddrs }, 'mesh started')
  }

  private async publishOwnEndpoints(): Promise<void> {
    const c = this.config
    const store = this.store as FlatnetStore
    const ops = []
    if (c.hostEndpoint.enabled && this.hostAddress) {
      ops.push({ op: 'put' as const, kind: 'Endpoint' as const, key: `${c.hostEndpoint.namespace}/${c.hostEndpoint.name}`, value: hostEndpointManifest(c, this.hostAddress) })
    }
    for (const w of c.workloads) ops.push({ op: 'put' as const, kind: 'Endpoint' as const, key: `${w.namespace}/${w.name}`, value: configWorkloadManifest(w, c.nodeName) })
    if (ops.length > 0) await store.write(ops)
  }

  private onWatchEvent(e: WatchEvent): void {
    if (e.type === 'error') {
      this.connected = false
      this.storeError = e.error.message
      return
    }
    this.connected = true
    this.storeError = undefined
    if (this.mirror.onEvent(e)) {
      if (!this.observed || this.observed.revision !== e.revision) this.observed = { revision: e.revision, at: new Date().toISOString() }
      this.scheduler.schedule()
    }
  }

  /** The apply pass: calculation, then every kernel change, then reports. One at a time (the scheduler). */
  private async apply(): Promise<void> {
    const started = performance.now()
    const revision = this.mirror.revision
    const changes = this.mirror.takeChanges()
    await this.directory.update(changes)
    this.policy.update(changes)
    const snapshot = this.policy.commit()
    const own = localEndpoints(snapshot, this.config.nodeName)
    // Until the store has been read, rules left by the previous run win over the local snapshot.
    const keep = this.keepKernelRules && !this.connected
    const enforced = keep ? { rules: 0 } : await this.enforcer.apply(snapshot, this.describeLocal(own), { onRulesLoaded: () => this.enforcedWaiters.reach(revision) })
    if (!keep) this.keepKernelRules = false
    let peerCount = 0
    if (this.plane?.isUp && this.key) {
      const desired = calculatePeers(this.directory.admitted(), this.key.peerId, { persistentKeepalive: PEER_KEEPALIVE_SECONDS })
      const changed = await this.plane.setPeers(desired)
      peerCount = desired.length
      if (changed.set + changed.removed > 0) this.log.info({ set: changed.set, removed: changed.removed, peers: desired.length }, 'WireGuard peers updated')
      this.relayBinding?.refresh()
      this.contactPeers()
    }
    if (this.mesh) void this.mesh.refreshAdmission().catch(() => undefined)
    this.admitted = this.key ? this.directory.isAdmitted(this.key.peerId) || (this.admitted && !this.connected) : false
    const applied: AppliedState = {
      revision,
      at: new Date().toISOString(),
      durationMs: Math.round((performance.now() - started) * 10) / 10,
      localEndpoints: own.length,
      rules: enforced.rules,
      peers: peerCount,
    }
    this.applied = applied
    this.enforcedWaiters.reach(revision)
    this.lastApplyError = undefined
    this.appliedWaiters.reach(revision)
    this.afterApply()
  }

  /** Workloads this agent attached are enforced on their veths (anti-spoofing included). */
  private describeLocal(own: readonly EndpointRecord[]): LocalEndpoint[] {
    return own.map((record) => ({ record, hostInterface: this.workloads?.get(record.key)?.hostIfname }))
  }

  /** Reporting and persisting are best effort: neither may hold back enforcement. */
  private afterApply(): void {
    this.reportStatus(undefined)
    this.snapshotSaver ??= setTimeout(() => {
      this.snapshotSaver = undefined
      this.saveSnapshot()
    }, LOCAL_SNAPSHOT_SAVE_DELAY_MS)
  }

  /** What this node enforces, into the store's status hash; with `error` when the last apply failed. */
  private reportStatus(error: string | undefined): void {
    if (!this.store || !this.connected || !this.applied) return
    const status = nodePolicyStatusRecord({
      revision: this.applied.revision,
      appliedAt: this.applied.at,
      ...(this.observed ? { observedRevision: this.observed.revision, observedAt: this.observed.at } : {}),
      reportedAt: new Date().toISOString(),
      error,
      hostname: this.config.nodeName,
      ...(this.key ? { peerId: this.key.peerId } : {}),
    })
    this.store.setStatus(this.config.nodeName, status).catch((err: unknown) => this.log.debug({ err: String(err) }, 'status report failed'))
  }

  private snapshotSaver: NodeJS.Timeout | undefined
  private keepKernelRules = false

  private saveSnapshot(): void {
    if (!this.applied) return
    try {
      saveLocalSnapshot(this.config.stateDir, {
        revision: this.applied.revision,
        node: { blocks: this.blocks, hostAddress: this.hostAddress, pools: this.pools },
        objects: this.mirror.list(),
      })
    } catch (err) {
      this.log.warn({ err: String(err) }, 'local snapshot not saved')
    }
  }

  private applyFailed(err: unknown): void {
    this.lastApplyError = err instanceof Error ? err.message : String(err)
    this.log.error({ err: this.lastApplyError }, 'apply failed; the previous state stays enforced and the next change retries')
    this.reportStatus(this.lastApplyError)
  }


  /** Dials admitted nodes the mesh is not connected to, at the addresses their records give. */
  private contactPeers(): void {
    const mesh = this.mesh
    if (!mesh || !this.key) return
    const connected = new Set(mesh.connectedPeers())
    for (const r of this.directory.admitted()) {
      if (r.peerId === this.key.peerId || connected.has(r.peerId)) continue
      const addr = r.meshAddrs?.[0]
      if (addr === undefined) continue
      mesh.dial(`${addr}/p2p/${r.peerId}`).catch((err: unknown) => this.log.debug({ peer: r.peerId, err: String(err) }, 'mesh dial failed'))
    }
  }

  async status(): Promise<AgentStatus> {
    const c = this.config
    const peers = (await this.plane?.peers().catch(() => [] as PeerStatus[])) ?? []
    const byKey = new Map(this.directory.admitted().map((r) => [r.wireguardPublicKey, r]))
    const own = localEndpoints(this.policy.snapshot, c.nodeName)
    return {
      node: {
        name: c.nodeName,
        peerId: this.key?.peerId ?? '',
        blocks: this.blocks,
        hostAddress: this.hostAddress,
        wireguardPublicKey: this.wireguardPrivateKey ? publicKeyFromPrivateKey(this.wireguardPrivateKey) : '',
        backend: this.chosen ? `${this.chosen.kind} (${this.chosen.reason})` : undefined,
        admitted: this.admitted,
      },
      store: { connected: this.connected, revision: this.mirror.revision, where: this.storeWhere, lastError: this.storeError },
      applied: this.applied,
      lastApplyError: this.lastApplyError,
      peers: peers.map((p) => {
        const r = byKey.get(p.publicKey)
        return { ...p, peerId: r?.peerId, node: r?.hostname, mesh: r ? this.mesh?.peerState(r.peerId)?.status : undefined }
      }),
      endpoints: own.map((r) => ({ key: r.key, ips: r.endpoint.ips.map((ip) => formatIp(ip)), kind: r.endpoint.kind })),
      invalidObjects: this.policy.invalidObjects().length,
      refusedNodes: this.directory.refusedNodes(),
    }
  }

  get localEndpointRecords(): EndpointRecord[] {
    return localEndpoints(this.policy.snapshot, this.config.nodeName)
  }

  /**
   * Stops the agent. The nftables rules stay (fail-static) unless `policy.keepRulesOnStop` is
   * false; a userspace WireGuard interface ends with the process.
   */
  async stop(): Promise<void> {
    this.stopped = true
    await this.background?.catch(() => undefined)
    await this.watch?.stop().catch(() => undefined)
    await this.scheduler.idle()
    if (this.snapshotSaver) {
      clearTimeout(this.snapshotSaver)
      this.snapshotSaver = undefined
      this.saveSnapshot()
    }
    this.relayBinding?.stop()
    await this.mesh?.stop().catch(() => undefined)
    await this.plane?.down().catch(() => undefined)
    await this.enforcer.stop({ removeRules: !this.config.policy.keepRulesOnStop })
    await this.store?.close().catch(() => undefined)
    await this.embedded?.stop().catch(() => undefined)
  }
}

