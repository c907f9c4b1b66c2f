/**
 * Runs workload links and host forwarding with this process's own network namespace as the
 * host side, as the agent runs them (no `hostNetns`: the host settings are files under
 * `procSysNet`). workload-link.test.ts starts it in a test namespace through `ip netns exec`,
 * which also gives it a mount namespace of its own whose mounts do not reach the host's: the
 * bind mounts of /proc/sys/net it is asked for end with it.
 *
 * Input: one JSON argument (Request); output: one JSON line, an Outcome per operation.
 */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { connectRedis, FlatnetStore, Ipam } from '@flatnet/store'
import { HostForwarding } from '../src/dataplane/host-forwarding.js'
import { attachWorkload, checkWorkload, type WorkloadLinkOptions, type WorkloadLinkSpec } from '../src/dataplane/workload-link.js'
import { WorkloadManager, type AttachRequest } from '../src/workloads/workload-manager.js'

export interface Bind {
  /** An existing directory that /proc/sys/net is mounted on. */
  readonly at: string
  readonly readOnly: boolean
}

export type Operation =
  | { readonly op: 'attach' | 'check'; readonly spec: WorkloadLinkSpec; readonly options: WorkloadLinkOptions }
  /** `times` calls of HostForwarding.ensureFor at once, on one instance. */
  | { readonly op: 'forwarding'; readonly procSysNet: string; readonly addresses: readonly string[]; readonly times?: number }
  | { readonly op: 'read'; readonly path: string }
  /** WorkloadManager.attach, as the agent does it, against the store at `redisUrl` (a unix socket: reachable from any namespace). */
  | { readonly op: 'manager-attach'; readonly redisUrl: string; readonly ipamNode: string; readonly stateDir: string; readonly procSysNet: string; readonly request: AttachRequest }

export interface Request {
  readonly binds?: readonly Bind[]
  readonly ops: readonly Operation[]
}

export interface FailureInfo {
  readonly name: string
  readonly code: string | undefined
  readonly message: string
  readonly path: string | undefined
  readonly errno: string | undefined
}

export type Outcome = { readonly ok: true; readonly value: unknown; readonly logs?: readonly unknown[] } | { readonly ok: false; readonly error: FailureInfo; readonly logs?: readonly unknown[] }

function describe(err: unknown): FailureInfo {
  const e = err as Error & { code?: string; path?: string; errno?: string }
  return { name: e.constructor.name, code: e.code, message: e.message, path: e.path, errno: e.errno }
}

async function perform(op: Operation): Promise<Outcome> {
  switch (op.op) {
    case 'attach':
      return { ok: true, value: await attachWorkload(op.spec, op.options) }
    case 'check':
      return { ok: true, value: await checkWorkload(op.spec, op.options) }
    case 'read':
      return { ok: true, value: readFileSync(op.path, 'utf8').trim() }
    case 'manager-attach': {
      const logs: unknown[] = []
      const capture = (obj: object, msg: string): void => void logs.push({ ...obj, msg })
      const store = new FlatnetStore({ redis: connectRedis(op.redisUrl, { commandTimeoutMs: 5_000 }), where: op.redisUrl }, { cluster: 'default', commandTimeoutMs: 5_000 })
      try {
        const manager = new WorkloadManager({ store, ipam: new Ipam(store), ipamNode: op.ipamNode, nodeName: op.ipamNode, stateDir: op.stateDir, mtu: 1420, procSysNet: op.procSysNet, log: { info: capture, warn: capture } })
        // The manager's own failure is the outcome; its logs go with it either way.
        const value = await manager.attach(op.request).catch((err: unknown) => ({ failed: describe(err) }))
        return 'failed' in value ? { ok: false, error: value.failed, logs } : { ok: true, value, logs }
      } finally {
        await store.close()
      }
    }
    case 'forwarding': {
      const logs: unknown[] = []
      const forwarding = new HostForwarding({ procSysNet: op.procSysNet, log: { info: (obj, msg) => void logs.push({ ...obj, msg }) } })
      await Promise.all(Array.from({ length: op.times ?? 1 }, () => forwarding.ensureFor(op.addresses)))
      return { ok: true, value: null, logs }
    }
  }
}

const request = JSON.parse(process.argv[2] ?? '{}') as Request
for (const b of request.binds ?? []) {
  execFileSync('mount', ['--bind', '/proc/sys/net', b.at])
  if (b.readOnly) execFileSync('mount', ['-o', 'remount,bind,ro', b.at])
}
const outcomes: Outcome[] = []
for (const op of request.ops) {
  outcomes.push(
    await perform(op).catch((err: unknown): Outcome => ({ ok: false, error: describe(err) })),
  )
}
process.stdout.write(`${JSON.stringify(outcomes)}\n`)
