/**
 * The node key: an Ed25519 key pair made once and kept in the state dir. Its public half is the
 * node's PeerId on the mesh and the key that signs the node record (docs/agent.md).
 *
 * The file holds the libp2p protobuf encoding of the private key, mode 0600, written to a
 * temporary file and renamed so a crash never leaves half a key.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { FlatnetError } from '@flatnet/core'
import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'

export const NODE_KEY_FILE = 'node.key'

/** The key file exists but is not an Ed25519 private key. */
export class NodeKeyInvalidError extends FlatnetError {
  readonly code = 'ERR_AGENT_NODE_KEY_INVALID'
}

export interface NodeKey {
  readonly privateKey: PrivateKey
  readonly peerId: string
  /** True when this call made the key. */
  readonly created: boolean
}

/** Loads `<stateDir>/node.key`, or makes and saves a new key when there is none. */
export async function loadOrCreateNodeKey(stateDir: string): Promise<NodeKey> {
  const file = join(stateDir, NODE_KEY_FILE)
  if (existsSync(file)) {
    let privateKey: PrivateKey
    try {
      privateKey = privateKeyFromProtobuf(readFileSync(file))
    } catch (err) {
      throw new NodeKeyInvalidError(`${file} is not a node key (${err instanceof Error ? err.message : String(err)}); move it away to make a new identity`)
    }
    if (privateKey.type !== 'Ed25519') throw new NodeKeyInvalidError(`${file} holds a ${privateKey.type} key; a node key is Ed25519`)
    return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), created: false }
  }
  const privateKey = await generateKeyPair('Ed25519')
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, privateKeyToProtobuf(privateKey), { mode: 0o600 })
  chmodSync(tmp, 0o600)
  renameSync(tmp, file)
  return { privateKey, peerId: peerIdFromPrivateKey(privateKey).toString(), created: true }
}
