/**
 * `@flatnet/wireguard/testing`: what other packages' tests reuse from this package's test kit —
 * namespaces and processes made per run and removed by PID, bounded waits, and the line-based
 * RPC to test scripts running inside a namespace.
 */
export * from './native-harness.js'
export { RpcClient, serveRpc, type Handlers } from './rpc.js'
