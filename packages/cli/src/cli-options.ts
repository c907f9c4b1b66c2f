/** Options shared by many commands, defined once so they read and behave the same everywhere. */
import { Option } from 'commander'

/** For repeatable options (`-f a -f b`). */
export const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value]

export function outputOption(): Option {
  return new Option('-o, --output <format>', 'output format').choices(['table', 'json', 'yaml']).default('table')
}
