/**
 * The lab's state file, `<stateDir>/lab.json`: every network namespace, link, process and file
 * the lab makes is recorded here BEFORE it is made, so `lab down` can remove all of it even
 * when `lab up` was killed half way. Each write replaces the file atomically (write a temporary
 * file, rename it over), so a crash never leaves half a file; the first write publishes the
 * file with link(2), which fails when a lab already lives in this directory.
 */
import { existsSync, linkSync, mkdirSync, readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { FlatnetError } from '@flatnet/core'
import type { HostKind, LabNamespace, LabPort } from './topology.js'

export const DEFAULT_LAB_STATE_DIR = '/var/lib/flatnet/lab'
export const LAB_STATE_FILE = 'lab.json'
export const LAB_STATE_VERSION = 1

/** A lab already lives in this state directory, or its namespaces exist. */
export class LabExistsError extends FlatnetError {
  readonly code = 'ERR_LAB_EXISTS'
}

/** No lab lives in this state directory (for probe, env). */
export class LabNotFoundError extends FlatnetError {
  readonly code = 'ERR_LAB_NOT_FOUND'
  constructor(readonly stateDir: string) {
    super(`no lab in ${stateDir}: run "flatnet lab up" first (or pass the --state-dir it used)`)
  }
}

/** The state file exists but cannot be read or is not a lab state file. */
export class LabStateError extends FlatnetError {
  readonly code = 'ERR_LAB_STATE'
}

export interface NetnsRecord {
  readonly name: string
  readonly role: 'underlay' | 'host' | 'workload'
}

export interface LinkRecord {
  /** Where the link was made; undefined: the namespace `lab up` ran in. */
  readonly netns: string | undefined
  readonly name: string
  readonly peerNetns?: string | undefined
  readonly peerName?: string | undefined
}

export interface ProcessRecord {
  /** Unique in the lab, e.g. `daemon x/a`, `agent vm`, `redis`. */
  readonly name: string
  readonly netns: string | undefined
  /** What /proc/PID/cmdline shows once the process runs: recorded before it starts. */
  readonly cmdline: readonly string[]
  readonly logFile: string
  /** Recorded right after the process started. */
  readonly pid?: number | undefined
  /** Its start time (field 22 of /proc/PID/stat), which tells it from a later process with the same PID. */
  readonly startTicks?: number | undefined
}

export interface HostRecord {
  readonly name: string
  readonly kind: HostKind
  readonly netns: string
  readonly underlayAddress: string
  /** The host's own endpoint, `namespace/name`. */
  readonly endpoint: string
  /** Prefixes this host routes for (set by routeHostsOverUnderlay or by the caller). */
  readonly prefixes: readonly string[]
}

export interface EndpointRecord {
  /** `namespace/name`. */
  readonly key: string
  /** A host's own endpoint, or a workload (its own namespace, attached to the host like a pod). */
  readonly role: 'host' | 'workload'
  /** The endpoint kind in policy terms: workloads on k8s-node hosts are Pods, all else HostEndpoints. */
  readonly kind: 'Pod' | 'HostEndpoint'
  readonly namespace: string
  readonly name: string
  readonly host: string
  readonly netns: string
  readonly labels: Readonly<Record<string, string>>
  readonly ports: readonly LabPort[]
  /** Plain addresses (no prefix length), once allocated. */
  readonly addresses: readonly string[]
  /** Workloads: the host-side veth. */
  readonly hostIfname?: string | undefined
  /** The endpoint daemon's probe socket. */
  readonly socket: string
}

export interface LabStateData {
  readonly version: number
  readonly id: string
  readonly stateDir: string
  readonly phase: 'building' | 'up'
  readonly createdAt: string
  readonly topologyFile: string
  readonly underlay: { readonly cidr: string; readonly mtu: number; readonly netns: string }
  readonly namespaces: readonly LabNamespace[]
  readonly hosts: readonly HostRecord[]
  readonly endpoints: readonly EndpointRecord[]
  readonly netns: readonly NetnsRecord[]
  readonly links: readonly LinkRecord[]
  readonly processes: readonly ProcessRecord[]
  /** Files and directories to remove on `lab down` (the state file itself is removed last). */
  readonly paths: readonly string[]
  /** Shell variables `flatnet lab env` prints, e.g. FLATNET_REDIS_URL. */
  readonly env: Readonly<Record<string, string>>
}

export function stateFilePath(stateDir: string): string {
  return join(stateDir, LAB_STATE_FILE)
}

/** The lab state in `stateDir`, or undefined when there is none. */
export function readLabState(stateDir: string): LabStateData | undefined {
  const file = stateFilePath(stateDir)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new LabStateError(`${file}: cannot read: ${(err as Error).message}`)
  }
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch (err) {
    throw new LabStateError(`${file}: not a lab state file: ${(err as Error).message}`)
  }
  const d = data as Partial<LabStateData> | null
  if (d === null || typeof d !== 'object' || d.version !== LAB_STATE_VERSION || typeof d.id !== 'string' || !Array.isArray(d.netns) || !Array.isArray(d.processes)) {
    throw new LabStateError(`${file}: not a lab state file of version ${LAB_STATE_VERSION}`)
  }
  return d as LabStateData
}

/** The state file of one lab, owned by the process building it. Writes are synchronous and atomic. */
export class LabState {
  #data: LabStateData
  readonly file: string

  private constructor(data: LabStateData) {
    this.#data = data
    this.file = stateFilePath(data.stateDir)
  }

  /** Claims `stateDir` for a new lab; LabExistsError when one lives there already. */
  static create(init: Omit<LabStateData, 'version' | 'phase' | 'createdAt' | 'hosts' | 'endpoints' | 'netns' | 'links' | 'processes' | 'paths' | 'env'>): LabState {
    mkdirSync(init.stateDir, { recursive: true, mode: 0o700 })
    const data: LabStateData = {
      version: LAB_STATE_VERSION,
      phase: 'building',
      createdAt: new Date().toISOString(),
      hosts: [],
      endpoints: [],
      netns: [],
      links: [],
      processes: [],
      paths: [],
      env: {},
      ...init,
    }
    const state = new LabState(data)
    const tmp = `${state.file}.${process.pid}.new`
    writeFileSync(tmp, JSON.stringify(data, null, 2), { mode: 0o600 })
    try {
      linkSync(tmp, state.file)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
        throw new LabExistsError(`a lab already lives in ${init.stateDir} (${state.file}); run "flatnet lab down" first, or use another --state-dir`)
      }
      throw err
    } finally {
      unlinkSync(tmp)
    }
    return state
  }

  /** Takes over an existing state file (to add to or take down a lab). */
  static open(stateDir: string): LabState {
    const data = readLabState(stateDir)
    if (!data) throw new LabNotFoundError(stateDir)
    return new LabState(data)
  }

  get data(): LabStateData {
    return this.#data
  }

  /** Applies `change` and writes the file before returning. */
  update(change: (d: LabStateData) => LabStateData): LabStateData {
    const next = change(this.#data)
    const tmp = `${this.file}.${process.pid}.tmp`
    writeFileSync(tmp, JSON.stringify(next, null, 2), { mode: 0o600 })
    renameSync(tmp, this.file)
    this.#data = next
    return next
  }

  recordNetns(record: NetnsRecord): void {
    this.update((d) => ({ ...d, netns: [...d.netns, record] }))
  }

  /** Forgets a namespace that turned out not to be ours (its creation failed: it existed). */
  forgetNetns(name: string): void {
    this.update((d) => ({ ...d, netns: d.netns.filter((n) => n.name !== name) }))
  }

  recordLink(record: LinkRecord): void {
    this.update((d) => ({ ...d, links: [...d.links, record] }))
  }

  recordPath(path: string): void {
    if (!this.#data.paths.includes(path)) this.update((d) => ({ ...d, paths: [...d.paths, path] }))
  }

  recordProcess(record: ProcessRecord): void {
    this.update((d) => ({ ...d, processes: [...d.processes.filter((p) => p.name !== record.name), record] }))
  }

  setHost(record: HostRecord): void {
    this.update((d) => ({ ...d, hosts: [...d.hosts.filter((h) => h.name !== record.name), record] }))
  }

  setEndpoint(record: EndpointRecord): void {
    this.update((d) => {
      const i = d.endpoints.findIndex((e) => e.key === record.key)
      const endpoints = i === -1 ? [...d.endpoints, record] : d.endpoints.map((e, j) => (j === i ? record : e))
      return { ...d, endpoints }
    })
  }

  setEnv(vars: Readonly<Record<string, string>>): void {
    this.update((d) => ({ ...d, env: { ...d.env, ...vars } }))
  }

  setPhase(phase: LabStateData['phase']): void {
    this.update((d) => ({ ...d, phase }))
  }
}

/** Removes the state file; the last step of `lab down`. */
export function removeStateFile(stateDir: string): void {
  const file = stateFilePath(stateDir)
  if (existsSync(file)) unlinkSync(file)
}
