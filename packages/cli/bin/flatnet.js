#!/usr/bin/env node
// The `flatnet` command. The compiled program lives in dist/; build it with `npm run setup`.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const main = new URL('../dist/src/main.js', import.meta.url)
if (!existsSync(fileURLToPath(main))) {
  process.stderr.write('flatnet is not built yet: run `npm run setup` in the flatnet repository\n')
  process.exit(2)
}
const { run } = await import(main.href)
process.exitCode = await run(process.argv)
