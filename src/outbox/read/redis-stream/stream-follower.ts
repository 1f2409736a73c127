import type { Cluster, Redis } from 'ioredis';
import { EventEmitter } from 'node:events';
import type { ResolvedOutboxOptions } from '../../../config/sse-module-options';
import { raceTimeout } from '../../../common/timeout';
import type { OutboxEvent } from '../../outbox-event';
import {
  comparePositions,
  formatEventId,
  OutboxPosition,
  parseEventId,
} from '../../outbox-position';
import type { OutboxListenerStats } from '../outbox-listener';
import type {
  OutboxFollowerEvents,
  OutboxSink,
  OutboxTableFollower,
} from '../outbox-table-follower';
import { parseEntry } from './stream-entries';

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 2_000;

type RawEntry = [string, string[]];

/**
 * `fanout: 'redis'`: feeds this instance's relay from the Redis Stream with a blocking `XREAD` on
 * a connection of its own. Each entry names the event before it, so a follower that finds the
 * stream does not continue where it is (a trim it fell behind, a flushed or restarted Redis, a
 * leader that started afresh) reads exactly the missing range from the table first: nothing is
 * skipped, and entries it already has are dropped, so nothing is delivered twice.
 *
 * While Redis is unavailable it follows the table directly ({@link OutboxTableFollower}), and it
 * switches back as soon as a read of the stream succeeds.
 */
export class OutboxStreamFollower extends EventEmitter<OutboxFollowerEvents> {
  private connection?: Redis | Cluster;
  private stopped = true;
  private running?: Promise<void>;
  private attempt = 0;
  private sleeping?: { timer: NodeJS.Timeout; wake: () => void };
  private readonly blockMs: number;
  /** The last stream entry read, deliverable or not. */
  private lastEntry?: OutboxPosition;
  readonly stats = {
    /** The last read of the stream succeeded. */
    connected: false,
    connects: 0,
    failures: 0,
    lastReadAt: 0,
    entries: 0,
    /** Ranges read from the table because the stream did not hold them. */
    gaps: 0,
    gapEvents: 0,
    /** Switches to following the table while Redis was unavailable. */
    fallbacks: 0,
  };

  constructor(
    private readonly options: ResolvedOutboxOptions,
    private readonly commandTimeoutMs: number,
    private readonly client: Redis | Cluster,
    private readonly key: string,
    private readonly sink: OutboxSink,
    private readonly table: OutboxTableFollower,
    private readonly onRead: (durationMs: number, entries: number) => void,
  ) {
    super();
    // Long enough to cost nothing when idle, short enough to notice a stop or a dead path soon.
    this.blockMs = Math.min(Math.max(options.pollIntervalMs, 100), 5_000);
    table.on('listening', () => this.emit('listening'));
  }

  /**
   * Whether events are being followed: from the stream, or from the table while Redis is down
   * (`connects`/`failures` count the stream's; `notifications`, its entries).
   */
  get listenerStats(): OutboxListenerStats {
    return {
      connected:
        this.stats.connected || (this.table.following && !!this.table.listenerStats?.connected),
      connects: this.stats.connects,
      failures: this.stats.failures,
      notifications: this.stats.entries,
      lastCheckAt: this.stats.lastReadAt,
    };
  }

  get fallingBack(): boolean {
    return this.table.following;
  }

  /** The stream's last entry; undefined if it is empty, gone or unreachable. Bounded. */
  async top(): Promise<OutboxPosition | undefined> {
    try {
      const entries = await this.bounded(this.client.xrevrange(this.key, '+', '-', 'COUNT', 1));
      return entries[0] ? parseEventId(entries[0][0]) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Starts following; resolves after the first read of the stream answered or failed (bounded). */
  async start(): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    // Blocking reads get a connection of their own: on the shared one they would hold up every
    // other command. Its socket timeout must outlast a block.
    this.connection = this.client.duplicate({
      socketTimeout: this.blockMs + 2 * this.commandTimeoutMs,
      connectionName: 'nestjs-durable-sse:outbox-follower',
      lazyConnect: false,
    } as never);
    this.connection.on('error', () => undefined); // reported through failed reads, throttled
    const first = new Promise<void>((resolve) => {
      const done = () => {
        this.off('listening', done);
        this.off('lost', done);
        resolve();
      };
      this.on('listening', done);
      this.on('lost', done);
    });
    this.running = this.connected().then(() => this.run());
    await raceTimeout(first, 5_000, () => undefined);
  }

  /** Waits (bounded) for the reading connection, so the first read does not fail for want of it. */
  private async connected(): Promise<void> {
    const connection = this.connection!;
    if (connection.status === 'ready') return;
    await raceTimeout(
      new Promise<void>((resolve) => {
        connection.once('ready', resolve);
        connection.once('end', resolve);
      }),
      this.commandTimeoutMs * 2,
      () => undefined,
    );
  }

  /** Stops reading the stream (and the table); nothing is delivered once it resolves. Bounded. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.sleeping?.wake();
    this.connection?.disconnect();
    await Promise.all([
      this.table.stop(),
      this.running && raceTimeout(this.running, 1_000, () => undefined),
    ]);
  }

  /** A poll request: only meaningful while following the table. */
  wake(): void {
    this.table.wake();
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let entries: RawEntry[];
      const started = Date.now();
      try {
        entries = await this.read();
      } catch (error) {
        if (this.stopped) return;
        await this.lost(error as Error);
        await this.sleep();
        continue;
      }
      if (this.stopped) return;
      this.stats.lastReadAt = Date.now();
      this.onRead(this.stats.lastReadAt - started, entries.length);
      try {
        if (!this.stats.connected || this.table.following) await this.resumed();
        await this.take(entries);
        this.attempt = 0;
      } catch (error) {
        // A range the stream lacked could not be read from the table: retried from the same place.
        if (this.stopped) return;
        this.sink.logger.report(
          'fanout.gap-read-failed',
          `Reading a gap in the Redis Stream from the table failed (will retry): ${(error as Error).message}`,
        );
        await this.sleep();
      }
    }
  }

  /** The entries after this relay's position (waits up to one block for some). Bounded. */
  private async read(): Promise<RawEntry[]> {
    const connection = this.connection!;
    // Not following yet (starting, or back from the table): answer at once, so the switch is
    // known without waiting out a block.
    const block = this.stats.connected && !this.table.following ? ['BLOCK', this.blockMs] : [];
    const reply = (await raceTimeout(
      connection.xread(
        'COUNT',
        this.options.batchSize,
        ...(block as ['BLOCK', number]),
        'STREAMS',
        this.key,
        formatEventId(this.readFrom()),
      ),
      this.blockMs + 2 * this.commandTimeoutMs,
      () => {
        // A silent path: the socket is replaced, the read retried.
        connection.disconnect(true);
        throw new Error(
          `XREAD did not answer within ${this.blockMs + 2 * this.commandTimeoutMs} ms`,
        );
      },
    )) as Array<[string, RawEntry[]]> | null;
    return reply?.[0]?.[1] ?? [];
  }

  /**
   * Where the next read starts: after the last event delivered, or after the last entry read if
   * that is further (an entry that is not an event of ours must not be read again and again).
   */
  private readFrom(): OutboxPosition {
    const position = this.sink.position;
    return this.lastEntry && comparePositions(this.lastEntry, position) > 0
      ? this.lastEntry
      : position;
  }

  /** The stream answers again: the table follower stops before any stream entry is delivered. */
  private async resumed(): Promise<void> {
    if (this.table.following) {
      await this.table.stop();
      this.sink.logger.report('fanout.stream-back', 'Following the Redis Stream again');
    }
    this.stats.connected = true;
    this.stats.connects++;
    this.emit('listening');
  }

  private async lost(error: Error): Promise<void> {
    const wasConnected = this.stats.connected;
    this.stats.connected = false;
    if (wasConnected) this.stats.failures++;
    if (wasConnected || !this.table.following) this.emit('lost', error);
    if (!this.table.following) {
      this.stats.fallbacks++;
      this.sink.logger.report(
        'fanout.stream-unavailable',
        `Redis Stream unavailable (${error.message}); following the outbox table until it returns`,
      );
      await this.table.start();
    } else {
      this.sink.logger.report(
        'fanout.stream-still-unavailable',
        `Redis Stream still unavailable: ${error.message}`,
      );
    }
  }

  /** Delivers entries in order, reading from the table whatever lies between them and the relay. */
  private async take(raw: RawEntry[]): Promise<void> {
    this.stats.entries += raw.length;
    const last = raw.length > 0 ? parseEventId(raw[raw.length - 1][0]) : undefined;
    let batch: OutboxEvent[] = [];
    let at = this.sink.position;
    for (const item of raw) {
      const entry = parseEntry(item);
      if (!entry || comparePositions(entry.position, at) <= 0) continue;
      if (comparePositions(entry.previous, at) > 0) {
        this.sink.deliver(batch);
        batch = [];
        await this.fill(entry.previous);
        if (this.stopped) return;
      }
      batch.push(entry);
      at = entry.position;
    }
    this.sink.deliver(batch);
    // Only once everything before it was delivered (a gap read that failed is read again).
    if (last) this.lastEntry = last;
  }

  /** Reads (position, upTo] from the table and delivers it. */
  private async fill(upTo: OutboxPosition): Promise<void> {
    this.stats.gaps++;
    const { batchSize } = this.options;
    for (;;) {
      const events = await this.sink.readTable(this.sink.position, batchSize, upTo);
      if (this.stopped) return;
      this.stats.gapEvents += events.length;
      this.sink.deliver(events);
      if (events.length < batchSize) break;
    }
    // Whatever the table no longer holds in the range, retention deleted: nobody can have it.
    this.sink.skipTo(upTo);
  }

  /**
   * Replays (after, upTo] of `topics` from the stream when it holds the whole range unbroken:
   * framed as sent, or `'too-far-behind'` past `limit`. Undefined sends the caller to the table.
   */
  async replay(
    topics: string[],
    after: OutboxPosition,
    upTo: OutboxPosition,
    limit: number,
    /** Only the events this says the client lacks (a snapshot position's). */
    lacks?: (position: OutboxPosition) => boolean,
  ): Promise<string[] | 'too-far-behind' | undefined> {
    // Entries of other topics are read too; past this many the table's topic index is cheaper.
    const scan = Math.max(4 * limit, 1_000);
    let raw: RawEntry[];
    try {
      raw = (await this.bounded(
        this.client.xrange(
          this.key,
          `(${formatEventId(after)}`,
          formatEventId(upTo),
          'COUNT',
          scan,
        ),
      )) as RawEntry[];
    } catch {
      return undefined;
    }
    const wanted = new Set(topics);
    const frames: string[] = [];
    let at = after;
    for (const item of raw) {
      const entry = parseEntry(item);
      if (!entry || comparePositions(entry.previous, at) > 0) return undefined;
      at = entry.position;
      if (!wanted.has(entry.topic)) continue;
      if (lacks && !lacks(entry.position)) continue;
      if (frames.length === limit) return 'too-far-behind';
      frames.push(entry.frame);
    }
    return comparePositions(at, upTo) === 0 ? frames : undefined;
  }

  private bounded<T>(work: Promise<T>): Promise<T> {
    return raceTimeout(work, this.commandTimeoutMs, () => {
      throw new Error(`Redis did not answer within ${this.commandTimeoutMs} ms`);
    });
  }

  private sleep(): Promise<void> {
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleeping = undefined;
        resolve();
      };
      const timer = setTimeout(wake, delay);
      timer.unref();
      this.sleeping = { timer, wake };
    });
  }
}
