/**
 * Runs buildLab in its own process for the crash test, reporting each progress event as one
 * JSON line on stdout, so the test can kill it (SIGKILL) at a chosen point of the build.
 *
 *   node crash-builder.js STATE_DIR LAB_ID
 */
import { buildLab, loadTopology, perHostAllocator } from '../src/index.js'

const [stateDir, id] = process.argv.slice(2)
const topology = await loadTopology()
const alloc = perHostAllocator(topology)
await buildLab({
  topology,
  stateDir,
  id,
  allocate: alloc.allocate,
  hostPrefixes: alloc.prefixesOf,
  // One thing at a time, so that a kill lands between two steps of the same kind.
  concurrency: 1,
  keepOnFailure: true,
  onProgress: (p) => process.stdout.write(`${JSON.stringify(p)}\n`),
})
process.stdout.write(`${JSON.stringify({ step: 'finished' })}\n`)
