/**
 * Places under two limits — everyone together, and each client alone — taken before the work
 * starts (so concurrent takers cannot overshoot) and each given back exactly once. Streams
 * (`sse.maxConnections*`) and jobs (`jobs.maxConcurrent*`) count with one of these each.
 */
export class ClientLimits {
  private readonly perClient = new Map<string, number>();
  private held = 0;

  constructor(
    private readonly max: number,
    private readonly maxPerClient: number,
    /** Called each time the last place is given back. */
    private readonly onEmpty: () => void = () => undefined,
  ) {}

  /** Places taken. */
  get size(): number {
    return this.held;
  }

  /** Clients holding at least one place. */
  get clients(): number {
    return this.perClient.size;
  }

  /** A place for `clientKey` (its `release` gives it back, once), or which limit is reached. */
  take(clientKey: string): { release(): void } | 'full' | 'client-limit' {
    if (this.held >= this.max) return 'full';
    const mine = this.perClient.get(clientKey) ?? 0;
    if (mine >= this.maxPerClient) return 'client-limit';
    this.held++;
    this.perClient.set(clientKey, mine + 1);
    let released = false;
    return {
      release: () => {
        if (released) return;
        released = true;
        this.held--;
        const left = (this.perClient.get(clientKey) ?? 1) - 1;
        if (left > 0) this.perClient.set(clientKey, left);
        else this.perClient.delete(clientKey);
        if (this.held === 0) this.onEmpty();
      },
    };
  }
}
