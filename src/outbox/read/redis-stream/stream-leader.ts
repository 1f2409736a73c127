import type { SseLogger } from '../../../observability/sse-logger';
import type { Cluster, Redis } from 'ioredis';
import type { Client } from 'pg';
import type { ResolvedOutboxOptions } from '../../../config/sse-module-options';
import { raceTimeout } from '../../../common/timeout';
import type { OutboxBatch } from '../../outbox-event';
import { HeldBackRetry } from '../held-back-retry';
import { formatEventId, OutboxPosition, parseEventId } from '../../outbox-position';
import type { OutboxSql } from '../../store/outbox.sql';
import { destroySocket } from '../../../connections/postgres-connection';
import { appendArguments, StreamClient, withAppendScript } from './stream-entries';

/** How long a candidate waits for the lock in one statement (server-side `lock_timeout`). */
const LOCK_WAIT_MS = 5_000;
/**
 * Reads of the table start at least this far apart. Every NOTIFY wakes the leader, and under a
 * steady stream of small transactions each read would fetch one event: a transaction per event
 * on top of the publisher's own and the one PostgreSQL runs in the listening session for each
 * notification. Spaced reads fetch what arrived meanwhile in one; the cost is at most this much
 * added latency (measured: bench/README.md, scale).
 */
const READ_SPACING_MS = 5;
const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 5_000;

/** What a leader works with: its options, its connections, and its relay's reads and position. */
export interface StreamLeaderDeps {
  options: ResolvedOutboxOptions;
  sql: OutboxSql;
  /** A new PostgreSQL session (outside the pool) for the lock, woken by NOTIFY. */
  createClient: () => Client;
  client: Redis | Cluster;
  /** The Redis Stream appended to. */
  key: string;
  commandTimeoutMs: number;
  /** The relay's commit-safe read of the table. */
  readNext: (after: OutboxPosition, limit: number) => Promise<OutboxBatch>;
  /**
   * Where a stream that is empty or gone starts, when this instance has not led before: where
   * its own relay is. Starting "now" instead would leave whatever was committed between the
   * relay's start and this term out of the stream, and instances that are behind would only
   * read it from the table once a newer event arrives.
   */
  localPosition: () => OutboxPosition;
  /** The payload of this instance's own NOTIFYs: it wakes the leader without them. */
  ownNotifications?: string;
  /** The advisory lock's name (hashed): one leader per outbox table. */
  lockName: string;
  logger: SseLogger;
}

/**
 * `fanout: 'redis'`: every instance is a candidate; the one whose dedicated PostgreSQL session
 * holds the advisory lock leads. It reads the outbox in commit-safe order (woken by NOTIFY on
 * that session, and by a poll) and appends each batch to the Redis Stream with one script that
 * refuses to append unless the stream ends where the batch begins.
 *
 * Losing the lead must not wait for anyone to notice: a session that errors or ends stops the
 * leader at once, and one that does not answer its check within `leaderCheckMs` is destroyed.
 * Its server side may still hold the lock — a silent network path leaves it open — so the session
 * runs with `idle_session_timeout` (5 × `leaderCheckMs`): PostgreSQL itself ends it once the
 * checks stop arriving, and the lock passes to the next candidate waiting for it. Should an
 * ousted leader still append meanwhile, the script's check keeps the stream gapless and free of
 * duplicates.
 */
export class OutboxStreamLeader {
  private readonly stream: StreamClient;
  private session?: Client;
  private stopped = true;
  private attempt = 0;
  private timers: NodeJS.Timeout[] = [];
  private retryTimer?: NodeJS.Timeout;
  /** The stream's last entry as this instance knows it; undefined until read in this term. */
  private position?: OutboxPosition;
  /** Where the previous term ended: a flushed stream is continued from there (no gap for anyone). */
  private lastTermPosition?: OutboxPosition;
  private appending?: Promise<void>;
  private lastReadAt = 0;
  private appendAgain = false;
  private onCandidate?: () => void;
  private readonly heldBack: HeldBackRetry;
  readonly stats = {
    leading: false,
    /** Backend pid of the session holding the lock, while leading (pg_stat_activity, pg_locks). */
    sessionPid: 0,
    /** Terms led by this instance. */
    terms: 0,
    appended: 0,
    /** Appends refused because the stream did not end where this leader thought. */
    resyncs: 0,
    errors: 0,
  };

  private readonly options: ResolvedOutboxOptions;
  private readonly sql: OutboxSql;
  private readonly key: string;
  private readonly commandTimeoutMs: number;
  private readonly lockName: string;
  private readonly logger: SseLogger;

  constructor(private readonly deps: StreamLeaderDeps) {
    ({
      options: this.options,
      sql: this.sql,
      key: this.key,
      commandTimeoutMs: this.commandTimeoutMs,
      lockName: this.lockName,
      logger: this.logger,
    } = deps);
    this.stream = withAppendScript(deps.client);
    this.heldBack = new HeldBackRetry(this.options.pollIntervalMs, () => this.wake());
  }

  get leading(): boolean {
    return this.stats.leading;
  }

  /** Re-reads caused by committed events held back behind an open transaction. */
  get heldBackRetries(): number {
    return this.heldBack.retries;
  }

  /** Becomes a candidate; resolves once its session is connected and waiting (or failed), bounded. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    await raceTimeout(
      new Promise<void>((resolve) => {
        this.onCandidate = resolve;
        void this.campaign();
      }),
      5_000,
      () => undefined,
    );
    this.onCandidate = undefined;
  }

  /** Ends leading or waiting; the lock is released with the session. Bounded. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    const session = this.session;
    this.resign();
    if (this.appending) await raceTimeout(this.appending, 1_000, () => undefined);
    if (session) {
      await raceTimeout(
        session.end().catch(() => undefined),
        1_000,
        () => destroySocket(session),
      );
    }
  }

  /** Asks for a read and append; coalesces with one running. Does nothing unless leading. */
  wake(): void {
    if (!this.stats.leading) return;
    if (this.appending) {
      this.appendAgain = true;
      return;
    }
    this.appending = this.appendUntilCaughtUp().finally(() => {
      this.appending = undefined;
    });
  }

  /** Connects a session and waits on the lock with it; then leads until the session is lost. */
  private async campaign(): Promise<void> {
    const session = this.deps.createClient();
    this.session = session;
    const lost = (error: Error) => this.lost(session, error);
    session.on('error', lost);
    session.on('end', () => lost(new Error('lock session ended')));
    const bound = this.commandTimeoutMs + LOCK_WAIT_MS;
    try {
      await raceTimeout(session.connect(), bound, () => {
        throw new Error('connecting timed out');
      });
      await raceTimeout(
        session.query(
          `SET idle_session_timeout = ${5 * this.options.leaderCheckMs}; SET lock_timeout = ${LOCK_WAIT_MS}`,
        ),
        bound,
        () => {
          throw new Error('setting up the session timed out');
        },
      );
      this.onCandidate?.();
      for (;;) {
        if (this.stopped || this.session !== session) return;
        try {
          // A silent path would leave this waiting forever: bounded beyond the server's own wait.
          await raceTimeout(session.query(this.sql.leaderLock, [this.lockName]), bound, () => {
            throw new Error('waiting for the lock timed out');
          });
          break;
        } catch (error) {
          // lock_not_available: another instance leads; keep waiting on the same session.
          if ((error as { code?: string }).code !== '55P03') throw error;
        }
      }
      if (this.stopped || this.session !== session) return;
      await raceTimeout(session.query(this.sql.listen), bound, () => {
        throw new Error('LISTEN timed out');
      });
      const { rows } = await raceTimeout(
        session.query('SELECT pg_backend_pid() AS pid'),
        bound,
        () => {
          throw new Error('reading the session pid timed out');
        },
      );
      this.stats.sessionPid = rows[0].pid;
    } catch (error) {
      return this.lost(session, error as Error);
    }
    if (this.stopped || this.session !== session) return;
    this.lead(session);
  }

  private lead(session: Client): void {
    this.attempt = 0;
    this.position = undefined;
    this.stats.leading = true;
    this.stats.terms++;
    this.logger.report(
      'fanout.leading',
      `This instance now appends the outbox to the Redis Stream (lock session pid ${this.stats.sessionPid})`,
    );
    session.on('notification', (message) => {
      if (message.payload !== this.deps.ownNotifications) this.wake();
    });
    const check = setInterval(() => void this.check(session), this.options.leaderCheckMs);
    const poll = setInterval(() => this.wake(), this.options.pollIntervalMs);
    check.unref();
    poll.unref();
    this.timers = [check, poll];
    this.wake();
  }

  private async check(session: Client): Promise<void> {
    const ms = this.options.leaderCheckMs;
    try {
      await raceTimeout(session.query('SELECT 1'), ms, () => {
        throw new Error(`lock session check timed out after ${ms} ms`);
      });
    } catch (error) {
      this.lost(session, error as Error);
    }
  }

  /** Stops leading now, without waiting for the session to close. */
  private resign(): void {
    this.timers.forEach(clearInterval);
    this.timers = [];
    this.heldBack.stop();
    if (this.stats.leading) this.lastTermPosition = this.position;
    this.stats.leading = false;
    this.stats.sessionPid = 0;
    this.session = undefined;
  }

  private lost(session: Client, error: Error): void {
    if (this.session !== session) return;
    this.onCandidate?.();
    const wasLeading = this.stats.leading;
    this.resign();
    void session.end().catch(() => undefined);
    destroySocket(session);
    if (this.stopped) return;
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    const jittered = Math.round(delay / 2 + Math.random() * (delay / 2));
    const message = `${error.message}; trying again in ${jittered} ms`;
    if (wasLeading) this.logger.report('fanout.lead-lost', `Lost the relay lead (${message})`);
    else this.logger.report('fanout.lock-failed', `Relay lock session failed (${message})`);
    this.retryTimer = setTimeout(() => void this.campaign(), jittered);
    this.retryTimer.unref();
  }

  private async appendUntilCaughtUp(): Promise<void> {
    const { batchSize, streamMaxLength } = this.options;
    try {
      for (;;) {
        this.appendAgain = false;
        this.position ??=
          (await this.streamTop()) ?? this.lastTermPosition ?? this.deps.localPosition();
        const wait = this.lastReadAt + READ_SPACING_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (!this.stats.leading) return;
        this.lastReadAt = Date.now();
        const after = this.position;
        const batch = await this.deps.readNext(after, batchSize);
        if (!this.stats.leading) return;
        const { events } = batch;
        if (events.length > 0) {
          const reply = await raceTimeout(
            this.stream.sseOutboxAppend(
              this.key,
              ...appendArguments(after, streamMaxLength, events),
            ),
            this.commandTimeoutMs,
            () => {
              throw new Error(`appending timed out after ${this.commandTimeoutMs} ms`);
            },
          );
          if (reply === 1) {
            this.position = events[events.length - 1].position;
            this.stats.appended += events.length;
          } else {
            // The stream ends elsewhere: continue from its end, whichever side it is on.
            this.stats.resyncs++;
            this.position = parseEventId(String(reply)) ?? this.position;
            continue;
          }
        }
        if (events.length < batchSize && !this.appendAgain) return this.heldBack.read(batch);
      }
    } catch (error) {
      // The position is the stream's: a failed append is retried from it on the next wake.
      // After a timeout the script may have run after all; the next append then resyncs.
      this.stats.errors++;
      this.logger.report(
        'fanout.append-failed',
        `Appending to the Redis Stream failed (will retry): ${(error as Error).message}`,
      );
    }
  }

  private async streamTop(): Promise<OutboxPosition | undefined> {
    const entries = await raceTimeout(
      this.stream.xrevrange(this.key, '+', '-', 'COUNT', 1),
      this.commandTimeoutMs,
      () => {
        throw new Error(`reading the stream's end timed out after ${this.commandTimeoutMs} ms`);
      },
    );
    return entries[0] ? parseEventId(entries[0][0]) : undefined;
  }

  /** For logs and tests: where this leader's stream ends. */
  get streamPosition(): string | undefined {
    return this.position && formatEventId(this.position);
  }
}
