/**
 * @flatnet/lab: a whole flat network of several hosts in network namespaces on one machine,
 * for trying flatnet out and for end-to-end tests (docs/lab.md).
 */
export * from './topology.js'
export { DEFAULT_TOPOLOGY_FILE, DEFAULT_TOPOLOGY_YAML } from './default-topology.js'
export * from './names.js'
export * from './allocator.js'
export * from './state.js'
export * from './processes.js'
export { LabCommandError } from './command.js'
export * from './build.js'
export * from './down.js'
export * from './info.js'
export * from './probe.js'
export * from './env.js'
export { DaemonClient, LabDaemonError } from './daemon-client.js'
export type { DaemonConfig, ProbeOutcome, ProbeReply, ProbeRequest } from './daemon/protocol.js'
export * from './lab-up.js'
