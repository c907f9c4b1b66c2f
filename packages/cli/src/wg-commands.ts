/**
 * `flatnet wg up CONFIG` runs a standalone userspace WireGuard interface from a wg-quick style
 * file, in the foreground (this process is the data plane), until SIGINT or SIGTERM.
 * `flatnet wg show [INTERFACE]` prints any userspace interface's peers like `wg show`.
 */
import { readdirSync } from 'node:fs'
import { basename } from 'node:path'
import { Command } from 'commander'
import { InvalidArgumentError } from '@flatnet/core'
import type { Out } from './output.js'

/**
 * Test-only knobs, from the environment so that a config file stays a plain wg-quick file.
 * A short rekey timeout goes with a small message limit: handshakes are at least REKEY_TIMEOUT
 * apart (5 s), so without it a test transfer would see one rekey at most.
 */
function testTimerOptions(): { rekeyAfterMessages?: number; timers?: { rekeyTimeoutMs: number } } {
  const n = process.env.FLATNET_WG_TEST_REKEY_AFTER_MESSAGES
  const t = process.env.FLATNET_WG_TEST_REKEY_TIMEOUT_MS
  return { ...(n ? { rekeyAfterMessages: Number(n) } : {}), ...(t ? { timers: { rekeyTimeoutMs: Number(t) } } : {}) }
}

export function wgCommand(out: Out): Command {
  const wg = new Command('wg').description('a standalone userspace WireGuard interface (interoperable with any WireGuard peer)')

  wg.command('up <config>')
    .description('bring up an interface from a wg-quick style file and run it until interrupted')
    .option('--name <interface>', 'interface name (default: the file name without .conf)')
    .action(async (config: string, opts: { name?: string }) => {
      // Loaded here, not at start: other commands have no use for the data plane.
      const { readConfigFile, UserspaceBackend } = await import('@flatnet/wireguard')
      const conf = await readConfigFile(config)
      const name = opts.name ?? basename(config).replace(/\.conf$/, '')
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new InvalidArgumentError(`"${name}" is not a valid interface name (at most 15 letters, digits, _ . -); use --name`)
      const backend = new UserspaceBackend(testTimerOptions())
      await backend.up({
        interfaceName: name,
        privateKey: conf.interface.privateKey,
        listenPort: conf.interface.listenPort ?? 0,
        mtu: conf.interface.mtu ?? 1420,
        addresses: conf.interface.addresses,
      })
      for (const p of conf.peers) {
        await backend.setPeer({
          publicKey: p.publicKey,
          presharedKey: p.presharedKey,
          endpoint: p.endpoint,
          allowedIps: p.allowedIps,
          persistentKeepalive: p.persistentKeepalive,
        })
      }
      out.error(`interface ${name} up: public key ${backend.running?.publicKey}, listening on port ${backend.listenPort}, ${conf.peers.length} peer${conf.peers.length === 1 ? '' : 's'}`)
      await new Promise<void>((resolve) => {
        const stop = (): void => resolve()
        process.once('SIGINT', stop)
        process.once('SIGTERM', stop)
      })
      await backend.down()
      out.error(`interface ${name} down`)
    })

  wg.command('show [interface]')
    .description('peers, handshakes and transfer of userspace interfaces, like `wg show`')
    .action(async (name: string | undefined) => {
      const { formatShow, uapiGet, UAPI_SOCKET_DIR } = await import('@flatnet/wireguard')
      let names: string[]
      try {
        names = name ? [name] : readdirSync(UAPI_SOCKET_DIR).filter((f) => f.endsWith('.sock')).map((f) => f.slice(0, -5)).sort()
      } catch {
        names = []
      }
      if (names.length === 0) return void out.error('no userspace WireGuard interfaces are running')
      const parts: string[] = []
      for (const n of names) {
        const state = await uapiGet(n).catch((err: Error) => {
          throw new InvalidArgumentError(`cannot read interface ${n}: ${err.message}`)
        })
        parts.push(formatShow(n, state.publicKey, state.listenPort, state.peers).trimEnd())
      }
      out.write(parts.join('\n\n'))
    })
  return wg
}
