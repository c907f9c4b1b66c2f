/**
 * `@flatnet/agent/client`: what the agent's clients (CLI, CNI plugin) need, without the agent.
 * Only node:http and @flatnet/core are loaded through this entry point (a test checks it).
 */
export * from './agent-client.js'
export * from './api-errors.js'
export * from './policy-status.js'
