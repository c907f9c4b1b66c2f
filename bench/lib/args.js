// A benchmark's command line: flags (`--quick`) and numeric options (`--rounds 5`).

/**
 * `flag(name)` says whether a flag was given; `option(name, fallback)` reads the number after
 * it. With `strict` ({known, usage}), an option that is not in `known`, or an option value that
 * is not a positive whole number, is reported through `usage(message)`, which must not return.
 */
export function readArgs(argv = process.argv.slice(2), strict = undefined) {
  if (strict) for (const a of argv) if (a.startsWith('--') && !strict.known.includes(a)) strict.usage(`unknown option ${a}`)
  const flag = (name) => argv.includes(name)
  const option = (name, fallback) => {
    const i = argv.indexOf(name)
    if (i === -1) return fallback
    const v = Number(argv[i + 1])
    if (strict && (!Number.isInteger(v) || v < 1)) strict.usage(`${name} needs a positive whole number, got "${argv[i + 1]}"`)
    return v
  }
  return { flag, option }
}
