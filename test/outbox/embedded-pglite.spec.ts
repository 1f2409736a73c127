import { Controller } from '@nestjs/common';
import { PGlite } from '@electric-sql/pglite';
import { OutboxRelay, OutboxService, SseModuleOptions } from '../../src';
import { openPglite, pglitePostgres } from '../../src/pglite';
import { Sse } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { startApp, TestApp } from '../support/http';
import { eventually } from '../support/outbox';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const options = (db: PGlite): SseModuleOptions => ({
  sse: { heartbeatMs: 60_000 },
  postgres: pglitePostgres(db),
  // Far apart, so delivery within a test proves the NOTIFY path.
  outbox: { pollIntervalMs: 60_000 },
});

/**
 * The embedded adapter runs the production outbox code (migrations, commit-safe reads,
 * LISTEN/NOTIFY wake-ups, replay) on PGlite, a real PostgreSQL in WASM, in this process.
 */
describe('outbox on embedded PostgreSQL (PGlite)', () => {
  let db: PGlite;
  let t: TestApp;
  const clients: RecordingEventSource[] = [];
  const connect = (headers: Record<string, string> = {}) => {
    const client = new RecordingEventSource(`${t.url}/feed`, ['reset'], headers);
    clients.push(client);
    return client;
  };

  beforeAll(async () => {
    db = await PGlite.create();
    t = await startApp([FeedController], options(db));
  });
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  afterAll(async () => {
    await t?.close();
    await db?.close();
  });

  it('migrates the schema and delivers a committed event through NOTIFY; a rolled back one never', async () => {
    const client = connect();
    await client.opened();
    const outbox = t.app.get(OutboxService);
    await expect(
      outbox.transaction(async (tx) => {
        await outbox.publish(tx, { topic: 'feed', data: 'rolled back' });
        throw new Error('business failure');
      }),
    ).rejects.toThrow('business failure');
    const [id] = await outbox.transaction((tx) =>
      outbox.publish(tx, [
        { topic: 'feed', data: { n: 1 } },
        { topic: 'feed', data: { n: 2 } },
      ]),
    );
    expect(id).toMatch(/^\d+-\d+$/);
    await client.received(2);
    expect(client.events.map((e) => e.data)).toEqual(['{"n":1}', '{"n":2}']);
    expect(client.events[0].lastEventId).toBe(id);
    // The wake-up after the commit reaches the LISTEN session too (PGlite's NOTIFY works).
    await eventually(
      () => t.app.get(OutboxRelay).listenerStats!.notifications > 0,
      'the NOTIFY to arrive',
    );
  });

  it('replays what a client missed after Last-Event-ID, then goes live without a gap', async () => {
    const outbox = t.app.get(OutboxService);
    const ids = await outbox.transaction((tx) =>
      outbox.publish(
        tx,
        ['a', 'b', 'c'].map((data) => ({ topic: 'feed', data })),
      ),
    );
    const client = connect({ 'Last-Event-ID': ids[0] });
    await client.received(2);
    const [live] = await outbox.transaction((tx) =>
      outbox.publish(tx, { topic: 'feed', data: 'd' }),
    );
    await client.received(3);
    expect(client.events.map((e) => [e.data, e.lastEventId])).toEqual([
      ['b', ids[1]],
      ['c', ids[2]],
      ['d', live],
    ]);
  });

  it('a transaction holds the one session: concurrent transactions queue and all commit', async () => {
    const outbox = t.app.get(OutboxService);
    const client = connect();
    await client.opened();
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) =>
        outbox.transaction(async (tx) => {
          await tx.query('SELECT pg_sleep(0.001)');
          return outbox.publish(tx, { topic: 'feed', data: `tx${i}` });
        }),
      ),
    );
    await client.received(20);
    expect(client.events.map((e) => e.lastEventId).sort()).toEqual(results.flat().sort());
  });

  it('commits the exactly-once record of an @Idempotent() request with its effects, and returns it to a retry', async () => {
    const outbox = t.app.get(OutboxService);
    const { idempotentEffects } = await import('../../src/idempotency/idempotent-effects');
    const request = () => ({
      scope: '',
      key: "k-'pglite'",
      fingerprint: 'f',
      ttlMs: 60_000,
      transactions: 0,
    });
    let runs = 0;
    const place = () =>
      outbox.transaction(async (tx) => {
        runs++;
        const [id] = await outbox.publish(tx, { topic: 'feed', data: 'once' });
        return { id };
      });
    const first = await idempotentEffects.run(request(), place);
    const retry = await idempotentEffects.run(request(), place);
    expect(retry).toEqual(first);
    expect(runs).toBe(1);
  });

  it('returns int8 and numeric as strings, like pg', async () => {
    const { rows } = await t.app
      .get(OutboxService)
      .transaction((tx) =>
        tx.query('SELECT 9007199254740993::int8 AS big, 1.50::numeric AS n', []),
      );
    expect(rows[0]).toEqual({ big: '9007199254740993', n: '1.50' });
  });

  it('answers /health with the postgres and listener indicators up', async () => {
    const response = await fetch(`${t.url}/health`);
    const body = (await response.json()) as { status: string; info: Record<string, unknown> };
    expect(response.status).toBe(200);
    expect(Object.keys(body.info)).toEqual(
      expect.arrayContaining(['postgres', 'outbox_listener', 'outbox_lag']),
    );
  });
});

describe('nestjs-durable-sse/pglite: openPglite()', () => {
  it('creates an in-memory PGlite and the options that run the outbox on it', async () => {
    const { db, postgres } = await openPglite();
    const t = await startApp([FeedController], {
      sse: { heartbeatMs: 60_000 },
      postgres,
      outbox: { pollIntervalMs: 60_000 },
    });
    const client = new RecordingEventSource(`${t.url}/feed`);
    try {
      await client.opened();
      const outbox = t.app.get(OutboxService);
      const [id] = await outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: 1 }));
      await client.received(1);
      expect(client.events[0].lastEventId).toBe(id);
    } finally {
      client.close();
      await t.close();
      await db.close();
    }
  });

  it('says what to install when @electric-sql/pglite is missing', async () => {
    let pglite!: typeof import('../../src/pglite');
    jest.isolateModules(() => {
      jest.doMock('@electric-sql/pglite', () => {
        throw Object.assign(new Error("Cannot find module '@electric-sql/pglite'"), {
          code: 'MODULE_NOT_FOUND',
        });
      });
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      pglite = require('../../src/pglite');
    });
    await expect(pglite.openPglite()).rejects.toThrow(
      /needs @electric-sql\/pglite, an optional peer dependency that is not installed\. Run `npm install @electric-sql\/pglite`/,
    );
    jest.dontMock('@electric-sql/pglite');
  });
});
