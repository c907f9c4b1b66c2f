// Progress and failures go to stderr, so that stdout carries a benchmark's report alone.
export const log = (line) => process.stderr.write(`${line}\n`)
