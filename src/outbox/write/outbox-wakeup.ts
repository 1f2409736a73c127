import { Inject, Injectable, OnApplicationShutdown, Optional } from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import { SSE_MODULE_OPTIONS } from '../../config/tokens';
import type { ResolvedSseModuleOptions } from '../../config/sse-module-options';
import { SseLogger } from '../../observability/sse-logger';
import { WAKEUP_SQL } from '../store/outbox.sql';
import { PostgresConnection } from '../../connections/postgres-connection';

/** Transactions published into and not yet seen to end, at most (the poll covers the rest). */
export const MAX_WATCHED_TRANSACTIONS = 10_000;
/**
 * NOTIFYs leave at least this far apart. Each one wakes every instance's relay for a read, so
 * under a busy write path a NOTIFY per commit would cost every instance a read per commit; spaced,
 * one read covers the commits of the interval. A quiet path pays nothing: a commit that comes
 * later than this after the last NOTIFY is announced at once.
 */
export const NOTIFY_SPACING_MS = 5;
/** The first check of a transaction published into comes this soon; then twice as late each time. */
const FIRST_CHECK_MS = 2;

interface Watched {
  /** When it is checked next, and the delay after that. */
  due: number;
  delayMs: number;
}

/**
 * Wakes the relays after commits, from outside every transaction (DESIGN §4). A NOTIFY sent
 * inside a transaction makes its commit take a database-wide lock held through the WAL flush, so
 * every publishing commit would run one at a time. Instead:
 *
 * - a transaction the module ran (`outbox.transaction(fn)`, or one it began on the caller's
 *   library) calls {@link committed} once its COMMIT returned: this instance's relay is woken at
 *   once, and one NOTIFY tells the others;
 * - a transaction the module only published into (the caller's own BEGIN … COMMIT, an ORM
 *   transaction it did not begin) is {@link watch}ed: its id, returned by the INSERT, is checked
 *   with `pg_xact_status()` soon after, then at growing intervals, until it committed (wake) or
 *   rolled back (forget). One query checks every transaction watched at that moment;
 * - rows written by other tools are read by the relay's poll (`outbox.pollIntervalMs`), or woken
 *   by the table's trigger with `outbox.wakeup: 'trigger'`.
 *
 * NOTIFYs coalesce: one in flight at a time per instance, at least NOTIFY_SPACING_MS apart, and
 * one more after it for the commits that ended meanwhile. A wake-up that fails or is lost costs latency, never an event:
 * the poll reads whatever a wake-up would have.
 */
@Injectable()
export class OutboxWakeup implements OnApplicationShutdown {
  /**
   * The payload of this instance's NOTIFYs. Its own relay was woken at once by the commit, so it
   * ignores them: a read per NOTIFY would be a second read per commit.
   */
  readonly sender = randomUUID();
  private readonly wakers = new Set<() => void>();
  private readonly watched = new Map<string, Watched>();
  /** At most this many transactions watched (tests lower it to reach the bound). */
  protected maxWatched = MAX_WATCHED_TRANSACTIONS;
  private notifying = false;
  private lastNotifyAt = 0;
  private notifyAgain = false;
  private checking = false;
  private timer?: NodeJS.Timeout;
  private timerDue = Infinity;
  private stopped = false;
  readonly stats = {
    /** NOTIFYs sent (each covers every commit that ended while the one before was in flight). */
    notifications: 0,
    /** Commits the module ran or saw end that published events. */
    commits: 0,
    /** Checks of watched transactions (one query each, however many it covers). */
    checks: 0,
    /** Wake-ups or checks that failed (the poll delivered those events). */
    failures: 0,
    /** Transactions not watched because MAX_WATCHED_TRANSACTIONS were (the poll delivered them). */
    dropped: 0,
  };

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    @Optional() private readonly logger: SseLogger = new SseLogger(),
  ) {}

  /** Whether the module sends wake-ups (`outbox.wakeup: 'after-commit'` and `postgres` set). */
  get enabled(): boolean {
    return this.postgres.enabled && this.options.outbox.wakeup === 'after-commit' && !this.stopped;
  }

  /** Transactions published into that are still being watched. */
  get watching(): number {
    return this.watched.size;
  }

  /** Registers what wakes this instance's relay; returns the unregistration. */
  onCommit(wake: () => void): () => void {
    this.wakers.add(wake);
    return () => this.wakers.delete(wake);
  }

  /** A transaction that published events has committed. */
  committed(): void {
    if (!this.enabled) return;
    this.stats.commits++;
    for (const wake of this.wakers) wake();
    this.notify();
  }

  /** Transactions (ids as text) the module published into but does not commit itself. */
  watch(txIds: Iterable<string>): void {
    if (!this.enabled) return;
    const due = Date.now() + FIRST_CHECK_MS;
    for (const txId of txIds) {
      if (this.watched.has(txId)) continue;
      if (this.watched.size >= this.maxWatched) {
        this.stats.dropped++;
        continue;
      }
      this.watched.set(txId, { due, delayMs: FIRST_CHECK_MS });
    }
    this.schedule();
  }

  onApplicationShutdown(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.watched.clear();
  }

  private notify(): void {
    if (this.notifying) {
      this.notifyAgain = true;
      return;
    }
    this.notifying = true;
    void this.sendNotifications().finally(() => (this.notifying = false));
  }

  private async sendNotifications(): Promise<void> {
    do {
      // Spaced: the commits that end while it waits are covered by the one NOTIFY that follows.
      const wait = this.lastNotifyAt + NOTIFY_SPACING_MS - Date.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      if (this.stopped) return;
      this.notifyAgain = false;
      this.lastNotifyAt = Date.now();
      try {
        await this.postgres.query(WAKEUP_SQL.notify, [this.options.outbox.channel, this.sender]);
        this.stats.notifications++;
      } catch (error) {
        this.failed('NOTIFY', error as Error);
      }
    } while (this.notifyAgain && !this.stopped);
  }

  /** Arms the timer for the earliest due check (one timer, whatever is watched). */
  private schedule(): void {
    if (this.stopped || this.checking || this.watched.size === 0) return;
    let due = Infinity;
    for (const entry of this.watched.values()) due = Math.min(due, entry.due);
    if (this.timer && due >= this.timerDue) return;
    clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => void this.check(), Math.max(0, due - Date.now()));
    this.timer.unref();
  }

  private async check(): Promise<void> {
    this.timer = undefined;
    this.timerDue = Infinity;
    const now = Date.now();
    const ids = [...this.watched].filter(([, entry]) => entry.due <= now).map(([id]) => id);
    if (ids.length === 0) return this.schedule();
    this.checking = true;
    try {
      this.stats.checks++;
      const { rows } = await this.postgres.query<{ tx_id: string; status: string | null }>(
        WAKEUP_SQL.xactStatus,
        [ids],
      );
      let committed = false;
      const later = Date.now();
      for (const { tx_id: id, status } of rows) {
        const entry = this.watched.get(id);
        if (!entry) continue;
        if (status === 'in progress') {
          // Held open: checked less and less often.
          this.backOff(entry, later);
          continue;
        }
        this.watched.delete(id);
        if (status === 'committed') committed = true;
      }
      if (committed) this.committed();
    } catch (error) {
      if ((error as { code?: string }).code === '22023') {
        // An id this server has not reached (a failover to one that was behind): none of these
        // can be told apart, so they are left to the poll rather than failing every check.
        for (const id of ids) this.watched.delete(id);
        this.stats.dropped += ids.length;
      } else {
        // Checked again later; the poll reads the events meanwhile.
        const later = Date.now();
        for (const id of ids) {
          const entry = this.watched.get(id);
          if (entry) this.backOff(entry, later);
        }
      }
      this.failed('transaction check', error as Error);
    } finally {
      this.checking = false;
      this.schedule();
    }
  }

  /** The next check of `entry` twice as late as the last, never later than one poll interval. */
  private backOff(entry: Watched, now: number): void {
    entry.delayMs = Math.min(entry.delayMs * 2, this.options.outbox.pollIntervalMs);
    entry.due = now + entry.delayMs;
  }

  private failed(what: string, error: Error): void {
    this.stats.failures++;
    this.logger.report(
      'outbox.wakeup-failed',
      `Outbox wake-up (${what}) failed; the poll delivers meanwhile: ${error.message}`,
    );
  }
}
