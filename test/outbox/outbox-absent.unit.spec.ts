import { Controller } from '@nestjs/common';
import { OutboxRelay, OutboxService, Sse } from '../../src';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { SSE_FEED, HubFeed } from '../../src/sse/sse-feed';
import { startApp, TestApp } from '../support/http';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

/**
 * Without `postgres` the outbox's providers exist (forRootAsync cannot know its options when Nest
 * builds the module graph) but do nothing: no connection, no timer, the hub feeds the streams,
 * and using the outbox fails at once, saying what is missing.
 */
describe('without postgres: the outbox is inert', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startApp([FeedController], { sse: { heartbeatMs: 60_000 } });
  });
  afterAll(() => t?.close());

  it('opens no connection, follows nothing, and feeds topic streams from the hub', () => {
    expect(t.app.get(PostgresConnection).enabled).toBe(false);
    expect(t.app.get(PostgresConnection).pool).toBeUndefined();
    const relay = t.app.get(OutboxRelay);
    expect(relay.enabled).toBe(false);
    expect(relay.listenerStats).toBeUndefined();
    expect(relay.leader).toBeUndefined();
    expect(t.app.get(SSE_FEED)).toBeInstanceOf(HubFeed);
  });

  it('fails a transaction at once with what to configure', async () => {
    const outbox = t.app.get(OutboxService);
    await expect(outbox.transaction(async () => 1)).rejects.toThrow(
      /the outbox needs the `postgres` option/,
    );
  });
});
