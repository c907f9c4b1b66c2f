/**
 * How CLI commands reach the store: `--redis URL` or FLATNET_REDIS_URL; without either, the
 * embedded redis-server in the state dir (started if nothing answers there, stopped again when
 * the command ends if this command started it).
 */
import { Option, type Command } from 'commander'
import type * as StoreModule from '@flatnet/store'
import type { FlatnetStore } from '@flatnet/store'

/** The store library, loaded only by commands that use it (it brings ioredis and libp2p keys). */
export type StoreLib = typeof StoreModule

export function loadStoreLib(): Promise<StoreLib> {
  return import('@flatnet/store')
}

export const CONNECTION_DEFAULTS = Object.freeze({
  stateDir: '/var/lib/flatnet',
  cluster: 'default',
  timeoutMs: 5_000,
})

export interface ConnectionOptions {
  readonly redis?: string | undefined
  readonly cluster: string
  readonly stateDir: string
  readonly timeout: string
}

/** Adds --redis, --cluster, --state-dir and --timeout to a command. */
export function withConnectionOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--redis <url>', 'Redis URL (redis://, rediss://, unix://, redis-sentinel://, redis-cluster://)').env('FLATNET_REDIS_URL'))
    .addOption(new Option('--cluster <name>', 'flatnet cluster name (key prefix in Redis)').env('FLATNET_CLUSTER').default(CONNECTION_DEFAULTS.cluster))
    .addOption(new Option('--state-dir <dir>', 'state directory of the embedded Redis').env('FLATNET_STATE_DIR').default(CONNECTION_DEFAULTS.stateDir))
    .addOption(new Option('--timeout <ms>', 'give up on Redis after this many milliseconds').default(String(CONNECTION_DEFAULTS.timeoutMs)))
}

export async function withStore<T>(opts: ConnectionOptions, fn: (store: FlatnetStore, lib: StoreLib) => Promise<T>): Promise<T> {
  const lib = await loadStoreLib()
  const { connectRedis, FlatnetStore, redactUrl, startEmbeddedRedis } = lib
  const timeoutMs = Number(opts.timeout)
  const embedded = opts.redis ? undefined : await startEmbeddedRedis({ stateDir: opts.stateDir })
  const url = opts.redis ?? (embedded as { url: string }).url
  const redis = connectRedis(url, { connectTimeoutMs: timeoutMs, commandTimeoutMs: timeoutMs })
  const store = new FlatnetStore({ redis, where: redactUrl(url) }, { cluster: opts.cluster, commandTimeoutMs: timeoutMs })
  try {
    return await fn(store, lib)
  } finally {
    await store.close()
    await embedded?.stop()
  }
}
