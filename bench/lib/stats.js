// Summaries of measured samples.

/** Percentiles by nearest rank, which never invents a value that was not measured. */
export function stats(samples) {
  if (samples.length === 0) return { n: 0, min: NaN, p50: NaN, p99: NaN, max: NaN, mean: NaN }
  const s = Float64Array.from(samples).sort()
  const q = (f) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(f * s.length) - 1))]
  let sum = 0
  for (const x of s) sum += x
  return { n: s.length, min: s[0], p50: q(0.5), p99: q(0.99), max: s[s.length - 1], mean: sum / s.length }
}

/** The middle sample; for an even count, the mean of the two in the middle. */
export function median(samples) {
  const s = Float64Array.from(samples).sort()
  return (s[(s.length - 1) >> 1] + s[s.length >> 1]) / 2
}
