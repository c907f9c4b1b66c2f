/**
 * Small pieces of node state kept in the state dir next to the node key: the WireGuard private
 * key (made once, so peers keep knowing this node after a restart) and the sequence of the last
 * node record published (which must grow with every publish, even if the clock goes back).
 */
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'

export const WIREGUARD_KEY_FILE = 'wireguard.key'
export const RECORD_SEQUENCE_FILE = 'record.sequence'

function writeAtomic(file: string, text: string): void {
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, text, { mode: 0o600 })
  renameSync(tmp, file)
}

export function loadOrCreateWireguardKey(stateDir: string, generate: () => string): string {
  const file = join(stateDir, WIREGUARD_KEY_FILE)
  if (existsSync(file)) {
    const key = readFileSync(file, 'utf8').trim()
    if (/^[A-Za-z0-9+/]{43}=$/.test(key)) return key
  }
  const key = generate()
  writeAtomic(file, `${key}\n`)
  return key
}

/** A sequence above every one this node published before, and above the clock in ms. */
export function nextRecordSequence(stateDir: string, now: number = Date.now()): number {
  const file = join(stateDir, RECORD_SEQUENCE_FILE)
  const last = existsSync(file) ? Number(readFileSync(file, 'utf8').trim()) || 0 : 0
  const next = Math.max(last + 1, now)
  writeAtomic(file, `${next}\n`)
  return next
}
