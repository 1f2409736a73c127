/** One lease held by a running request. */
interface Lease {
  recordKey: string;
  owner: string;
  leaseMs: number;
  renewAt: number;
  lost: boolean;
}

/** The longest a renewal may wait past its due time (ms). */
const TICK_MS = 250;

/**
 * Keeps the leases of running requests alive with one shared timer, instead of a timer per
 * request: most requests finish long before their first renewal is due, so holding a lease
 * costs a Set insert and delete. A lease is renewed once a third of it has passed (plus at most
 * one tick, and leases are at least a second long, so well before it expires). The timer runs
 * only while leases are held, and never keeps the process alive.
 */
export class LeaseRenewer {
  private readonly leases = new Set<Lease>();
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly extend: (
      recordKey: string,
      owner: string,
      leaseMs: number,
    ) => Promise<boolean>,
    private readonly onLost: (recordKey: string) => void,
  ) {}

  /** Renews the lease until the returned function is called. */
  hold(recordKey: string, owner: string, leaseMs: number): () => void {
    const lease: Lease = {
      recordKey,
      owner,
      leaseMs,
      renewAt: Date.now() + leaseMs / 3,
      lost: false,
    };
    this.leases.add(lease);
    if (!this.timer) {
      this.timer = setInterval(() => this.tick(), TICK_MS);
      this.timer.unref();
    }
    return () => {
      this.leases.delete(lease);
      if (this.leases.size === 0) this.stop();
    };
  }

  get held(): number {
    return this.leases.size;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const now = Date.now();
    for (const lease of this.leases) {
      if (lease.renewAt > now) continue;
      lease.renewAt = now + lease.leaseMs / 3;
      this.extend(lease.recordKey, lease.owner, lease.leaseMs).then(
        (extended) => {
          if (!extended && !lease.lost) {
            lease.lost = true;
            this.onLost(lease.recordKey);
          }
        },
        // A failed renewal is retried on the next due time; the lease still has two thirds left.
        () => undefined,
      );
    }
  }
}
