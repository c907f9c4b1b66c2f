/**
 * Coalesces apply requests: however many changes arrive while an apply runs, one more apply runs
 * after it, with everything that arrived (Calico felix's rule: updates are cheap, the kernel is
 * touched in one pass). Never two applies at once.
 */
export class ApplyScheduler {
  private running: Promise<void> | undefined
  private again = false

  constructor(
    private readonly apply: () => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  schedule(): void {
    if (this.running) {
      this.again = true
      return
    }
    this.running = this.loop()
  }

  private async loop(): Promise<void> {
    // Let the rest of the current batch of events land first.
    await new Promise((r) => setImmediate(r))
    do {
      this.again = false
      try {
        await this.apply()
      } catch (err) {
        this.onError(err)
      }
    } while (this.again)
    this.running = undefined
  }

  /** Resolves when no apply runs or is due. */
  async idle(): Promise<void> {
    while (this.running) await this.running
  }
}
