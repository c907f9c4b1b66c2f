/** `flatnet node ...`, `flatnet endpoint list`, `flatnet ipam ...`: the registry and addresses in the store. */
import { Command } from 'commander'
import { outputOption } from './cli-options.js'
import { InvalidArgumentError } from '@flatnet/core'
import type { StoredObject } from '@flatnet/store'
import { formatData, paint, table, type Out, type OutputFormat } from './output.js'
import { withConnectionOptions, withStore, type ConnectionOptions } from './store-connection.js'


/** `90s`, `30m`, `24h`, `7d`, or plain seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+)([smhd]?)$/.exec(text.trim())
  if (!m) throw new InvalidArgumentError(`"${text}" is not a duration; write e.g. 90s, 30m, 24h or 7d`)
  const unit = { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
  const seconds = Number(m[1]) * unit
  if (seconds < 1) throw new InvalidArgumentError('a duration must be at least 1 second')
  return seconds
}

function shortId(peerId: string): string {
  return peerId.length > 16 ? `${peerId.slice(0, 8)}…${peerId.slice(-6)}` : peerId
}

function labelText(labels: Readonly<Record<string, string>>): string {
  return Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(',') || '-'
}

type Conn = ConnectionOptions & { output: OutputFormat }

export function nodeCommand(out: Out): Command {
  const node = new Command('node').description('nodes of the flat network: list, approve, revoke, join tokens')

  withConnectionOptions(node.command('list').description('every registered node, admitted or pending').addOption(outputOption()).option('--wide', 'full PeerIds')).action(
    async (opts: Conn & { wide?: boolean }) => {
      await withStore(opts, async (store, { Ipam, NodeRegistry }) => {
        const registry = new NodeRegistry(store, new Ipam(store))
        const { nodes, invalid } = await registry.scan()
        const revoked = await registry.listRevoked()
        if (opts.output !== 'table') {
          out.write(formatData({ nodes, revoked, invalid: invalid.map((i) => ({ peerId: i.key, problem: i.error.message })) }, opts.output))
          return
        }
        const rows = nodes.map((n) => [
          opts.wide ? n.peerId : shortId(n.peerId),
          n.record.hostname ?? '-',
          n.admitted ? paint(out, 'green', n.admittedBy === 'approval' ? 'approved' : 'joined') : paint(out, 'yellow', 'pending'),
          n.record.endpoints.join(',') || '-',
          n.record.blocks.join(',') || '-',
          labelText(n.record.labels),
          String(n.revision),
        ])
        for (const i of invalid) rows.push([opts.wide ? i.key : shortId(i.key), '-', paint(out, 'red', 'invalid'), i.error.message, '', '', ''])
        if (rows.length === 0) out.error('no nodes registered')
        else out.write(table(rows, ['PEER', 'HOSTNAME', 'STATUS', 'ENDPOINTS', 'BLOCKS', 'LABELS', 'REVISION']))
        if (revoked.length > 0) out.write(paint(out, 'dim', `revoked: ${revoked.map((r) => (opts.wide ? r : shortId(r))).join(', ')}`))
      })
    },
  )

  withConnectionOptions(node.command('approve <peerId>').description('admit a pending node')).action(async (peerId: string, opts: ConnectionOptions) => {
    await withStore(opts, async (store, { Ipam, NodeRegistry }) => {
      const r = await new NodeRegistry(store, new Ipam(store)).approve(peerId)
      out.write(`node ${peerId} ${r.result === 'unchanged' ? 'was already admitted' : 'approved'} (revision ${r.revision})`)
    })
  })

  withConnectionOptions(node.command('revoke <peerId>').description('remove a node from every peer and release its address blocks')).action(async (peerId: string, opts: ConnectionOptions) => {
    await withStore(opts, async (store, { Ipam, NodeRegistry }) => {
      const r = await new NodeRegistry(store, new Ipam(store)).revoke(peerId)
      out.write(`node ${peerId} revoked${r.removed ? '' : ' (it had no record)'}; released ${r.releasedBlocks.length} block${r.releasedBlocks.length === 1 ? '' : 's'} and ${r.releasedAddresses} address${r.releasedAddresses === 1 ? '' : 'es'} (revision ${r.revision})`)
    })
  })

  const token = node.command('token').description('join tokens: a node that presents one is admitted at once')
  withConnectionOptions(
    token
      .command('create')
      .description('create a join token (printed once; only its hash is stored)')
      .option('--ttl <duration>', 'lifetime, e.g. 30m, 24h, 7d', '24h')
      .option('--description <text>', 'what the token is for'),
  ).action(async (opts: ConnectionOptions & { ttl: string; description?: string }) => {
    const ttlSeconds = parseDuration(opts.ttl)
    await withStore(opts, async (store, { Ipam, NodeRegistry }) => {
      const t = await new NodeRegistry(store, new Ipam(store)).createToken({ ttlSeconds, ...(opts.description ? { description: opts.description } : {}) })
      out.write(t.token)
      out.error(paint(out, 'dim', `token ${t.id} expires ${t.expiresAt}`))
    })
  })
  withConnectionOptions(token.command('list').description('join tokens (never their secrets)').addOption(outputOption())).action(async (opts: Conn) => {
    await withStore(opts, async (store, { Ipam, NodeRegistry }) => {
      const tokens = await new NodeRegistry(store, new Ipam(store)).listTokens()
      if (opts.output !== 'table') return void out.write(formatData(tokens, opts.output))
      if (tokens.length === 0) return void out.error('no join tokens')
      out.write(table(tokens.map((t) => [t.id, t.expired ? paint(out, 'red', `${t.expiresAt} (expired)`) : t.expiresAt, t.description ?? '-']), ['ID', 'EXPIRES', 'DESCRIPTION']))
    })
  })
  withConnectionOptions(token.command('delete <id>').description('delete a join token')).action(async (id: string, opts: ConnectionOptions) => {
    await withStore(opts, async (store, { Ipam, NodeRegistry }) => {
      const deleted = await new NodeRegistry(store, new Ipam(store)).deleteToken(id)
      out.write(deleted ? `token ${id} deleted` : `token ${id} did not exist`)
    })
  })
  return node
}

export function endpointCommand(out: Out): Command {
  const endpoint = new Command('endpoint').description('workload endpoints (pods and HostEndpoints) in the store')
  withConnectionOptions(
    endpoint
      .command('list')
      .description('endpoints of a namespace, or of all of them')
      .option('-n, --namespace <ns>', 'namespace', 'default')
      .option('-A, --all-namespaces', 'every namespace')
      .addOption(outputOption()),
  ).action(async (opts: Conn & { namespace: string; allNamespaces?: boolean }) => {
    await withStore(opts, async (store) => {
      const all = (await store.list('Endpoint')).filter((o) => opts.allNamespaces || o.key.startsWith(`${opts.namespace}/`))
      if (opts.output !== 'table') return void out.write(formatData({ apiVersion: 'v1', kind: 'List', items: all.map((o) => o.value) }, opts.output))
      if (all.length === 0) return void out.error(opts.allNamespaces ? 'no endpoints' : `no endpoints in namespace ${opts.namespace}`)
      out.write(table(all.map(endpointRow), ['NAMESPACE', 'NAME', 'KIND', 'IPS', 'NODE', 'LABELS', 'REVISION']))
    })
  })
  return endpoint
}

function endpointRow(o: StoredObject): string[] {
  const v = o.value as {
    kind: string
    metadata: { namespace: string; name: string; labels?: Record<string, string> }
    spec?: { ips?: string[]; node?: string; nodeName?: string }
    status?: { podIPs?: { ip: string }[] }
  }
  const ips = v.spec?.ips ?? v.status?.podIPs?.map((p) => p.ip) ?? []
  return [v.metadata.namespace, v.metadata.name, v.kind, ips.join(',') || '-', v.spec?.node ?? v.spec?.nodeName ?? '-', labelText(v.metadata.labels ?? {}), String(o.revision)]
}

export function ipamCommand(out: Out): Command {
  const ipam = new Command('ipam').description('address pools and per-node blocks')
  withConnectionOptions(ipam.command('show').description('pool and block usage').addOption(outputOption())).action(async (opts: Conn) => {
    await withStore(opts, async (store, { Ipam }) => {
      const usage = await new Ipam(store).usage()
      if (opts.output !== 'table') return void out.write(formatData(usage, opts.output))
      if (usage.pools.length === 0) return void out.error('no address pools; create one with `flatnet ipam pool set NAME --cidr CIDR`')
      out.write(
        table(
          usage.pools.map((p) => [p.name, p.cidr, `/${p.blockPrefix}`, `${p.blocks.claimed}/${p.blocks.total}`, `${p.addresses.allocated}/${p.addresses.capacity}`]),
          ['POOL', 'CIDR', 'BLOCK SIZE', 'BLOCKS USED', 'ADDRESSES USED'],
        ),
      )
      if (usage.blocks.length > 0) {
        out.write('')
        out.write(table(usage.blocks.map((b) => [b.cidr, shortId(b.node), `${b.allocated}/${b.capacity}`]), ['BLOCK', 'NODE', 'ADDRESSES USED']))
      }
    })
  })
  withConnectionOptions(
    ipam
      .command('pool')
      .command('set <name>')
      .description('create an address pool, or change one no block of which is claimed')
      .requiredOption('--cidr <cidr>', 'the pool, e.g. 10.64.0.0/16')
      .option('--block-prefix <n>', 'prefix length of per-node blocks', '26'),
  ).action(async (name: string, opts: ConnectionOptions & { cidr: string; blockPrefix: string }) => {
    await withStore(opts, async (store, { Ipam }) => {
      const r = await new Ipam(store).ensurePool({ name, cidr: opts.cidr, blockPrefix: Number(opts.blockPrefix) })
      out.write(`pool ${name} ${r.result}`)
    })
  })
  return ipam
}
