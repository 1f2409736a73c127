import { Controller } from '@nestjs/common';
import { OutboxRelay, OutboxService, Sse } from '../../src';
import { OutboxRetention } from '../../src/outbox/store/outbox-retention';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { RecordingEventSource } from '../support/event-source';
import { startApp, TestApp } from '../support/http';
import {
  dropOutbox,
  outboxOptions,
  PLATFORM_FANOUTS,
  relayCaughtUp,
  useTwoInstances,
} from '../support/outbox';
import { databaseUrl, uniqueSchema, withClient } from '../support/postgres';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const ids = (client: RecordingEventSource) =>
  client.events.filter((e) => e.type !== 'reset').map((e) => e.lastEventId);

async function publishMany(
  outbox: OutboxService,
  count: number,
  perTransaction = 100,
  label = 'e',
): Promise<string[]> {
  const stored: string[] = [];
  for (let i = 0; i < count; i += perTransaction) {
    const events = Array.from({ length: Math.min(perTransaction, count - i) }, (_, k) => ({
      topic: 'feed',
      data: `${label}${i + k}`,
    }));
    stored.push(...(await outbox.transaction((tx) => outbox.publish(tx, events))));
  }
  return stored;
}

describe.each(PLATFORM_FANOUTS)('on %s, fanout %s', (platform, fanout) => {
  describe('resuming topic streams from the outbox', () => {
    const env = useTwoInstances(
      [FeedController],
      'resume',
      { sse: { replayLimit: 10_000 } },
      platform,
      fanout,
    );
    const connect = (app: TestApp, lastEventId?: string) =>
      env.track(
        new RecordingEventSource(
          `${app.url}/feed`,
          ['reset'],
          lastEventId === undefined ? {} : { 'last-event-id': lastEventId },
        ),
      );

    it('resumes on instance B with an id received from instance A: exactly the rest', async () => {
      const onA = connect(env.a);
      await onA.opened();
      const stored = await publishMany(env.outbox, 30, 10);
      await onA.received(30);
      expect(ids(onA)).toEqual(stored);
      onA.close();

      const resumed = connect(env.b, stored[11]);
      await resumed.received(18);
      expect(ids(resumed)).toEqual(stored.slice(12));
      const later = await publishMany(env.outbox, 5, 5);
      await resumed.received(23);
      expect(ids(resumed)).toEqual([...stored.slice(12), ...later]);
    });

    it('accepts ?lastEventId= from clients that cannot set headers', async () => {
      const stored = await publishMany(env.outbox, 3, 3);
      const client = new RecordingEventSource(
        `${env.a.url}/feed?lastEventId=${encodeURIComponent(stored[0])}`,
      );
      env.track(client);
      await client.received(2);
      expect(ids(client)).toEqual(stored.slice(1));
    });

    it('replays 5,000 events while more are published, with no gap and no duplicate at the seam', async () => {
      // The observer proves the relay has passed the history, so it must come from the replay.
      const observer = connect(env.a);
      await observer.opened();
      const [start] = await publishMany(env.outbox, 1, 1, 'start');
      const history = await publishMany(env.outbox, 5_000, 500, 'h');
      await observer.received(5_001);
      const relay = env.a.app.get(OutboxRelay);
      const replayedBefore = relay.stats.replayed;
      const resumed = connect(env.a, start);
      const during = publishMany(env.outbox, 500, 10, 'live');
      const live = await during;
      await resumed.received(5_500);
      const received = ids(resumed);
      expect(received).toHaveLength(5_500);
      expect(new Set(received).size).toBe(5_500);
      expect(received).toEqual([...history, ...live]);
      expect(resumed.events.some((e) => e.type === 'reset')).toBe(false);
      // Live events the relay handed over before the stream subscribed are replayed too.
      expect(relay.stats.replayed - replayedBefore).toBeGreaterThanOrEqual(5_000);
    });

    it.each([
      ['malformed', 'not-an-id'],
      ['malformed', '12-'],
      // Above PostgreSQL's bigint (the id column): refused before any query.
      ['malformed', '1-9223372036854775808'],
      ['unknown', '999999999999-1'],
    ])(
      'answers a %s Last-Event-ID (%s) with one reset, then continues live',
      async (reason, lastEventId) => {
        const client = connect(env.a, lastEventId);
        await client.received(1);
        expect(client.events[0]).toEqual({
          type: 'reset',
          data: JSON.stringify({ reason, lastEventId }),
          lastEventId: '',
        });
        const [next] = await publishMany(env.outbox, 1);
        await client.received(2);
        expect(client.events[1].lastEventId).toBe(next);
      },
    );

    it('answers a client further behind than replayLimit with a reset, then live', async () => {
      const limited = await startApp(
        [FeedController],
        env.options({ sse: { replayLimit: 10 }, outbox: { migrate: false } }),
        { platform },
      );
      try {
        // Once this observer has the 20 events, the relay has passed them: they are history.
        const observer = new RecordingEventSource(`${limited.url}/feed`);
        env.track(observer);
        await observer.opened();
        const stored = await publishMany(env.outbox, 20, 20);
        await observer.received(20);
        const client = new RecordingEventSource(`${limited.url}/feed`, ['reset'], {
          'last-event-id': stored[0],
        });
        env.track(client);
        await client.received(1);
        expect(client.events[0].type).toBe('reset');
        expect(JSON.parse(client.events[0].data)).toEqual({
          reason: 'too-far-behind',
          lastEventId: stored[0],
        });
        const [next] = await publishMany(env.outbox, 1);
        await client.received(2);
        expect(client.events[1].lastEventId).toBe(next);
      } finally {
        await limited.close();
      }
    });

    it('replays to 40 clients resuming at once through a pool of 2, without exhausting it', async () => {
      // A reconnect storm after a deploy. With every replay taking pooled connections at once,
      // the pool would be exhausted: checkouts would queue (the live path's among them) and,
      // past connectionTimeoutMs, end as `replay-failed` resets. No cache of recent events, so
      // the replays read the table (or, with fanout 'redis', the stream).
      const small = await startApp(
        [FeedController],
        env.options({
          sse: { replayLimit: 10_000 },
          postgres: { pool: { max: 2, connectionTimeoutMs: 5_000 } },
          outbox: { migrate: false, replayCacheBytes: 0 },
        }),
        { platform },
      );
      // Every checkout that finds the pool exhausted, and so has to queue.
      const pool = small.app.get(PostgresConnection).requirePool();
      let queued = 0;
      const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
      (pool as unknown as { connect: typeof connect }).connect = (...args: unknown[]) => {
        if (pool.idleCount === 0 && pool.totalCount >= 2) queued++;
        return connect(...args);
      };
      try {
        const observer = env.track(new RecordingEventSource(`${small.url}/feed`));
        await observer.opened();
        const stored = await publishMany(env.outbox, 1_000, 500, 'storm');
        await observer.received(1_000);
        const clients = Array.from({ length: 40 }, () =>
          env.track(
            new RecordingEventSource(`${small.url}/feed`, ['reset'], {
              'last-event-id': stored[0],
            }),
          ),
        );
        // Each ends with every event, or with a reset (which fails below without waiting longer).
        await Promise.all(
          clients.map((c) =>
            c.until(
              () => ids(c).length >= 999 || c.events.some((e) => e.type === 'reset'),
              'its replay or a reset',
            ),
          ),
        );
        expect(clients.flatMap((c) => c.events).filter((e) => e.type === 'reset')).toEqual([]);
        for (const client of clients) expect(ids(client)).toEqual(stored.slice(1));
        expect(queued).toBe(0);
      } finally {
        await small.close();
      }
    });

    it('skips what a client already saw when it resumes on an instance whose relay is behind', async () => {
      // This instance is never notified (it listens on another channel) and polls rarely: its
      // relay stays behind until it is woken by hand. It reads 4 events at a time, so the client
      // (which has the first 7) meets a batch it has seen whole, one it has seen in part, then
      // new ones.
      const behind = await startApp(
        [FeedController],
        env.options({
          outbox: {
            migrate: false,
            channel: 'nobody_notifies',
            pollIntervalMs: 3_600_000,
            batchSize: 4,
          },
        }),
        { platform },
      );
      try {
        const stored = await publishMany(env.outbox, 10, 10);
        const client = new RecordingEventSource(`${behind.url}/feed`, ['reset'], {
          'last-event-id': stored[6],
        });
        env.track(client);
        await client.opened();
        // Woken by hand until it has read everything: one wake is not enough when another
        // suite's open transaction holds the commit-safe horizon back at that moment.
        await relayCaughtUp(behind);
        await client.received(3);
        expect(ids(client)).toEqual(stored.slice(7));
        expect(client.events.some((e) => e.type === 'reset')).toBe(false);
      } finally {
        await behind.close();
      }
    });
  });

  describe('outbox retention', () => {
    const schema = uniqueSchema('retention');
    let t: TestApp;
    afterAll(async () => {
      await t?.close();
      await dropOutbox(schema);
    });

    it('deletes expired events oldest first and resets clients that resume from before them', async () => {
      t = await startApp(
        [FeedController],
        // No cache of recent events: resumes read the table, where retention deleted the old ones.
        outboxOptions(
          schema,
          {
            outbox: { retentionMs: 60_000, retentionIntervalMs: 3_600_000, replayCacheBytes: 0 },
          },
          fanout,
        ),
        { platform },
      );
      const outbox = t.app.get(OutboxService);
      const old = await publishMany(outbox, 5, 5, 'old');
      const kept = await publishMany(outbox, 3, 3, 'kept');
      // Age the first five by an hour, as if they had been written then.
      await withClient(databaseUrl(), (client) =>
        client.query(
          `UPDATE "${schema}".sse_outbox SET created_at = now() - interval '1 hour' WHERE payload #>> '{}' LIKE 'old%'`,
        ),
      );
      // Retention deletes settled events only: wait out a transaction another suite may hold
      // open on the shared server.
      await relayCaughtUp(t);
      expect(await t.app.get(OutboxRetention).runOnce()).toBe(5);
      expect(await t.app.get(OutboxRetention).runOnce()).toBe(0);

      const stale = new RecordingEventSource(`${t.url}/feed`, ['reset'], {
        'last-event-id': old[1],
      });
      const fromLastDeleted = new RecordingEventSource(`${t.url}/feed`, ['reset'], {
        'last-event-id': old[4],
      });
      try {
        await stale.received(1);
        expect(stale.events[0].type).toBe('reset');
        expect(JSON.parse(stale.events[0].data).reason).toBe('expired');
        // The client saw the last deleted event: it missed nothing and gets the rest.
        await fromLastDeleted.received(3);
        expect(ids(fromLastDeleted)).toEqual(kept);
      } finally {
        stale.close();
        fromLastDeleted.close();
      }
    });
  });

  describe('resuming from the cache of recent events', () => {
    const schema = uniqueSchema('recent');
    let t: TestApp;
    afterAll(async () => {
      await t?.close();
      await dropOutbox(schema);
    });

    it('serves a recent resume from memory and an older one from the table, both exactly the rest', async () => {
      // Room for a few dozen of these events (~80 bytes framed + 200 counted per entry), not for
      // all 200.
      t = await startApp(
        [FeedController],
        outboxOptions(schema, { outbox: { replayCacheBytes: 10_000 } }, fanout),
        { platform },
      );
      const outbox = t.app.get(OutboxService);
      const relay = t.app.get(OutboxRelay);
      const live = new RecordingEventSource(`${t.url}/feed`, ['reset']);
      try {
        await live.opened();
        const stored = await publishMany(outbox, 200, 20);
        await live.received(200);

        const fromMemory = relay.stats.replayedFromMemory;
        const recent = new RecordingEventSource(`${t.url}/feed`, ['reset'], {
          'last-event-id': stored[189],
        });
        await recent.received(10);
        expect(ids(recent)).toEqual(stored.slice(190));
        expect(relay.stats.replayedFromMemory - fromMemory).toBe(10);
        recent.close();

        const replayed = relay.stats.replayed;
        const older = new RecordingEventSource(`${t.url}/feed`, ['reset'], {
          'last-event-id': stored[9],
        });
        await older.received(190);
        expect(ids(older)).toEqual(stored.slice(10));
        expect(relay.stats.replayed - replayed).toBe(190);
        expect(relay.stats.replayedFromMemory - fromMemory).toBe(10);
        // With the Redis Stream, what memory lacks comes from it rather than from the table.
        expect(relay.stats.replayedFromStream).toBe(fanout === 'redis' ? 190 : 0);
        // And live after the seam, once.
        const later = await publishMany(outbox, 3, 3, 'later');
        await older.received(193);
        expect(ids(older)).toEqual([...stored.slice(10), ...later]);
        older.close();
      } finally {
        live.close();
      }
    });
  });
});
