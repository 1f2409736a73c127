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
  positionOf,
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
    const upTo = position; // captured in the same tick as the subscription below
    connection.onTeardown(this.hub.subscribe(topics, connection));
    const after = parseEventId(lastEventId);
    if (!after) return this.reset(connection, 'malformed', lastEventId);
    if (comparePositions(after, upTo) < 0 && this.relay.recent.covers(after)) {
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
  private replayFromMemory(
    connection: SseConnection,
    topics: string[],
    after: OutboxPosition,
    upTo: OutboxPosition,
    lastEventId: string,
  ): void {
    const events = this.relay.recent.collect(topics, after, upTo, this.options.sse.replayLimit);
    if (!events) return this.reset(connection, 'too-far-behind', lastEventId);
    if (events.length > 0) {
      connection.write(events.length === 1 ? events[0] : Buffer.concat(events));
      this.relay.stats.replayed += events.length;
      this.relay.stats.replayedFromMemory += events.length;
    }
    replayed(connection, lastEventId, events.length, 'memory');
    connection.endReplay();
  }

  private async replay(
    connection: SseConnection,
    topics: string[],
    after: OutboxPosition,
    upTo: OutboxPosition,
    lastEventId: string,
  ): Promise<void> {
    const sql = this.store.sql;
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
    const fromStream = await this.relay.stream?.replay(topics, after, upTo, limit);
    if (fromStream === 'too-far-behind') return this.reset(connection, fromStream, lastEventId);
    if (fromStream) {
      if (fromStream.length > 0) {
        connection.write(Buffer.concat(fromStream.map((frame) => Buffer.from(frame))));
        this.relay.stats.replayed += fromStream.length;
        this.relay.stats.replayedFromStream += fromStream.length;
      }
      replayed(connection, lastEventId, fromStream.length, 'stream');
      return connection.endReplay();
    }
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
      connection.write(Buffer.concat(rows.map((row) => Buffer.from(this.relay.frame(row).frame))));
      this.relay.stats.replayed += rows.length;
    }
    replayed(connection, lastEventId, rows.length, 'table');
    connection.endReplay();
  }

  /** Whether retention has deleted events after `after` (the client missed them for good). */
  private async expired(after: OutboxPosition): Promise<boolean> {
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
