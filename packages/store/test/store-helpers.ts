import { connectRedis, FlatnetStore, type StoreOptions, type WatchEvent, type StoreWatch } from '../src/index.js'

/** A store on a harness URL, with a short command timeout so failures show quickly. */
export function storeAt(url: string, options: StoreOptions = {}): FlatnetStore {
  return new FlatnetStore({ redis: connectRedis(url, { connectTimeoutMs: 2_000, commandTimeoutMs: 4_000 }), where: url }, { commandTimeoutMs: 4_000, ...options })
}

/** Records every event of a watch, with a way to wait for a condition on them (bounded). */
export class EventLog {
  readonly events: WatchEvent[] = []
  readonly onEvent = (e: WatchEvent): void => void this.events.push(e)

  /** Revisions of put/delete events, in order, one per change. */
  changeRevisions(): number[] {
    return this.events.filter((e) => e.type === 'put' || e.type === 'delete').map((e) => (e as { revision: number }).revision)
  }

  async until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
      await new Promise((r) => setTimeout(r, 20))
    }
  }
}

export async function untilRevision(watch: StoreWatch, revision: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (watch.revision < revision) {
    if (Date.now() > deadline) throw new Error(`watch stuck at revision ${watch.revision}, wanted ${revision}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
