import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { run, type Out } from '../src/index.js'

/** The repository root (where turbo.json lives), found from this compiled file. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 10 && !existsSync(join(dir, 'turbo.json')); i++) dir = dirname(dir)
  return dir
}

export const example = (p: string): string => join(repoRoot(), 'examples', p)

/** Runs the CLI in-process, capturing what it prints. */
export async function runCli(args: readonly string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const out: Out = { color: false, write: (t) => void (stdout += `${t}\n`), error: (t) => void (stderr += `${t}\n`) }
  const code = await run(['node', 'flatnet', ...args], out)
  return { code, stdout, stderr }
}
