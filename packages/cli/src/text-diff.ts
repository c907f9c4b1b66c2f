/** A unified line diff for `policy diff` and `apply --dry-run`, small inputs only (manifests). */
export function unifiedDiff(oldText: string, newText: string, labels: { old: string; new: string }, context = 3): string {
  const a = oldText === '' ? [] : oldText.replace(/\n$/, '').split('\n')
  const b = newText === '' ? [] : newText.replace(/\n$/, '').split('\n')
  // Longest common subsequence table; manifests are a few hundred lines at most.
  const lcs: number[][] = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0))
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) {
      lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!)
    }
  }
  const ops: { t: ' ' | '-' | '+'; line: string }[] = []
  let i = 0
  let j = 0
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) {
      ops.push({ t: ' ', line: a[i]! })
      i++
      j++
    } else if (i < a.length && (j >= b.length || lcs[i + 1]![j]! >= lcs[i]![j + 1]!)) {
      // Removals first, as diff(1) shows them.
      ops.push({ t: '-', line: a[i]! })
      i++
    } else {
      ops.push({ t: '+', line: b[j]! })
      j++
    }
  }
  if (ops.every((o) => o.t === ' ')) return ''
  const out = [`--- ${labels.old}`, `+++ ${labels.new}`]
  // Group changes with `context` unchanged lines around them into hunks.
  let k = 0
  while (k < ops.length) {
    while (k < ops.length && ops[k]!.t === ' ') k++
    if (k >= ops.length) break
    const start = Math.max(0, k - context)
    let end = k
    while (end < ops.length) {
      if (ops[end]!.t !== ' ') {
        end++
        continue
      }
      let run = 0
      while (end + run < ops.length && ops[end + run]!.t === ' ') run++
      if (end + run >= ops.length || run > context * 2) {
        end = Math.min(ops.length, end + context)
        break
      }
      end += run
    }
    const hunk = ops.slice(start, end)
    const oldStart = ops.slice(0, start).filter((o) => o.t !== '+').length + 1
    const newStart = ops.slice(0, start).filter((o) => o.t !== '-').length + 1
    out.push(`@@ -${oldStart},${hunk.filter((o) => o.t !== '+').length} +${newStart},${hunk.filter((o) => o.t !== '-').length} @@`)
    for (const o of hunk) out.push(`${o.t}${o.line}`)
    k = end
  }
  return out.join('\n')
}
