// docs/guarantees.md: PostgreSQL restarted and crashed (-m immediate) while events are being published.
// The oracle is the table after recovery: a COMMIT in flight when the server went away has an
// unknown outcome, so what counts is what PostgreSQL kept, and every row of it must reach the
// client once, in commit-safe order. The server is durable (fsync, synchronous_commit on): a
// fast test server may lose acknowledged commits in a crash, which is the server's doing.
import { Controller } from '@nestjs/common';
import { OutboxService, Sse } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { startApp } from '../support/http';
import { withClient } from '../support/postgres';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivatePostgres } = require('../support/services');

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

interface PrivatePostgres {
  url: string;
  start(): Promise<void>;
  kill(signal: NodeJS.Signals): Promise<void>;
  destroy(): Promise<void>;
}

describe('chaos: PostgreSQL restarted and crashed under publishing (private, durable server)', () => {
  let pg: PrivatePostgres;
  beforeAll(async () => {
    pg = await startPrivatePostgres({ durable: true });
  }, 60_000);
  afterAll(() => pg?.destroy());

  it.each([
    ['restarted (fast shutdown)', 'SIGINT', 'restarted'],
    ['crashed (-m immediate)', 'SIGQUIT', 'crashed'],
  ] as const)(
    '%s: every committed event reaches the client once, in order, and nothing crashes',
    async (_what, signal, table) => {
      const t = await startApp([FeedController], {
        sse: { heartbeatMs: 60_000, replayLimit: 100_000 },
        postgres: {
          connectionString: pg.url,
          pool: { max: 4, connectionTimeoutMs: 1_000 },
          queryTimeoutMs: 2_000,
        },
        outbox: { table, pollIntervalMs: 200, listenerCheckMs: 500 },
        health: { path: false },
      });
      const client = new RecordingEventSource(`${t.url}/feed`);
      let publishing = true;
      let failures = 0;
      try {
        await client.opened();
        const outbox = t.app.get(OutboxService);
        const publisher = (async () => {
          for (let n = 0; publishing; n++) {
            const events = Array.from({ length: 10 }, (_, i) => ({
              topic: 'feed',
              data: n * 10 + i,
            }));
            try {
              await outbox.transaction((tx) => outbox.publish(tx, events));
            } catch {
              failures++;
              // Paces the retries while the server is away (not a synchronisation).
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          }
        })();
        await client.received(200);
        await pg.kill(signal);
        await pg.start();
        const before = client.events.length;
        // Publishing goes on after recovery and reaches the client.
        await client.received(before + 200);
        publishing = false;
        await publisher;

        const { rows } = await withClient(pg.url, (admin) =>
          admin.query(
            // Qualified: a bare ORDER BY id would sort the text alias.
            `SELECT o.tx_id::text || '-' || o.id::text AS id FROM "public"."${table}" o ORDER BY o.tx_id, o.id`,
          ),
        );
        await client.received(rows.length);
        expect(client.events.map((e) => e.lastEventId)).toEqual(rows.map((r) => r.id));
        expect(failures).toBeGreaterThan(0); // the outage really hit the publisher
        expect(client.log.filter((entry) => entry === 'open')).toHaveLength(1);
      } finally {
        publishing = false;
        client.close();
        await t.close();
      }
    },
    60_000,
  );
});
