#!/usr/bin/env node
// flatnet-cni: the CNI plugin (type "flatnet"), a thin client of the flatnet agent's socket.
// The compiled program lives in dist/ (`npm run setup`); `flatnet cni install` puts a bundled
// copy on a host.
let main
try {
  ;({ main } = await import('../dist/src/main.js'))
} catch (err) {
  // Still the spec's error JSON: a runtime shows it to someone who can act on it.
  process.stdout.write(`${JSON.stringify({ cniVersion: '1.1.0', code: 105, msg: 'flatnet-cni is not built: run `npm run setup` in the flatnet repository', details: String(err) })}\n`)
  process.exit(1)
}
process.exit(await main())
