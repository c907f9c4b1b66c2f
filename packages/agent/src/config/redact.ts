import { redactUrl } from '@flatnet/store'
import type { AgentConfig } from './types.js'

/**
 * The configuration as it may be logged or shown: the join token and the Redis password
 * replaced by `***`. Everything else is kept, so a log line shows what the agent runs with.
 */
export function redactAgentConfig(config: AgentConfig): AgentConfig {
  return {
    ...config,
    store: { ...config.store, url: config.store.url === '' ? '' : redactUrl(config.store.url) },
    join: { ...config.join, token: config.join.token === '' ? '' : '***' },
  }
}
