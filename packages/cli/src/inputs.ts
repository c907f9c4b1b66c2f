/**
 * kubectl-style inputs: `-f` takes files, directories (read recursively, *.yaml, *.yml, *.json)
 * and `-` for standard input.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { InputReadError, ValidationError } from '@flatnet/core'
import { decodeUtf8, type SourceText } from '@flatnet/policy'

const EXTENSIONS = ['.yaml', '.yml', '.json']

function expand(path: string): string[] {
  if (path === '-') return ['-']
  let stat
  try {
    stat = statSync(path)
  } catch (err) {
    throw new InputReadError(path, (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message)
  }
  if (!stat.isDirectory()) return [path]
  const out: string[] = []
  for (const entry of readdirSync(path, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
    const full = join(path, entry.name)
    if (entry.isDirectory()) out.push(...expand(full))
    else if (EXTENSIONS.some((e) => entry.name.endsWith(e))) out.push(full)
  }
  return out
}

function readBytes(file: string): Uint8Array {
  try {
    return readFileSync(file === '-' ? 0 : file)
  } catch (err) {
    throw new InputReadError(file === '-' ? '<stdin>' : file, (err as Error).message)
  }
}

/** Reads every input as UTF-8 text; a file that is not UTF-8 is a validation problem. */
export function readSources(paths: readonly string[]): SourceText[] {
  const sources: SourceText[] = []
  const issues = []
  for (const file of paths.flatMap(expand)) {
    const name = file === '-' ? '<stdin>' : file
    const decoded = decodeUtf8(name, readBytes(file))
    if (decoded.issue) issues.push(decoded.issue)
    else sources.push({ file: name, text: decoded.text as string })
  }
  if (issues.length > 0) throw new ValidationError(issues)
  return sources
}

export function readText(file: string): SourceText {
  const [source] = readSources([file])
  if (!source) throw new InputReadError(file, 'no input')
  return source
}
