import type { SseLogger } from '../../observability/sse-logger';
import { EventEmitter } from 'node:events';
import type { ResolvedOutboxOptions } from '../../config/sse-module-options';
import { raceTimeout } from '../../common/timeout';
import type { OutboxBatch, OutboxEvent } from '../outbox-event';
import { HeldBackRetry } from './held-back-retry';
import { OutboxListener } from './outbox-listener';
import type { OutboxPosition } from '../outbox-position';
import { explainSchemaError, OutboxSql } from '../store/outbox.sql';
import type { Client } from 'pg';

/**
 * Reads of the table start at least this far apart. Under a busy write path every commit wakes
 * the relay (its own instance's at once, the others by NOTIFY); spaced, one read fetches what
 * arrived meanwhile instead of a read per commit. A quiet path pays nothing: a wake-up later than
 * this after the last read is read at once.
 */
const READ_SPACING_MS = 5;
/** How long stopping waits for a read in flight. */
const STOP_READ_WAIT_MS = 1_000;

/** What a follower needs from the relay it feeds. */
export interface OutboxSink {
  /** Everything up to here has been delivered. */
  readonly position: OutboxPosition;
  /** Delivers events in position order (those at or before `position` are skipped). Synchronous. */
  deliver(events: OutboxEvent[]): void;
  /** Moves the position past events the table no longer holds (deleted by retention). */
  skipTo(position: OutboxPosition): void;
  /** Reads settled events after `after` in commit-safe order (at most `limit`, none past `upTo`). */
  readTable(after: OutboxPosition, limit: number, upTo?: OutboxPosition): Promise<OutboxEvent[]>;
  /** Reads the next settled events after `after`, and whether committed ones are held back. */
  readNext(after: OutboxPosition, limit: number): Promise<OutboxBatch>;
  /** Where the relay's parts log. */
  readonly logger: SseLogger;
  /** The payload of this instance's own NOTIFYs (its relay is woken without them). */
  readonly ownNotifications?: string;
}

export interface OutboxFollowerEvents {
  /** Following (again): events may have been missed meanwhile, and are read now. */
  listening: [];
  /** The connection that wakes or feeds the follower failed; it reconnects by itself. */
  lost: [Error];
}

/**
 * Follows the outbox table itself: woken by NOTIFY on a dedicated LISTEN connection (coalesced:
 * one read in flight, at most one more queued) and by a poll every `pollIntervalMs`. Every
 * instance does this with `fanout: 'postgres'`; with `'redis'`, the leader does, and followers
 * while Redis is unavailable.
 */
export class OutboxTableFollower extends EventEmitter<OutboxFollowerEvents> {
  private listener?: OutboxListener;
  private pollTimer?: NodeJS.Timeout;
  private reading?: Promise<void>;
  private readAgain = false;
  private lastReadAt = 0;
  private stopped = true;
  private readonly heldBack: HeldBackRetry;
  readonly stats = { errors: 0 };

  constructor(
    private readonly options: ResolvedOutboxOptions,
    private readonly sql: OutboxSql,
    private readonly createClient: () => Client,
    private readonly sink: OutboxSink,
  ) {
    super();
    this.heldBack = new HeldBackRetry(options.pollIntervalMs, () => this.wake());
  }

  /** Re-reads caused by committed events held back behind an open transaction. */
  get heldBackRetries(): number {
    return this.heldBack.retries;
  }

  /** State of the LISTEN connection. */
  get listenerStats() {
    return this.listener?.stats;
  }

  get following(): boolean {
    return !this.stopped;
  }

  /** Starts listening and polling; resolves once listening (or failing to) and the first read answered, within 5 s. */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.listener = new OutboxListener({
      channel: this.options.channel,
      listenSql: this.sql.listen,
      listeningSql: this.sql.listening,
      checkMs: this.options.listenerCheckMs,
      createClient: this.createClient,
      onNotify: () => this.wake(),
      ownPayload: this.sink.ownNotifications,
      onListening: () => this.wake(),
      logger: this.sink.logger,
    });
    this.listener.on('listening', () => this.emit('listening'));
    this.listener.on('lost', (error) => this.emit('lost', error));
    const settled = Promise.race([
      EventEmitter.once(this.listener, 'listening'),
      EventEmitter.once(this.listener, 'lost'),
    ]);
    this.listener.start();
    this.pollTimer = setInterval(() => this.wake(), this.options.pollIntervalMs);
    this.pollTimer.unref();
    await raceTimeout(
      settled.then(() => this.reading),
      5_000,
      () => undefined,
    );
  }

  /** Stops listening and reading; nothing is delivered once it resolves. Bounded. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.pollTimer);
    this.heldBack.stop();
    const listener = this.listener;
    listener?.removeAllListeners();
    await listener?.stop();
    // A read in flight is bounded by postgres.queryTimeoutMs; it delivers nothing once stopped.
    if (this.reading) await raceTimeout(this.reading, STOP_READ_WAIT_MS, () => undefined);
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
    const { batchSize } = this.options;
    try {
      for (;;) {
        // Spaced: the wake-ups that arrive while it waits are covered by the one read that follows.
        const wait = this.lastReadAt + READ_SPACING_MS - Date.now();
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
        if (this.stopped) return;
        this.readAgain = false;
        this.lastReadAt = Date.now();
        const batch = await this.sink.readNext(this.sink.position, batchSize);
        if (this.stopped) return;
        if (batch.events.length > 0) this.sink.deliver(batch.events);
        if (batch.events.length < batchSize && !this.readAgain) return this.heldBack.read(batch);
      }
    } catch (error) {
      // Position is unchanged: the next notification or poll retries from the same place.
      this.stats.errors++;
      this.sink.logger.report(
        'outbox.read-failed',
        `Outbox read failed (will retry): ${explainSchemaError(error as Error)}`,
      );
    }
  }
}
