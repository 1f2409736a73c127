import { Injectable } from '@nestjs/common';
import type { SseConnection } from '../sse/sse-connection';
import type { SseFeed } from '../sse/sse-feed';
import { OutboxRelay } from './outbox-relay';

/**
 * Topic streams fed by the outbox: the relay's live events, and resumes from its cache or the
 * table. A provider of its own rather than the relay under a second token, because Nest runs the
 * lifecycle hooks of every provider's value: the relay would start twice.
 */
@Injectable()
export class OutboxFeed implements SseFeed {
  constructor(private readonly relay: OutboxRelay) {}

  get enabled(): boolean {
    return this.relay.enabled;
  }

  attach(connection: SseConnection, topics: string[], lastEventId: string | undefined): void {
    this.relay.attach(connection, topics, lastEventId);
  }
}
