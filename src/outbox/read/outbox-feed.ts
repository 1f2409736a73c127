import { Inject, Injectable } from '@nestjs/common';
import { SSE_MODULE_OPTIONS } from '../../config/tokens';
import type { ResolvedSseModuleOptions } from '../../config/sse-module-options';
import { Semaphore } from '../../common/semaphore';
import type { SseBatch, SseConnection, SseSeenFilter } from '../../sse/sse-connection';
import { resetFrame } from '../../sse/sse-encoder';
import { diagnose, SSE_DIAGNOSTICS } from '../../observability/diagnostics';
import { SSE_TRACE_ATTRIBUTES } from '../../observability/tracing';
import type { SseFeed } from '../../sse/sse-feed';
import { SseHub } from '../../sse/sse-hub';
import type { OutboxRow } from '../outbox-event';
import {
  comparePositions,
  formatEventId,
  OutboxPosition,
  parseEventId,
  parseSnapshotPosition,
  positionOf,
  SnapshotPosition,
  unseenBySnapshot,
} from '../outbox-position';
import { OutboxRelay } from './outbox-relay';
import { OutboxStore } from '../store/outbox-store';
import { PostgresConnection } from '../../connections/postgres-connection';

export type OutboxResetReason =
  'malformed' | 'expired' | 'unknown' | 'too-far-behind' | 'replay-failed';

/**
 * Topic streams fed by the outbox: subscribes them to the relay's live events and, when they
 * resume, replays what they missed — from the relay's memory of recent events, else the Redis
 * Stream (`fanout: 'redis'`), else the table — then the live events that arrived meanwhile.
 * No gap and no duplicate at the seam.
 *
 * A provider of its own rather than the relay under a second token, because Nest runs the
 * lifecycle hooks of every provider's value: the relay would start twice.
 */
@Injectable()
export class OutboxFeed implements SseFeed {
  /**
   * Replays share the pool with the relay's live reads and with publishers. After a deploy or an
   * outage every client reconnects at once; unbounded, their replays would take every pooled
   * connection, starve the live path and time out as `replay-failed` resets — a reload storm on
   * top of a reconnect storm. So at most half the pool replays at a time; the rest wait their
   * turn (their live events are held meanwhile, as during any replay).
   */
  private readonly replays: Semaphore;

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly relay: OutboxRelay,
    private readonly postgres: PostgresConnection,
    private readonly store: OutboxStore,
    private readonly hub: SseHub,
  ) {
    this.replays = new Semaphore(Math.max(1, Math.floor(this.postgres.poolSize / 2)));
  }

  get enabled(): boolean {
    return this.relay.enabled;
  }

  attach(connection: SseConnection, topics: string[], lastEventId: string | undefined): void {
    const position = this.relay.position;
    if (lastEventId === undefined) {
      // A stream that has received no event yet would, if cut, reconnect without an id and
      // miss what was published meanwhile, with no reset to tell it. So it is given the
      // position it starts after, as an id-only message: EventSource records it as the last
      // event id and dispatches nothing. (Not before the relay delivered its first event: its
      // start position names no event, which another instance could not resume from.)
      if (position.id > 0n) connection.write(`id: ${formatEventId(position)}\n\n`);
      connection.onTeardown(this.hub.subscribe(topics, connection));
      return;
    }
    connection.beginReplay();
    this.relay.stats.resumes++;
    const upTo = position; // captured in the same tick as the subscription below
    connection.onTeardown(this.hub.subscribe(topics, connection));
    const snapshot = parseSnapshotPosition(lastEventId);
    const after = snapshot?.after ?? parseEventId(lastEventId);
    if (!after) return this.reset(connection, 'malformed', lastEventId);
    const resume: Resume = { topics, after, upTo, lastEventId, snapshot };
    // Level with this relay counts: nothing to replay, and nothing to ask PostgreSQL (a storm of
    // clients that missed nothing would otherwise cost a query each).
    if (comparePositions(after, upTo) <= 0 && this.relay.recent.covers(after)) {
      return this.replayFromMemory(connection, resume);
    }
    this.replays
      .run(() =>
        // A client that left while queued needs nothing read for it.
        connection.isClosed ? Promise.resolve() : this.replay(connection, resume),
      )
      .catch((error) => {
        this.relay.logger.report(
          'outbox.replay-failed',
          `Replay failed (the client was sent a reset): ${(error as Error).message}`,
        );
        this.reset(connection, 'replay-failed', lastEventId);
      });
  }

  /**
   * Synchronous, in the tick of the subscription: everything in (`after`, `upTo`] is in memory,
   * so the replay is written before any live batch can arrive.
   */
  private replayFromMemory(connection: SseConnection, resume: Resume): void {
    const { topics, after, upTo, lastEventId, snapshot } = resume;
    const limit = this.options.sse.replayLimit;
    const unseen = snapshot && ((position: OutboxPosition) => unseenBySnapshot(snapshot, position));
    const events = this.relay.recent.collect(topics, after, upTo, limit, unseen);
    if (!events) return this.reset(connection, 'too-far-behind', lastEventId);
    if (events.length > 0) {
      connection.write(events.length === 1 ? events[0] : Buffer.concat(events));
      this.relay.stats.replayed += events.length;
      this.relay.stats.replayedFromMemory += events.length;
    }
    replayed(connection, lastEventId, events.length, 'memory');
    connection.endReplay(snapshot && unseenFilter(snapshot));
  }

  private async replay(connection: SseConnection, resume: Resume): Promise<void> {
    const { topics, after, upTo, lastEventId, snapshot } = resume;
    const sql = this.store.sql;
    if (await this.expired(after)) return this.reset(connection, 'expired', lastEventId);
    // Past the snapshot's own point, the live events it saw are skipped for as long as any can
    // arrive (until they pass its xmax).
    const live = snapshot && unseenFilter(snapshot);
    if (comparePositions(after, upTo) >= 0) {
      if (snapshot) {
        // Taken on a database further on than this relay: fine, unless it names transactions
        // that do not exist yet (then it would silence the stream until they do).
        this.relay.stats.resumeQueries++;
        const { rows } = await this.postgres.query(sql.snapshotXmax);
        if (snapshot.xmax > BigInt(rows[0].xmax))
          return this.reset(connection, 'unknown', lastEventId);
        return connection.endReplay(live);
      }
      // The client is level with this relay, or ahead of it (it came from an instance whose
      // relay is further on): skip live events it has already seen. An id that names no event
      // would silence the stream forever, so that is a reset instead.
      if (comparePositions(after, upTo) === 0) return connection.endReplay();
      this.relay.stats.resumeQueries++;
      const { rows } = await this.postgres.query(sql.exists, [
        after.txId.toString(),
        after.id.toString(),
      ]);
      if (rows.length === 0) return this.reset(connection, 'unknown', lastEventId);
      return connection.endReplay(seenThrough(after));
    }
    const limit = this.options.sse.replayLimit;
    const unseen = snapshot && ((position: OutboxPosition) => unseenBySnapshot(snapshot, position));
    const fromStream = await this.relay.stream?.replay(topics, after, upTo, limit, unseen);
    if (fromStream === 'too-far-behind') return this.reset(connection, fromStream, lastEventId);
    if (fromStream) {
      if (fromStream.length > 0) {
        connection.write(Buffer.concat(fromStream.map((frame) => Buffer.from(frame))));
        this.relay.stats.replayed += fromStream.length;
        this.relay.stats.replayedFromStream += fromStream.length;
      }
      replayed(connection, lastEventId, fromStream.length, 'stream');
      return connection.endReplay(live);
    }
    this.relay.stats.resumeQueries++;
    const { rows: read } = await this.postgres.query<OutboxRow>(sql.replay, [
      topics,
      after.txId.toString(),
      after.id.toString(),
      upTo.txId.toString(),
      upTo.id.toString(),
      limit + 1,
    ]);
    // A snapshot's read also returns the events it saw (committed beside it): bounded by what
    // ran at once with the page's read, and counted against the limit, so a reset errs early.
    const rows = unseen ? read.filter((row) => unseen(positionOf(row))) : read;
    if (read.length > limit) return this.reset(connection, 'too-far-behind', lastEventId);
    // Retention commits its deletions with the watermark: if it deleted part of this range before
    // the replay read it, the watermark now says so.
    if (await this.expired(after)) return this.reset(connection, 'expired', lastEventId);
    if (rows.length > 0) {
      connection.write(Buffer.concat(rows.map((row) => Buffer.from(this.relay.frame(row).frame))));
      this.relay.stats.replayed += rows.length;
    }
    replayed(connection, lastEventId, rows.length, 'table');
    connection.endReplay(live);
  }

  /** Whether retention has deleted events after `after` (the client missed them for good). */
  private async expired(after: OutboxPosition): Promise<boolean> {
    this.relay.stats.resumeQueries++;
    const { rows } = await this.postgres.query(this.store.sql.deletedThrough);
    return rows.length > 0 && comparePositions(after, positionOf(rows[0])) < 0;
  }

  private reset(connection: SseConnection, reason: OutboxResetReason, lastEventId: string): void {
    this.relay.stats.resets++;
    diagnose(SSE_DIAGNOSTICS.streamReset, () => ({ reason, lastEventId }));
    connection.trace?.event('reset', { [SSE_TRACE_ATTRIBUTES.resetReason]: reason });
    connection.write(resetFrame(reason, lastEventId));
    connection.endReplay();
  }
}

/** One resume: the client's topics and position, and the relay's position when it subscribed. */
interface Resume {
  topics: string[];
  after: OutboxPosition;
  upTo: OutboxPosition;
  lastEventId: string;
  /** Set when the client resumes from a snapshot position (`OutboxService.position()`). */
  snapshot?: SnapshotPosition;
}

/**
 * The live events a page whose state was read in `snapshot` lacks: past its point, those of
 * transactions it did not see. Once a batch starts at the snapshot's xmax, every later event is
 * unseen and the filter is done.
 */
function unseenFilter(snapshot: SnapshotPosition): SseSeenFilter {
  return (batch) => {
    const { events, last } = batch as SseBatch<OutboxPosition>;
    if (!events || !last) return undefined;
    if (events[0].position.txId >= snapshot.xmax) return batch.bytes;
    const fresh = events.filter(
      (event) =>
        comparePositions(event.position, snapshot.after) > 0 &&
        unseenBySnapshot(snapshot, event.position),
    );
    if (fresh.length === 0) return 'seen';
    return { partial: Buffer.concat(fresh.map((event) => event.bytes)) };
  };
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

function replayed(
  connection: SseConnection,
  lastEventId: string,
  events: number,
  from: 'memory' | 'stream' | 'table',
): void {
  diagnose(SSE_DIAGNOSTICS.streamReplay, () => ({ lastEventId, events, from }));
  connection.trace?.event('replay', {
    [SSE_TRACE_ATTRIBUTES.replayedEvents]: events,
    [SSE_TRACE_ATTRIBUTES.replayedFrom]: from,
  });
}
