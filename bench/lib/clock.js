// Time as the benchmarks read it.
import { performance } from 'node:perf_hooks'

/**
 * Wall-clock milliseconds with sub-millisecond resolution. Date.now() alone has 1 ms steps,
 * too coarse for deliveries that take a few ms; timeOrigin is the same wall clock in every
 * process, so parent and child processes can compare their readings (bench/store measures each
 * child's remaining offset).
 */
export const wallNow = () => performance.timeOrigin + performance.now()

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
