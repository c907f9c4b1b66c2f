/** Output for people (aligned tables, colour on a terminal) and for machines (json, yaml). */
import { stringify } from 'yaml'

export type OutputFormat = 'table' | 'json' | 'yaml'

export interface Out {
  readonly color: boolean
  write(text: string): void
  error(text: string): void
}

export function terminalOut(opts: { color?: boolean } = {}): Out {
  const color = opts.color ?? (process.stdout.isTTY === true && !process.env.NO_COLOR && process.env.TERM !== 'dumb')
  return {
    color,
    write: (text) => void process.stdout.write(text.endsWith('\n') ? text : `${text}\n`),
    error: (text) => void process.stderr.write(text.endsWith('\n') ? text : `${text}\n`),
  }
}

const CODES = { red: 31, green: 32, yellow: 33, dim: 2, bold: 1 } as const
export type Style = keyof typeof CODES

export function paint(out: Out, style: Style, text: string): string {
  return out.color ? `\u001b[${CODES[style]}m${text}\u001b[0m` : text
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g
const visibleLength = (s: string): number => s.replace(ANSI, '').length

/** Columns padded to their widest cell; the last column is not padded. */
export function table(rows: readonly (readonly string[])[], header?: readonly string[]): string {
  const all = header ? [header, ...rows] : rows
  const widths: number[] = []
  for (const row of all) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, visibleLength(cell))))
  return all
    .map((row) =>
      row
        .map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat((widths[i] ?? 0) - visibleLength(cell))))
        .join('  ')
        .trimEnd(),
    )
    .join('\n')
}

export function formatData(value: unknown, format: 'json' | 'yaml'): string {
  return format === 'json' ? JSON.stringify(value, null, 2) : stringify(value)
}
