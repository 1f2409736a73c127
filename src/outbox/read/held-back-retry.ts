import type { OutboxBatch } from '../outbox-event';

/** The first re-read after a read found events held back comes this soon. */
const FIRST_RETRY_MS = 5;

/**
 * Reads again while committed events are held back. A wake-up (after a commit, a NOTIFY) leads
 * to one read; when that read finds the committed events waiting behind an older transaction
 * still open — a business transaction that publishes nothing, another application's migration —
 * the end of that transaction wakes nobody, and the events would wait for the poll. So the reader
 * reads again after 5 ms, then twice as late each time, at most one poll interval apart; a read
 * that delivers starts the series over. One timer per reader, whatever is held back.
 */
export class HeldBackRetry {
  private timer?: NodeJS.Timeout;
  private delayMs = FIRST_RETRY_MS;
  /** Re-reads this caused. */
  retries = 0;

  constructor(
    private readonly maxDelayMs: number,
    private readonly wake: () => void,
  ) {}

  /** After each read. */
  read(batch: OutboxBatch): void {
    if (batch.events.length > 0 || !batch.heldBack) this.delayMs = FIRST_RETRY_MS;
    if (!batch.heldBack) return this.stop();
    if (this.timer) return;
    const delay = this.delayMs;
    this.delayMs = Math.min(delay * 2, this.maxDelayMs);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.retries++;
      this.wake();
    }, delay);
    this.timer.unref();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
