/**
 * Callers waiting for a counter (a store revision) to reach their value: `reach()` moves it
 * forward and wakes every caller it satisfies; `wait()` gives up after its time limit.
 */
export class RevisionWaiters {
  private reached = -1
  private readonly waiting = new Set<(revision: number) => void>()

  /** The highest revision reached, -1 before any. */
  get revision(): number {
    return this.reached
  }

  reach(revision: number): void {
    if (revision <= this.reached) return
    this.reached = revision
    for (const wake of [...this.waiting]) wake(revision)
  }

  /** Resolves once `revision` or a later one is reached; rejects with `timeoutError()` after `timeoutMs`. */
  wait(revision: number, timeoutMs: number, timeoutError: () => Error): Promise<void> {
    if (this.reached >= revision) return Promise.resolve()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(wake)
        reject(timeoutError())
      }, timeoutMs)
      const wake = (reached: number): void => {
        if (reached < revision) return
        clearTimeout(timer)
        this.waiting.delete(wake)
        resolve()
      }
      this.waiting.add(wake)
    })
  }
}
