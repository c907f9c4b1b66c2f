/**
 * Feeds the flow log from the kernel: `tcpdump -i nflog:<group> -w -` (Debian package
 * tcpdump) writes every record the table's `log group` rules emit as pcap to a pipe, which
 * PcapNflogParser takes apart.
 *
 * Why NFLOG and not the kernel log: `log` without a group goes through printk into the
 * kernel's ring buffer, shared with every other kernel message on the host (and copied into
 * the journal), and in a network namespace other than the initial one it is dropped unless
 * the host-wide sysctl net.netfilter.nf_log_all_netns is set. An NFLOG group belongs to the
 * network namespace of the table, costs next to nothing when nobody listens, and hands over
 * the packet itself, so nothing has to be parsed out of log text.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { inNetns, tail } from './command.js'
import { FlowLogReaderError } from './errors.js'
import type { FlowLog } from './flow-log.js'
import { PcapNflogParser } from './nflog-parse.js'

export interface FlowLogReaderOptions {
  /** The NFLOG group of the ruleset (`NftRuleset.logGroup`). */
  readonly group: number
  /** Read in this network namespace (the one holding the table). */
  readonly netns?: string | undefined
  readonly tcpdumpPath?: string | undefined
  /** How long tcpdump may take to bind the group. */
  readonly startTimeoutMs?: number | undefined
  /** How long tcpdump may take to exit after SIGTERM before it gets SIGKILL. */
  readonly stopTimeoutMs?: number | undefined
}

export const FLOW_LOG_READER_DEFAULTS = Object.freeze({ tcpdumpPath: 'tcpdump', startTimeoutMs: 5000, stopTimeoutMs: 2000 })

export interface FlowLogReader {
  /** Resolves once tcpdump listens on the group; rejects with FlowLogReaderError if it cannot. */
  start(): Promise<void>
  stop(): Promise<void>
  readonly running: boolean
  /** Why the reader stopped on its own (tcpdump exited, the stream was corrupt), if it did. */
  readonly failure: FlowLogReaderError | undefined
}

export function createFlowLogReader(flowLog: FlowLog, options: FlowLogReaderOptions): FlowLogReader {
  const tcpdump = options.tcpdumpPath ?? FLOW_LOG_READER_DEFAULTS.tcpdumpPath
  const startTimeoutMs = options.startTimeoutMs ?? FLOW_LOG_READER_DEFAULTS.startTimeoutMs
  const stopTimeoutMs = options.stopTimeoutMs ?? FLOW_LOG_READER_DEFAULTS.stopTimeoutMs
  if (!Number.isInteger(options.group) || options.group < 0 || options.group > 65535) throw new FlowLogReaderError(`NFLOG group must be 0..65535, got ${options.group}`)
  let child: (ChildProcess & { closed: Promise<void> }) | undefined
  let stopping = false
  let failure: FlowLogReaderError | undefined

  return {
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    get failure() {
      return failure
    },

    start() {
      if (child) return Promise.reject(new FlowLogReaderError('the flow log reader is already started'))
      stopping = false
      failure = undefined
      // -U: write each record as it arrives; -s 0: whole records (the rule's snaplen already keeps them small).
      const argv = inNetns(options.netns, [tcpdump, '-i', `nflog:${options.group}`, '-U', '-s', '0', '-w', '-'])
      const proc = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
      const closed = new Promise<void>((resolve) => proc.once('close', () => resolve()))
      child = Object.assign(proc, { closed })
      const parser = new PcapNflogParser()
      let stderr = ''
      proc.stdout.on('data', (chunk: Buffer) => {
        if (failure) return
        try {
          for (const record of parser.push(chunk)) flowLog.add(record)
        } catch (err) {
          failure = new FlowLogReaderError(`the NFLOG stream from tcpdump could not be read: ${(err as Error).message}`)
          if (proc.pid !== undefined && proc.exitCode === null) process.kill(proc.pid, 'SIGTERM')
        }
      })
      return new Promise<void>((resolve, reject) => {
        let settled = false
        const settle = (err?: FlowLogReaderError): void => {
          if (settled) return
          settled = true
          clearTimeout(timer)
          if (err) reject(err)
          else resolve()
        }
        const timer = setTimeout(() => {
          settle(new FlowLogReaderError(`tcpdump did not start listening on nflog:${options.group} within ${startTimeoutMs} ms: ${tail(stderr)}`))
          if (proc.pid !== undefined && proc.exitCode === null) process.kill(proc.pid, 'SIGKILL')
        }, startTimeoutMs)
        proc.stderr.on('data', (d: Buffer) => {
          stderr = (stderr + d.toString()).slice(-4096)
          if (/listening on nflog/.test(stderr)) settle()
        })
        proc.once('error', (e: NodeJS.ErrnoException) => {
          const why = e.code === 'ENOENT' ? `${argv[0]} is not installed (Debian package ${argv[0] === 'ip' ? 'iproute2' : 'tcpdump'})` : e.message
          failure = new FlowLogReaderError(`the flow log reader could not start: ${why}`)
          child = undefined
          settle(failure)
        })
        proc.once('close', (code, signal) => {
          if (!stopping && !failure) {
            failure = new FlowLogReaderError(`tcpdump on nflog:${options.group} exited (${signal ?? `status ${code}`}): ${tail(stderr)}`)
          }
          if (child === proc) child = undefined
          settle(failure ?? new FlowLogReaderError('tcpdump was stopped before it listened'))
        })
      })
    },

    async stop() {
      const proc = child
      if (!proc) return
      stopping = true
      if (proc.exitCode === null && proc.signalCode === null && proc.pid !== undefined) {
        process.kill(proc.pid, 'SIGTERM')
        const killer = setTimeout(() => {
          if (proc.pid !== undefined && proc.exitCode === null && proc.signalCode === null) process.kill(proc.pid, 'SIGKILL')
        }, stopTimeoutMs)
        await proc.closed
        clearTimeout(killer)
      }
      child = undefined
    },
  }
}
