import type { ResolvedSseModuleOptions } from '../../config/sse-module-options';
import type { PostgresConnection } from '../../connections/postgres-connection';
import type { SseLogger } from '../../observability/sse-logger';
import type { OutboxPosition } from '../outbox-position';
import type { OutboxSql } from '../store/outbox.sql';

/** What {@link OutboxLagWatch.lag} (and `OutboxRelay.lag()`) reports. */
export interface OutboxLag {
  /** Settled events this relay has not handed over yet (capped). */
  behind: number;
  /** Committed events not yet deliverable: a transaction open elsewhere holds them back (capped). */
  pendingEvents: number;
  /** Age of the oldest of those (ms; 0 when none). */
  oldestPendingMs: number;
  /** `pg_notification_queue_usage()`: how full the server's NOTIFY queue is (0 … 1). */
  notificationQueueUsage: number;
}

/** The backend whose open transaction holds events back, as the held-back warning names it. */
export interface HeldBackBy {
  pid: number;
  applicationName: string;
  state: string;
  ageMs: number;
}

/**
 * How far a relay is behind, and what is held back from it. Commit-safe order holds committed
 * events back while any transaction that started before they committed is open, anywhere in the
 * cluster. That is correct, but invisible unless said: past `health.pendingWarnMs` it is logged
 * once, naming the blocking backend, and once more when delivery resumes. Readiness is not
 * affected: the cause is outside this instance, and failing it would take every instance out at
 * once. Checked on a timer too, so it is noticed where nothing polls health or metrics.
 */
export class OutboxLagWatch {
  /** The lag query in flight, shared by concurrent callers asking with the same cap. */
  private query?: { cap: number; result: Promise<OutboxLag> };
  /** Since when committed events are reported held back past health.pendingWarnMs. */
  private heldBackSince?: number;
  /** The backend named in the last held-back warning. */
  heldBackBy?: HeldBackBy;
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    private readonly sql: OutboxSql,
    private readonly logger: SseLogger,
    /** Where the relay is: everything up to here has been handed over. */
    private readonly position: () => OutboxPosition,
  ) {}

  start(): void {
    this.stop();
    this.timer = setInterval(
      () => void this.lag().catch(() => undefined),
      Math.max(this.options.outbox.pollIntervalMs, this.options.health.pendingWarnMs / 2),
    );
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /**
   * Counts capped at `cap` (default `health.maxOutboxLagEvents + 1`). Concurrent calls share one
   * query (health, metrics and the timer all ask). Bounded by `postgres.queryTimeoutMs`.
   */
  lag(cap = this.options.health.maxOutboxLagEvents + 1): Promise<OutboxLag> {
    if (this.query?.cap === cap) return this.query.result;
    const query = {
      cap,
      result: this.measure(cap).finally(() => {
        if (this.query === query) this.query = undefined;
      }),
    };
    this.query = query;
    return query.result;
  }

  private async measure(cap: number): Promise<OutboxLag> {
    const position = this.position();
    const { rows } = await this.postgres.query(this.sql.lag, [
      position.txId.toString(),
      position.id.toString(),
      cap,
    ]);
    const lag: OutboxLag = {
      behind: rows[0].behind,
      pendingEvents: rows[0].pending,
      oldestPendingMs: rows[0].oldest_pending_ms ?? 0,
      notificationQueueUsage: Number(rows[0].queue_usage),
    };
    await this.watchHeldBack(lag);
    return lag;
  }

  private async watchHeldBack(lag: OutboxLag): Promise<void> {
    const threshold = this.options.health.pendingWarnMs;
    if (lag.pendingEvents === 0) {
      if (this.heldBackSince !== undefined) {
        this.logger.report(
          'outbox.held-back-ended',
          'Outbox delivery resumed: no committed event is held back any more',
        );
      }
      this.heldBackSince = undefined;
      return;
    }
    if (lag.oldestPendingMs < threshold || this.heldBackSince !== undefined) return;
    this.heldBackSince = Date.now();
    let blocker = 'the blocking transaction could not be identified';
    try {
      const { rows } = await this.postgres.query(this.sql.oldestTransaction);
      if (rows[0]) {
        const { pid, application_name: app, state, age_ms: age } = rows[0];
        blocker = `held by backend pid ${pid} (${app || 'no application_name'}, ${state}, transaction open ${Math.round(age / 1000)} s)`;
        this.heldBackBy = { pid, applicationName: app, state, ageMs: age };
      } else {
        blocker = 'held by a prepared transaction (see pg_prepared_xacts)';
      }
    } catch (error) {
      blocker += `: ${(error as Error).message}`;
    }
    this.logger.report(
      'outbox.held-back',
      `${lag.pendingEvents} committed outbox event(s) held back for ${Math.round(lag.oldestPendingMs / 1000)} s ` +
        `by a transaction still open elsewhere, ${blocker}. Delivery is in commit-safe order and ` +
        'resumes when it ends (see docs/operations.md#events-held-back).',
    );
  }
}
