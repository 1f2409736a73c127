import { Controller } from '@nestjs/common';
import { Client } from 'pg';
import { OutboxRelay, Sse, SseEventError } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { startApp, TestApp } from '../support/http';
import { eventually, PLATFORM_FANOUTS, relayCaughtUp, useTwoInstances } from '../support/outbox';
import { databaseUrl } from '../support/postgres';

@Controller()
class OrdersController {
  @Sse('orders', { topic: 'orders' })
  orders() {}

  @Sse('all', { topic: ['orders', 'other'] })
  all() {}
}

const ids = (client: RecordingEventSource) => client.events.map((e) => e.lastEventId);
// Strings are sent as they are, anything else as JSON (the default serializer).
const payloads = (client: RecordingEventSource) =>
  client.events.map((e) => {
    try {
      return JSON.parse(e.data);
    } catch {
      return e.data;
    }
  });

describe.each(PLATFORM_FANOUTS)('on %s, fanout %s', (platform, fanout) => {
  describe('outbox delivery (real PostgreSQL)', () => {
    const env = useTwoInstances([OrdersController], 'delivery', {}, platform, fanout);
    const connect = (app: TestApp, path = 'orders', headers: Record<string, string> = {}) =>
      env.track(
        new RecordingEventSource(`${app.url}/${path}`, ['order.created', 'reset'], headers),
      );

    it('delivers a committed event once to every subscriber on every instance; a rolled back one never', async () => {
      const subscribers = [connect(env.a), connect(env.a), connect(env.b)];
      await Promise.all(subscribers.map((c) => c.opened()));

      await expect(
        env.outbox.transaction(async (tx) => {
          await env.outbox.publish(tx, {
            topic: 'orders',
            type: 'order.created',
            data: { n: 'rolled back' },
          });
          throw new Error('business failure');
        }),
      ).rejects.toThrow('business failure');
      const [id] = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'orders', type: 'order.created', data: { n: 1 } }),
      );
      expect(id).toMatch(/^\d+-\d+$/);

      await Promise.all(subscribers.map((c) => c.received(1)));
      for (const client of subscribers) {
        expect(client.events).toEqual([
          { type: 'order.created', data: '{"n":1}', lastEventId: id },
        ]);
      }
    });

    it('publishes inside a transaction the caller opened on its own client', async () => {
      const subscriber = connect(env.a);
      await subscriber.opened();
      const client = new Client({ connectionString: databaseUrl() });
      await client.connect();
      try {
        await client.query('BEGIN');
        const [id] = await env.outbox.publish(client, [{ topic: 'orders', data: 'mine' }]);
        await client.query('COMMIT');
        await subscriber.received(1);
        expect(subscriber.events).toEqual([{ type: 'message', data: 'mine', lastEventId: id }]);
      } finally {
        await client.end();
      }
    });

    it('takes its LISTEN connection from postgres.listenerClientFactory when given', async () => {
      // As behind PgBouncer in transaction mode: the pool goes one way, LISTEN straight to the server.
      const applicationName = `listener-factory-${env.schema}`;
      const custom = await startApp(
        [OrdersController],
        env.options({
          postgres: {
            listenerClientFactory: () =>
              new Client({ connectionString: databaseUrl(), application_name: applicationName }),
          },
          // Far apart: delivery within the test must come through that connection's NOTIFY.
          outbox: { migrate: false, pollIntervalMs: 60_000 },
        }),
        { platform },
      );
      try {
        const { rows } = await env.outbox.transaction((tx) =>
          tx.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [
            applicationName,
          ]),
        );
        expect(rows[0].n).toBe(1);
        const subscriber = env.track(
          new RecordingEventSource(`${custom.url}/orders`, ['order.created']),
        );
        await subscriber.opened();
        const [id] = await env.outbox.transaction((tx) =>
          env.outbox.publish(tx, { topic: 'orders', data: 'via factory' }),
        );
        await subscriber.received(1);
        expect(subscriber.events[0]).toMatchObject({ data: 'via factory', lastEventId: id });
        // Its listener (made by the factory) works: it hears the other instance's NOTIFY.
        await eventually(
          () => custom.app.get(OutboxRelay).listenerStats!.notifications > 0,
          'the factory-made listener to hear a NOTIFY',
        );
      } finally {
        await custom.close();
      }
    });

    it('delivers in commit-safe order: an id taken before a later one commits after it is never skipped', async () => {
      // Events of earlier tests (committed through other instances) must not arrive live here.
      await Promise.all([relayCaughtUp(env.a), relayCaughtUp(env.b)]);
      const onA = connect(env.a);
      const onB = connect(env.b);
      await Promise.all([onA.opened(), onB.opened()]);
      const t1 = new Client({ connectionString: databaseUrl() });
      const t2 = new Client({ connectionString: databaseUrl() });
      await Promise.all([t1.connect(), t2.connect()]);
      try {
        await t1.query('BEGIN');
        const [first] = await env.outbox.publish(t1, { topic: 'orders', data: 't1' });
        await t2.query('BEGIN');
        const [second] = await env.outbox.publish(t2, { topic: 'orders', data: 't2' });
        await t2.query('COMMIT');
        // T2 is committed but T1 can still commit an earlier position: nothing may be read past T1.
        env.a.app.get(OutboxRelay).wake();
        await t1.query('COMMIT');

        await Promise.all([onA.received(2), onB.received(2)]);
        expect(ids(onA)).toEqual([first, second]);
        expect(ids(onB)).toEqual([first, second]);
        expect(payloads(onA)).toEqual(['t1', 't2']);

        // Resuming from either id misses nothing.
        const fromFirst = connect(env.b, 'orders', { 'last-event-id': first });
        await fromFirst.received(1);
        expect(ids(fromFirst)).toEqual([second]);
        const fromSecond = connect(env.a, 'orders', { 'last-event-id': second });
        await fromSecond.opened();
        const [third] = await env.outbox.transaction((tx) =>
          env.outbox.publish(tx, { topic: 'orders', data: 't3' }),
        );
        await fromSecond.received(1);
        expect(ids(fromSecond)).toEqual([third]);
      } finally {
        await Promise.all([t1.end(), t2.end()]);
      }
    });

    it('stores one event for a dedupe key published in two transactions', async () => {
      const subscriber = connect(env.a);
      await subscriber.opened();
      const first = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'orders', data: 1, key: 'ord-1' }),
      );
      const again = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'orders', data: 2, key: 'ord-1' }),
      );
      const sameKeyOtherTopic = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'other', data: 3, key: 'ord-1' }),
      );
      expect(first).toHaveLength(1);
      expect(again).toEqual([]);
      expect(sameKeyOtherTopic).toHaveLength(1);
      const marker = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'orders', data: 'marker' }),
      );
      await subscriber.until(() => ids(subscriber).includes(marker[0]), 'the marker');
      expect(payloads(subscriber)).toEqual([1, 'marker']);
    });

    it('carries payloads far larger than NOTIFY allows (8000 bytes)', async () => {
      const subscriber = connect(env.a);
      await subscriber.opened();
      const big = {
        text: 'é'.repeat(50_000),
        nested: { list: Array.from({ length: 1000 }, (_, i) => i) },
      };
      await env.outbox.transaction((tx) => env.outbox.publish(tx, { topic: 'orders', data: big }));
      await subscriber.received(1);
      expect(payloads(subscriber)[0]).toEqual(big);
    });

    it('rejects an event that cannot be framed before writing anything', async () => {
      const subscriber = connect(env.a);
      await subscriber.opened();
      await expect(
        env.outbox.transaction((tx) =>
          env.outbox.publish(tx, [
            { topic: 'orders', data: 'ok' },
            { topic: 'orders', type: 'a\nevent: forged', data: 'x' },
          ]),
        ),
      ).rejects.toThrow(SseEventError);
      await expect(
        env.outbox.transaction((tx) => env.outbox.publish(tx, { topic: '', data: 1 })),
      ).rejects.toThrow(SseEventError);
      await expect(
        env.outbox.transaction((tx) => env.outbox.publish(tx, { topic: 'x', data: undefined })),
      ).rejects.toThrow(/JSON-serializable/);
      const [marker] = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'orders', data: 'marker' }),
      );
      await subscriber.received(1);
      expect(ids(subscriber)).toEqual([marker]);
    });

    it('refuses what PostgreSQL would refuse or change (NUL, lone surrogates) before the statement: the transaction goes on', async () => {
      const subscriber = connect(env.a);
      await subscriber.opened();
      const refused = [
        { topic: 'orders', data: { note: 'nul \u0000 inside' } },
        { topic: 'orders', data: ['lone \ud800 high'] },
        { topic: 'orders', data: { ['key \udc00']: 1 } },
        { topic: 'orders\ud800', data: 1 },
        { topic: 'orders', key: 'k\u0000', data: 1 },
        {
          topic: 'orders',
          data: (() => {
            const loop: Record<string, unknown> = {};
            loop.self = loop;
            return loop;
          })(),
        },
      ];
      const stored = await env.outbox.transaction(async (tx) => {
        for (const event of refused)
          await expect(env.outbox.publish(tx, event)).rejects.toThrow(SseEventError);
        // Nothing failed inside PostgreSQL: the same transaction still publishes and commits.
        // A backslash before "u0000" as text, and a surrogate pair (an emoji), are fine.
        return env.outbox.publish(tx, {
          topic: 'orders',
          data: { text: 'a \\u0000 b', emoji: '😀' },
        });
      });
      await subscriber.received(1);
      expect(ids(subscriber)).toEqual(stored);
      expect(payloads(subscriber)).toEqual([{ text: 'a \\u0000 b', emoji: '😀' }]);
    });

    it('sends each topic stream only its topics, in one order across topics', async () => {
      const both = connect(env.a, 'all');
      const ordersOnly = connect(env.a, 'orders');
      await Promise.all([both.opened(), ordersOnly.opened()]);
      const stored = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, [
          { topic: 'other', data: 'o1' },
          { topic: 'orders', data: 'r1' },
          { topic: 'other', data: 'o2' },
        ]),
      );
      await Promise.all([both.received(3), ordersOnly.received(1)]);
      expect(ids(both)).toEqual(stored);
      expect(payloads(ordersOnly)).toEqual(['r1']);
    });
  });
});
