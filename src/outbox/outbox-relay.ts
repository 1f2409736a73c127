import { Inject, Injectable, Logger, OnApplicationBootstrap } from '@nestjs/common';
import { once } from 'node:events';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import type { SseBatch, SseConnection, SseSeenFilter } from '../sse/sse-connection';
import { resetFrame } from '../sse/sse-encoder';
import { SseHub } from '../sse/sse-hub';
import { OutboxListener } from './outbox-listener';
import {
  comparePositions,
  formatEventId,
  OutboxPosition,
  parseEventId,
  positionOf,
} from './outbox-position';
import { OutboxService } from './outbox.service';
import { PostgresConnection } from './postgres-connection';
import { Semaphore } from '../common/semaphore';
import { RecentEvents } from './recent-events';
import { raceTimeout } from '../common/timeout';

interface OutboxRow {
  tx_id: string;
  id: string;
  topic: string;
  type: string | null;
  payload: unknown;
}

/** How long shutdown waits for an outbox read in flight. */
const SHUTDOWN_READ_WAIT_MS = 1_000;

/** What {@link OutboxRelay.lag} reports. */
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

export type OutboxResetReason =
  'malformed' | 'expired' | 'unknown' | 'too-far-behind' | 'replay-failed';

/**
 * One per instance: follows the outbox in commit-safe order and hands every event to the hub,
 * framed once, and serves resuming streams (from its cache of recent events, else from the
 * table). Woken by NOTIFY (coalesced: one read in flight, at most one more queued) and by a
 * poll every `pollIntervalMs`.
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap {
  private readonly logger = new Logger('SseOutboxRelay');
  /**
   * Replays share the pool with the relay's live reads and with publishers. After a deploy or an
   * outage every client reconnects at once; unbounded, their replays would take every pooled
   * connection, starve the live path and time out as `replay-failed` resets — a reload storm on
   * top of a reconnect storm. So at most half the pool replays at a time; the rest wait their
   * turn (their live events are held meanwhile, as during any replay).
   */
  private readonly replays: Semaphore;
  /** Recent events, framed, so most resumes are served without a query. */
  private readonly recent: RecentEvents;
  private listener?: OutboxListener;
  private pollTimer?: NodeJS.Timeout;
  private reading?: Promise<void>;
  private readAgain = false;
  private stopped = true;
  private lastErrorLogAt = 0;
  /** Everything up to here has been handed to the hub. */
  private position: OutboxPosition = { txId: 0n, id: 0n };
  /** The lag query in flight, shared by concurrent callers asking with the same cap. */
  private lagQuery?: { cap: number; result: Promise<OutboxLag> };
  /** Since when committed events are reported held back past health.pendingWarnMs. */
  private heldBackSince?: number;
  /** The backend named in the last held-back warning. */
  heldBackBy?: { pid: number; applicationName: string; state: string; ageMs: number };
  private heldBackTimer?: NodeJS.Timeout;
  /** Called after every outbox read with its duration (for metrics). */
  onRead?: (durationMs: number, rows: number) => void;
  readonly stats = {
    reads: 0,
    events: 0,
    errors: 0,
    lastReadAt: 0,
    lastBatchMs: 0,
    resets: 0,
    /** Events replayed to resuming streams, from the table or from memory. */
    replayed: 0,
    /** Of those, the ones served from the recent-events cache. */
    replayedFromMemory: 0,
  };

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    private readonly outbox: OutboxService,
    private readonly hub: SseHub,
  ) {
    this.replays = new Semaphore(Math.max(1, Math.floor(this.postgres.poolSize / 2)));
    this.recent = new RecentEvents(this.options.outbox.replayCacheBytes);
  }

  get enabled(): boolean {
    return this.postgres.enabled;
  }

  get currentPosition(): OutboxPosition {
    return this.position;
  }

  get listenerStats() {
    return this.listener?.stats;
  }

  /** The LISTEN connection: emits `listening` when (re)connected and `lost` when it failed. */
  get listenerEvents(): OutboxListener | undefined {
    return this.listener;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.enabled) return;
    const sql = this.outbox.sql;
    const { rows } = await this.postgres.query(sql.startPosition);
    this.position = positionOf(rows[0]);
    this.recent.reset(this.position);
    this.stopped = false;
    this.listener = new OutboxListener({
      channel: this.options.outbox.channel,
      listenSql: sql.listen,
      listeningSql: sql.listening,
      checkMs: this.options.outbox.listenerCheckMs,
      createClient: () => this.postgres.createClient(),
      onNotify: () => this.wake(),
      onListening: () => this.wake(),
    });
    // The app is ready when its first LISTEN is, and the read that follows it has answered:
    // until then readiness would report the relay as never having read. Bounded: a failure
    // just keeps reconnecting and polling.
    const settled = Promise.race([once(this.listener, 'listening'), once(this.listener, 'lost')]);
    this.listener.start();
    this.pollTimer = setInterval(() => this.wake(), this.options.outbox.pollIntervalMs);
    this.pollTimer.unref();
    // Held-back events are noticed even where nothing polls health or metrics.
    this.heldBackTimer = setInterval(
      () => void this.lag().catch(() => undefined),
      Math.max(this.options.outbox.pollIntervalMs, this.options.health.pendingWarnMs / 2),
    );
    this.heldBackTimer.unref();
    await raceTimeout(
      settled.then(() => this.reading),
      5_000,
      () => undefined,
    );
  }

  /** Stops reading and listening (SseShutdown calls it once streams are ended). Bounded. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.pollTimer);
    clearInterval(this.heldBackTimer);
    await this.listener?.stop();
    // A read in flight is bounded by postgres.queryTimeoutMs; shutdown need not wait that long
    // (nothing is delivered once stopped, and the pool's end destroys the connection).
    if (this.reading) await raceTimeout(this.reading, SHUTDOWN_READ_WAIT_MS, () => undefined);
  }

  /**
   * How far this relay is behind, and what is held back (counts capped at `cap`, default
   * `health.maxOutboxLagEvents + 1`). Concurrent calls share one query (health, metrics and the
   * held-back watch all ask). Bounded by `postgres.queryTimeoutMs`.
   */
  lag(cap = this.options.health.maxOutboxLagEvents + 1): Promise<OutboxLag> {
    if (this.lagQuery?.cap === cap) return this.lagQuery.result;
    const query = {
      cap,
      result: this.measureLag(cap).finally(() => {
        if (this.lagQuery === query) this.lagQuery = undefined;
      }),
    };
    this.lagQuery = query;
    return query.result;
  }

  private async measureLag(cap: number): Promise<OutboxLag> {
    const { rows } = await this.postgres.query(this.outbox.sql.lag, [
      this.position.txId.toString(),
      this.position.id.toString(),
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

  /**
   * Commit-safe order holds committed events back while any transaction that started before
   * they committed is open, anywhere in the cluster. That is correct, but invisible unless
   * said: past `health.pendingWarnMs` it is logged once, naming the blocking backend, and once
   * more when delivery resumes. Readiness is not affected: the cause is outside this instance,
   * and failing it would take every instance out at once.
   */
  private async watchHeldBack(lag: OutboxLag): Promise<void> {
    const threshold = this.options.health.pendingWarnMs;
    if (lag.pendingEvents === 0) {
      if (this.heldBackSince !== undefined) {
        this.logger.log('Outbox delivery resumed: no committed event is held back any more');
      }
      this.heldBackSince = undefined;
      return;
    }
    if (lag.oldestPendingMs < threshold || this.heldBackSince !== undefined) return;
    this.heldBackSince = Date.now();
    let blocker = 'the blocking transaction could not be identified';
    try {
      const { rows } = await this.postgres.query(this.outbox.sql.oldestTransaction);
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
    this.logger.warn(
      `${lag.pendingEvents} committed outbox event(s) held back for ${Math.round(lag.oldestPendingMs / 1000)} s ` +
        `by a transaction still open elsewhere, ${blocker}. Delivery is in commit-safe order and ` +
        'resumes when it ends (see docs/operations.md#events-held-back).',
    );
  }

  /** Asks for a read; coalesces with one already running. */
  wake(): void {
    if (this.stopped) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    this.reading = this.readUntilCaughtUp().finally(() => {
      this.reading = undefined;
    });
  }

  private async readUntilCaughtUp(): Promise<void> {
    const { batchSize } = this.options.outbox;
    try {
      for (;;) {
        this.readAgain = false;
        const started = Date.now();
        const { rows } = await this.postgres.query<OutboxRow>(this.outbox.sql.readAfter, [
          this.position.txId.toString(),
          this.position.id.toString(),
          batchSize,
        ]);
        this.stats.reads++;
        this.stats.lastReadAt = Date.now();
        this.stats.lastBatchMs = this.stats.lastReadAt - started;
        this.onRead?.(this.stats.lastBatchMs, rows.length);
        if (this.stopped) return;
        if (rows.length > 0) this.deliver(rows);
        if (rows.length < batchSize && !this.readAgain) return;
      }
    } catch (error) {
      // Position is unchanged: the next notification or poll retries from the same place.
      this.stats.errors++;
      this.warnThrottled(`Outbox read failed (will retry): ${(error as Error).message}`);
    }
  }

  /** One warning per 5 s at most: an outage must not turn every request into a log line. */
  private warnThrottled(message: string): void {
    if (Date.now() - this.lastErrorLogAt < 5_000) return;
    this.lastErrorLogAt = Date.now();
    this.logger.warn(message);
  }

  /**
   * Frames each row once and hands the hub one batch per run of consecutive rows of the same
   * topic, in position order, so a stream of several topics still sees one increasing order.
   * Synchronous.
   */
  private deliver(rows: OutboxRow[]): void {
    const runs: Array<{
      topic: string;
      events: Array<{ position: OutboxPosition; bytes: Buffer }>;
    }> = [];
    const remember = this.recent.enabled;
    for (const row of rows) {
      const live = this.hub.subscriberCount(row.topic) > 0;
      if (!live && !remember) continue;
      const position = positionOf(row);
      const frame = this.frameText(row, position);
      // Every topic, subscribed here or not: a client may resume on one nobody follows right now.
      // The cache's copy then serves live delivery too.
      const bytes = remember ? this.recent.push(row.topic, position, frame) : Buffer.from(frame);
      if (!live) continue;
      let run = runs[runs.length - 1];
      if (run?.topic !== row.topic) runs.push((run = { topic: row.topic, events: [] }));
      run.events.push({ position, bytes });
    }
    // Advanced in the same tick as the hand-over, so a stream that subscribes now knows exactly
    // which events reached it live (after this position) and which it must replay (up to it).
    this.position = positionOf(rows[rows.length - 1]);
    this.stats.events += rows.length;
    for (const { topic, events } of runs) {
      const batch: SseBatch<OutboxPosition> = {
        bytes: events.length === 1 ? events[0].bytes : Buffer.concat(events.map((e) => e.bytes)),
        events,
        last: events[events.length - 1].position,
      };
      this.hub.deliver(topic, batch);
    }
  }

  private frame(row: OutboxRow, position: OutboxPosition): Buffer {
    return Buffer.from(this.frameText(row, position));
  }

  /** Framed as every event is, by the hub (the module's serializer, the same validation). */
  private frameText(row: OutboxRow, position: OutboxPosition): string {
    return this.hub.encode({
      id: formatEventId(position),
      type: row.type ?? undefined,
      data: row.payload,
    });
  }

  /**
   * Subscribes a stream to its topics and, when it asks to resume, replays what it missed:
   * events after its id up to this relay's position, then the live events that arrived during
   * the replay, then live. No gap and no duplicate at the seam.
   */
  attach(connection: SseConnection, topics: string[], lastEventId: string | undefined): void {
    if (lastEventId === undefined) {
      // A stream that has received no event yet would, if cut, reconnect without an id and
      // miss what was published meanwhile, with no reset to tell it. So it is given the
      // position it starts after, as an id-only message: EventSource records it as the last
      // event id and dispatches nothing. (Not before the relay delivered its first event: its
      // start position names no event, which another instance could not resume from.)
      if (this.position.id > 0n) connection.write(`id: ${formatEventId(this.position)}\n\n`);
      connection.onTeardown(this.hub.subscribe(topics, connection));
      return;
    }
    connection.beginReplay();
    const upTo = this.position; // captured in the same tick as the subscription below
    connection.onTeardown(this.hub.subscribe(topics, connection));
    const after = parseEventId(lastEventId);
    if (!after) return this.reset(connection, 'malformed', lastEventId);
    if (comparePositions(after, upTo) < 0 && this.recent.covers(after)) {
      return this.replayFromMemory(connection, topics, after, upTo, lastEventId);
    }
    this.replays
      .run(() =>
        // A client that left while queued needs nothing read for it.
        connection.isClosed
          ? Promise.resolve()
          : this.replay(connection, topics, after, upTo, lastEventId),
      )
      .catch((error) => {
        this.warnThrottled(
          `Replay failed (the client was sent a reset): ${(error as Error).message}`,
        );
        this.reset(connection, 'replay-failed', lastEventId);
      });
  }

  /**
   * Synchronous, in the tick of the subscription: everything in (`after`, `upTo`] is in memory,
   * so the replay is written before any live batch can arrive.
   */
  private replayFromMemory(
    connection: SseConnection,
    topics: string[],
    after: OutboxPosition,
    upTo: OutboxPosition,
    lastEventId: string,
  ): void {
    const events = this.recent.collect(topics, after, upTo, this.options.sse.replayLimit);
    if (!events) return this.reset(connection, 'too-far-behind', lastEventId);
    if (events.length > 0) {
      connection.write(events.length === 1 ? events[0] : Buffer.concat(events));
      this.stats.replayed += events.length;
      this.stats.replayedFromMemory += events.length;
    }
    connection.endReplay();
  }

  private async replay(
    connection: SseConnection,
    topics: string[],
    after: OutboxPosition,
    upTo: OutboxPosition,
    lastEventId: string,
  ): Promise<void> {
    const sql = this.outbox.sql;
    if (await this.expired(after)) return this.reset(connection, 'expired', lastEventId);
    if (comparePositions(after, upTo) >= 0) {
      // The client is level with this relay, or ahead of it (it came from an instance whose
      // relay is further on): skip live events it has already seen. An id that names no event
      // would silence the stream forever, so that is a reset instead.
      if (comparePositions(after, upTo) === 0) return connection.endReplay();
      const { rows } = await this.postgres.query(sql.exists, [
        after.txId.toString(),
        after.id.toString(),
      ]);
      if (rows.length === 0) return this.reset(connection, 'unknown', lastEventId);
      return connection.endReplay(seenThrough(after));
    }
    const limit = this.options.sse.replayLimit;
    const { rows } = await this.postgres.query<OutboxRow>(sql.replay, [
      topics,
      after.txId.toString(),
      after.id.toString(),
      upTo.txId.toString(),
      upTo.id.toString(),
      limit + 1,
    ]);
    if (rows.length > limit) return this.reset(connection, 'too-far-behind', lastEventId);
    // Retention commits its deletions with the watermark: if it deleted part of this range before
    // the replay read it, the watermark now says so.
    if (await this.expired(after)) return this.reset(connection, 'expired', lastEventId);
    if (rows.length > 0) {
      connection.write(Buffer.concat(rows.map((row) => this.frame(row, positionOf(row)))));
      this.stats.replayed += rows.length;
    }
    connection.endReplay();
  }

  /** Whether retention has deleted events after `after` (the client missed them for good). */
  private async expired(after: OutboxPosition): Promise<boolean> {
    const { rows } = await this.postgres.query(this.outbox.sql.deletedThrough);
    return rows.length > 0 && comparePositions(after, positionOf(rows[0])) < 0;
  }

  private reset(connection: SseConnection, reason: OutboxResetReason, lastEventId: string): void {
    this.stats.resets++;
    connection.write(resetFrame(reason, lastEventId));
    connection.endReplay();
  }
}

/** The live events a client that has every event up to `after` still lacks (see SseSeenFilter). */
function seenThrough(after: OutboxPosition): SseSeenFilter {
  return (batch) => {
    const { events, last } = batch as SseBatch<OutboxPosition>;
    if (!events || !last) return undefined;
    if (comparePositions(last, after) <= 0) return 'seen';
    const fresh = events.filter((event) => comparePositions(event.position, after) > 0);
    return fresh.length === events.length ? batch.bytes : Buffer.concat(fresh.map((e) => e.bytes));
  };
}
