// The report a benchmark prints on stdout: a table of figures, then its targets with PASS/MISS.

/**
 * Prints `title`, the `rows` ([label, value]) and the `checks` ([name, goal, measured, met]).
 * `layout` holds the widths each benchmark prints with ({rule, goal, measured, checksRule}:
 * the rules under the title and the targets' header run `rule` and `checksRule` characters
 * past the label column), so that its output keeps its shape from run to run.
 */
export function printReport({ title, rows, checks, layout }) {
  const width = Math.max(...rows.map((r) => r[0].length), ...checks.map((c) => c[0].length))
  console.log('')
  console.log(title)
  console.log('-'.repeat(width + layout.rule))
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`)
  console.log('')
  console.log(`${'target'.padEnd(width)}  ${'goal'.padEnd(layout.goal)}${'measured'.padEnd(layout.measured)}result`)
  console.log('-'.repeat(width + layout.checksRule))
  for (const [name, goal, measured, ok] of checks) console.log(`${name.padEnd(width)}  ${goal.padEnd(layout.goal)}${measured.padEnd(layout.measured)}${ok ? 'PASS' : 'MISS'}`)
  console.log('')
}

/** The checks as the report's JSON carries them: name -> PASS or MISS. */
export const targetsOf = (checks) => Object.fromEntries(checks.map(([name, , , ok]) => [name, ok ? 'PASS' : 'MISS']))

export const allTargetsMet = (checks) => checks.every((c) => c[3])
