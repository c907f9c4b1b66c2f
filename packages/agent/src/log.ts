/**
 * The agent's logger: pino JSON lines on stderr, one child per component (`component` field).
 * Field names shared across components are listed in docs/agent.md: `component`, `peerId`,
 * `node`, `revision`, `workload`, `err`.
 */
import { pino, type Logger } from 'pino'
import type { LogLevel } from './config/types.js'

export function createAgentLogger(level: LogLevel, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination as pino.DestinationStream)
}
