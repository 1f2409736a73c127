import { SseLogger } from '../../observability/sse-logger';
import { Inject, Injectable, OnApplicationBootstrap } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import { SSE_MODULE_OPTIONS } from '../../config/tokens';
import type { ResolvedSseModuleOptions } from '../../config/sse-module-options';
import type { SseBatch } from '../../sse/sse-connection';
import { SseHub } from '../../sse/sse-hub';
import type { OutboxBatch, OutboxEvent, OutboxRow } from '../outbox-event';
import { comparePositions, formatEventId, OutboxPosition, positionOf } from '../outbox-position';
import { OutboxStore } from '../store/outbox-store';
export type { OutboxLag } from './outbox-lag';
import { PostgresConnection } from '../../connections/postgres-connection';
import { OutboxWakeup } from '../write/outbox-wakeup';
import { RecentEvents } from './recent-events';
import { HeldBackBy, OutboxLag, OutboxLagWatch } from './outbox-lag';
import type { OutboxListenerStats } from './outbox-listener';
import { OutboxFollowerEvents, OutboxSink, OutboxTableFollower } from './outbox-table-follower';
import { RedisConnection } from '../../connections/redis-connection';
import { OutboxStreamFollower } from './redis-stream/stream-follower';
import { OutboxStreamLeader } from './redis-stream/stream-leader';
import { outboxStreamKey } from './redis-stream/stream-entries';
import { diagnose, SSE_DIAGNOSTICS } from '../../observability/diagnostics';
import { DeliveryGroup, recordDeliveries, tracingAvailable } from '../../observability/tracing';

/** A row of readNext: an event's columns (all null when the batch is empty) and held_back. */
type NextRow = { [K in keyof OutboxRow]: OutboxRow[K] | null } & { held_back: boolean };

/**
 * One per instance: follows the outbox in commit-safe order and hands every event to the hub,
 * framed once, keeping the most recent ones for resumes ({@link OutboxFeed} serves those).
 *
 * Where the events come from is `outbox.fanout`: with `'postgres'` the relay follows the table
 * itself ({@link OutboxTableFollower}); with `'redis'` it follows the Redis Stream that one
 * elected instance ({@link OutboxStreamLeader}) appends to ({@link OutboxStreamFollower}), and
 * the table only while Redis is unavailable.
 */
@Injectable()
export class OutboxRelay implements OnApplicationBootstrap, OutboxSink {
  /** Recent events, framed, so most resumes are served without a query. */
  readonly recent: RecentEvents;
  private follower?: OutboxTableFollower | OutboxStreamFollower;
  /** `fanout: 'redis'`: this instance's candidacy for appending to the stream. */
  leader?: OutboxStreamLeader;
  /** Everything up to here has been handed to the hub. */
  private current: OutboxPosition = { txId: 0n, id: 0n };
  private readonly lagWatch: OutboxLagWatch;
  /** Called after every outbox read with its duration (for metrics). */
  onRead?: (durationMs: number, rows: number) => void;
  readonly stats = {
    /** Reads that fed this relay: of the table, or of the Redis Stream. */
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
    /** Of those, the ones served from the Redis Stream. */
    replayedFromStream: 0,
    /** Streams that resumed with an id, and the PostgreSQL queries their resumes made. */
    resumes: 0,
    resumeQueries: 0,
  };

  private unwake?: () => void;

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    private readonly store: OutboxStore,
    private readonly hub: SseHub,
    private readonly redis: RedisConnection,
    readonly logger: SseLogger,
    private readonly wakeup: OutboxWakeup,
  ) {
    this.recent = new RecentEvents(this.options.outbox.replayCacheBytes);
    this.lagWatch = new OutboxLagWatch(options, postgres, store.sql, logger, () => this.current);
  }

  get enabled(): boolean {
    return this.postgres.enabled;
  }

  /** The payload of this instance's NOTIFYs, which its relay ignores (woken by the commit itself). */
  get ownNotifications(): string | undefined {
    return this.wakeup.enabled ? this.wakeup.sender : undefined;
  }

  get position(): OutboxPosition {
    return this.current;
  }

  /** The Redis Stream follower, with `fanout: 'redis'`. */
  get stream(): OutboxStreamFollower | undefined {
    return this.follower instanceof OutboxStreamFollower ? this.follower : undefined;
  }

  /**
   * State of what wakes or feeds this relay: the LISTEN connection (`fanout: 'postgres'`), or
   * the Redis Stream or, while Redis is unavailable, the LISTEN connection that replaces it.
   */
  get listenerStats(): OutboxListenerStats | undefined {
    return this.follower?.listenerStats;
  }

  /** Re-reads of the table because committed events were held back behind an open transaction. */
  get heldBackRetries(): number {
    const table = this.follower instanceof OutboxTableFollower ? this.follower.heldBackRetries : 0;
    return table + (this.leader?.heldBackRetries ?? 0);
  }

  /** Emits `listening` when (re)connected and `lost` when the connection failed. */
  get listenerEvents(): EventEmitter<OutboxFollowerEvents> | undefined {
    return this.follower;
  }

  async onApplicationBootstrap(): Promise<void> {
    if (!this.enabled) return;
    // A commit on this instance wakes its relay at once; the NOTIFY that follows wakes the others.
    this.unwake = this.wakeup.onCommit(() => this.wake());
    const { outbox } = this.options;
    const createClient = () => this.postgres.createClient();
    if (outbox.fanout === 'redis') {
      const client = this.redis.client!;
      const key = outboxStreamKey(this.options.postgres!.schema, outbox.table);
      this.leader = new OutboxStreamLeader({
        options: outbox,
        sql: this.store.sql,
        createClient,
        client,
        key,
        commandTimeoutMs: this.options.redis!.commandTimeoutMs,
        readNext: (after, limit) => this.readNext(after, limit),
        localPosition: () => this.current,
        ownNotifications: this.ownNotifications,
        lockName: `nestjs-durable-sse:outbox:${this.options.postgres!.schema}.${outbox.table}`,
        logger: this.logger,
      });
      const stream = new OutboxStreamFollower(
        outbox,
        this.options.redis!.commandTimeoutMs,
        client,
        key,
        this,
        new OutboxTableFollower(outbox, this.store.sql, createClient, this),
        (ms, entries) => this.noteRead(ms, entries),
      );
      this.follower = stream;
      this.current = (await stream.top()) ?? (await this.startPosition());
      this.recent.reset(this.current);
      await Promise.all([this.leader.start(), stream.start()]);
    } else {
      this.current = await this.startPosition();
      this.recent.reset(this.current);
      this.follower = new OutboxTableFollower(outbox, this.store.sql, createClient, this);
      // The app is ready when its first LISTEN is, and the read that follows it has answered:
      // until then readiness would report the relay as never having read. Bounded.
      await this.follower.start();
    }
    this.lagWatch.start();
  }

  /** Where a relay with no other reference starts: after every transaction that already ended. */
  private async startPosition(): Promise<OutboxPosition> {
    const { rows } = await this.postgres.query(this.store.sql.startPosition);
    return positionOf(rows[0]);
  }

  /** Stops reading, listening and leading (SseShutdown calls it once streams are ended). Bounded. */
  async stop(): Promise<void> {
    this.unwake?.();
    this.lagWatch.stop();
    await Promise.all([this.follower?.stop(), this.leader?.stop()]);
  }

  /** Asks for a read of the table now (with `fanout: 'redis'`: of the stream, or of the table while it is unavailable). */
  wake(): void {
    this.follower?.wake();
    this.leader?.wake();
  }

  /**
   * Reads every event committed before the call (and not held back by a transaction still open
   * elsewhere) and hands it to this instance's streams, then resolves with how many it handed
   * over. For tests: after `await outbox.transaction(…)`, `await relay.runOnce()` means the
   * events have been written to every stream of this instance, with no NOTIFY or poll to wait
   * for. Safe alongside the relay's own reads: events are handed over once, in order.
   */
  async runOnce(): Promise<number> {
    if (!this.enabled)
      throw new Error('OutboxRelay.runOnce(): the outbox is not configured (postgres)');
    if (!this.follower) {
      throw new Error(
        'OutboxRelay.runOnce(): the relay starts with the app; call app.init() first',
      );
    }
    const { batchSize } = this.options.outbox;
    let delivered = 0;
    for (;;) {
      const before = this.stats.events;
      const events = await this.readTable(this.current, batchSize);
      this.deliver(events);
      delivered += this.stats.events - before;
      if (events.length < batchSize) return delivered;
    }
  }

  /**
   * How far this relay is behind, and what is held back (counts capped at `cap`, default
   * `health.maxOutboxLagEvents + 1`). Bounded by `postgres.queryTimeoutMs`.
   */
  lag(cap?: number): Promise<OutboxLag> {
    return this.lagWatch.lag(cap);
  }

  /** The backend named in the last held-back warning. */
  get heldBackBy(): HeldBackBy | undefined {
    return this.lagWatch.heldBackBy;
  }

  /**
   * The next settled events after `after`, framed, at most `limit`, and whether committed events
   * are held back behind them. Bounded by `postgres.queryTimeoutMs`.
   */
  async readNext(after: OutboxPosition, limit: number): Promise<OutboxBatch> {
    const started = Date.now();
    try {
      const { rows } = await this.postgres.query<NextRow>(this.store.sql.readNext, [
        after.txId.toString(),
        after.id.toString(),
        limit,
      ]);
      const events = rows
        .filter((row) => row.tx_id !== null)
        .map((row) => this.frame(row as OutboxRow));
      this.noteRead(Date.now() - started, events.length);
      return { events, heldBack: rows[0]?.held_back === true };
    } catch (error) {
      this.stats.errors++;
      throw error;
    }
  }

  /**
   * Settled events after `after`, framed, at most `limit`, none past `upTo`. Bounded by
   * `postgres.queryTimeoutMs`.
   */
  async readTable(
    after: OutboxPosition,
    limit: number,
    upTo?: OutboxPosition,
  ): Promise<OutboxEvent[]> {
    const started = Date.now();
    const sql = this.store.sql;
    try {
      const { rows } = await this.postgres.query<OutboxRow>(
        upTo ? sql.readRange : sql.readAfter,
        upTo
          ? [
              after.txId.toString(),
              after.id.toString(),
              upTo.txId.toString(),
              upTo.id.toString(),
              limit,
            ]
          : [after.txId.toString(), after.id.toString(), limit],
      );
      this.noteRead(Date.now() - started, rows.length);
      return rows.map((row) => this.frame(row));
    } catch (error) {
      this.stats.errors++;
      throw error;
    }
  }

  private noteRead(durationMs: number, count: number): void {
    this.stats.reads++;
    this.stats.lastReadAt = Date.now();
    this.stats.lastBatchMs = durationMs;
    this.onRead?.(durationMs, count);
  }

  /** Framed as every event is, by the hub (the module's serializer, the same validation). */
  frame(row: OutboxRow): OutboxEvent {
    const position = positionOf(row);
    const event: OutboxEvent = {
      topic: row.topic,
      position,
      frame: this.hub.encode({
        id: formatEventId(position),
        type: row.type ?? undefined,
        data: row.payload,
      }),
    };
    if (row.trace_context) event.traceContext = row.trace_context;
    return event;
  }

  /**
   * Hands the hub one batch per run of consecutive events of the same topic, in position order,
   * so a stream of several topics still sees one increasing order. Events at or before the
   * relay's position were delivered already (a follower switching between the stream and the
   * table may offer them twice) and are skipped. Synchronous.
   */
  deliver(events: OutboxEvent[]): void {
    const runs: Array<{
      topic: string;
      events: Array<{ position: OutboxPosition; bytes: Buffer }>;
    }> = [];
    const remember = this.recent.enabled;
    let delivered = 0;
    // Per publish context, what reached streams here: one delivery span each, in its trace.
    // Made on the first event that carries a context (none do without an SDK).
    const tracing = tracingAvailable();
    let traced: Map<string, DeliveryGroup> | undefined;
    let started = 0;
    for (const event of events) {
      if (comparePositions(event.position, this.current) <= 0) continue;
      delivered++;
      this.current = event.position;
      const subscribers = this.hub.subscriberCount(event.topic);
      const live = subscribers > 0;
      if (live && tracing && event.traceContext) {
        if (!traced) {
          traced = new Map();
          started = Date.now();
        }
        traceInto(traced, event, subscribers);
      }
      if (!live && !remember) continue;
      // Every topic, subscribed here or not: a client may resume on one nobody follows right now.
      // The cache's copy then serves live delivery too.
      const bytes = remember
        ? this.recent.push(event.topic, event.position, event.frame)
        : Buffer.from(event.frame);
      if (!live) continue;
      let run = runs[runs.length - 1];
      if (run?.topic !== event.topic) runs.push((run = { topic: event.topic, events: [] }));
      run.events.push({ position: event.position, bytes });
    }
    // The position advanced in the same tick as the hand-over, so a stream that subscribes now
    // knows exactly which events reached it live (after this position) and which it must
    // replay (up to it).
    this.stats.events += delivered;
    const watched: Record<string, number> | undefined = SSE_DIAGNOSTICS.outboxDeliver.hasSubscribers
      ? {}
      : undefined;
    for (const { topic, events: batchEvents } of runs) {
      const batch: SseBatch<OutboxPosition> = {
        bytes:
          batchEvents.length === 1
            ? batchEvents[0].bytes
            : Buffer.concat(batchEvents.map((e) => e.bytes)),
        events: batchEvents,
        last: batchEvents[batchEvents.length - 1].position,
      };
      const reached = this.hub.deliver(topic, batch);
      if (watched) watched[topic] = (watched[topic] ?? 0) + reached;
    }
    if (watched && delivered > 0)
      diagnose(SSE_DIAGNOSTICS.outboxDeliver, () => ({ events: delivered, topics: watched }));
    if (traced?.size) recordDeliveries(traced.values(), started);
  }

  /** Moves the position past events nobody can deliver any more (deleted by retention). */
  skipTo(position: OutboxPosition): void {
    if (comparePositions(position, this.current) > 0) this.current = position;
  }
}

function traceInto(
  groups: Map<string, DeliveryGroup>,
  event: OutboxEvent,
  subscribers: number,
): void {
  const context = event.traceContext!;
  let group = groups.get(context);
  if (!group)
    groups.set(context, (group = { context, topics: new Set(), ids: [], subscribers: 0 }));
  // Streams handed the events: each topic's subscribers once, however many of its events.
  if (!group.topics.has(event.topic)) {
    group.topics.add(event.topic);
    group.subscribers += subscribers;
  }
  group.ids.push(formatEventId(event.position));
}
