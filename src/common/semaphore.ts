/** At most `limit` holders at once; the rest wait in arrival order (no timeout: callers bound). */
export class Semaphore {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {
    if (!(limit >= 1)) throw new RangeError(`Semaphore limit must be at least 1 (got ${limit})`);
  }

  get running(): number {
    return this.active;
  }

  get queued(): number {
    return this.waiting.length;
  }

  /** Waits for a slot; the returned function frees it (calling it again does nothing). */
  async acquire(): Promise<() => void> {
    const turn = this.enter();
    if (turn) await turn;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.leave();
    };
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    // No await when a slot is free: the task starts in this very call.
    const turn = this.enter();
    if (turn) await turn;
    try {
      return await task();
    } finally {
      this.leave();
    }
  }

  /** Takes a free slot, or returns the wait for one. */
  private enter(): Promise<void> | undefined {
    if (this.active < this.limit) {
      this.active++;
      return undefined;
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** A freed slot goes straight to the next waiter, so `active` stays counted. */
  private leave(): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.active--;
  }
}
