import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { loadObjects, type LoadedObjects } from '../src/index.js'

/** The repository root (where turbo.json lives), found from this compiled file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 10 && !existsSync(join(dir, 'turbo.json')); i++) dir = dirname(dir)
  return dir
}

export function fixture(...parts: string[]): string {
  return join(repoRoot(), 'test', 'fixtures', ...parts)
}

/** Loads plain objects through the real parser and validator, as the CLI would. */
export function loadPlain(objects: readonly unknown[], file = 'inline.yaml'): LoadedObjects {
  const text = objects.map((o) => stringify(o)).join('---\n')
  return loadObjects([{ file, text }])
}
