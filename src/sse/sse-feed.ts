import { Injectable } from '@nestjs/common';
import type { SseConnection } from './sse-connection';
import { resetFrame } from './sse-encoder';
import { SseHub } from './sse-hub';

/**
 * Where topic streams get their events from: subscribes an open stream to its topics and, when
 * it asks to resume (`Last-Event-ID`), replays what it missed or tells it to reset. The stream
 * engine knows only this interface; the hub alone and the PostgreSQL outbox are its
 * implementations (a Redis Streams or broker-backed feed would be others).
 */
export interface SseFeed {
  attach(connection: SseConnection, topics: string[], lastEventId: string | undefined): void;
}

/** Injection token of the module's feed: the outbox relay when `postgres` is configured, else {@link HubFeed}. */
export const SSE_FEED = Symbol('SSE_FEED');

/**
 * The in-process hub alone: live events only. It keeps no history, so a client that asks to
 * resume has missed events nobody can replay: it is told to resync (`reset`) and continues live.
 */
@Injectable()
export class HubFeed implements SseFeed {
  constructor(private readonly hub: SseHub) {}

  attach(connection: SseConnection, topics: string[], lastEventId: string | undefined): void {
    if (lastEventId !== undefined) connection.write(resetFrame('replay-unavailable', lastEventId));
    connection.onTeardown(this.hub.subscribe(topics, connection));
  }
}
