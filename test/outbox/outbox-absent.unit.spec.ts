import { Controller } from '@nestjs/common';
import { Pool } from 'pg';
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
      /outbox\.transaction\(\) needs the `postgres` option/,
    );
  });

  it("refuses the caller's transaction too, before touching it: the events would land in whatever outbox table that database has", async () => {
    const outbox = t.app.get(OutboxService);
    // Pools connect lazily: one that is never queried opens no connection (none is listening).
    const pool = new Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none', max: 1 });
    try {
      await expect(outbox.transaction(pool, async () => 1)).rejects.toThrow(
        /outbox\.transaction\(\) needs the `postgres` option of SseModule/,
      );
      await expect(outbox.publish(pool, { topic: 'feed', data: 1 })).rejects.toThrow(
        /outbox\.publish\(\) needs the `postgres` option of SseModule.*another application's/s,
      );
      expect(pool.totalCount).toBe(0);
    } finally {
      await pool.end();
    }
  });
});
