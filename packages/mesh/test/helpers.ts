import { randomBytes } from 'node:crypto'
import { signNodeRecord } from '@flatnet/store'
import type { SignedNodeRecord } from '@flatnet/store'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { createMeshNode } from '../src/index.js'
import type { MeshNode, MeshOptions } from '../src/index.js'

export interface Identity {
  readonly privateKey: PrivateKey
  readonly peerId: string
  readonly wireguardPublicKey: string
  signed: SignedNodeRecord
}

export async function identity(sequence = 1): Promise<Identity> {
  const privateKey = await generateKeyPair('Ed25519')
  const wireguardPublicKey = randomBytes(32).toString('base64')
  const signed = await signNodeRecord(privateKey, { wireguardPublicKey, endpoints: ['127.0.0.1:51820'], blocks: [], labels: { role: 'test' }, sequence })
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), wireguardPublicKey, signed }
}

export interface TestNode {
  readonly id: Identity
  readonly mesh: MeshNode
  /** PeerIds this node admits; tests change it to revoke. */
  readonly admits: Set<string>
}

/** Every node a test file started, so its after hook can stop them all. */
export const started: MeshNode[] = []

export async function node(id: Identity, admits: Iterable<string>, options: MeshOptions = {}, localRecord?: () => SignedNodeRecord): Promise<TestNode> {
  const set = new Set(admits)
  const mesh = await createMeshNode(
    {
      privateKey: id.privateKey,
      listen: ['/ip4/127.0.0.1/tcp/0'],
      isAdmitted: (peer) => set.has(peer),
      localRecord: localRecord ?? (() => id.signed),
    },
    { pingIntervalMs: 0, exchangeTimeoutMs: 3_000, dialTimeoutMs: 3_000, pingTimeoutMs: 1_000, inboundConnectionsPerSecond: 1_000, ...options },
  )
  started.push(mesh)
  await mesh.start()
  return { id, mesh, admits: set }
}

export async function stopAll(): Promise<void> {
  await Promise.allSettled(started.splice(0).map((m) => m.stop()))
}

/** Polls `cond` until it holds; fails after `ms` with `what` in the message. */
export async function waitFor(cond: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 15))
  }
}

/** Resolves with the first value `subscribe` reports that satisfies `match`; fails after `ms`. */
export function nextEvent<T>(subscribe: (cb: (v: T) => void) => () => void, match: (v: T) => boolean, ms: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off()
      reject(new Error(`timed out after ${ms} ms waiting for ${what}`))
    }, ms)
    const off = subscribe((v) => {
      if (!match(v)) return
      clearTimeout(timer)
      off()
      resolve(v)
    })
  })
}

export function tcpAddr(mesh: MeshNode): string {
  const a = mesh.multiaddrs.find((m) => m.includes('/tcp/') && !m.includes('p2p-circuit'))
  if (a === undefined) throw new Error(`${mesh.peerId} has no TCP address`)
  return a
}
