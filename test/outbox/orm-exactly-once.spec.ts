import { OutboxService } from '../../src';
import { databaseUrl, withClient } from '../support/postgres';
import { failOnce, held, holdItems, KITS, schema, useOrmApp } from './orm/orm-kits';

/**
 * docs/outbox.md, "In your ORM's transaction": the exactly-once row of an @Idempotent() request
 * rides the transaction of the library the team already uses (DESIGN §11): a retry that Redis
 * forgot returns the committed result, and a failed request leaves no claim behind.
 */
describe('outbox.transaction(source, fn) with the libraries teams use: exactly-once', () => {
  const env = useOrmApp();
  const { counts, post, redisForgets } = env;
  let outbox: OutboxService;
  beforeAll(() => ({ outbox } = env));

  describe.each(Object.keys(KITS))('%s', (name) => {
    it('runs an @Idempotent() request once when Redis forgot it: the retry gets the first body', async () => {
      const first = await post(name, 'pen', `${name}-forgot`);
      expect(first.status).toBe(201);
      const firstBody = await first.text();
      await redisForgets();
      const returned = outbox.stats.recordedOutcomesReturned;

      const retry = await post(name, 'pen', `${name}-forgot`);
      expect(retry.status).toBe(201);
      expect(await retry.text()).toBe(firstBody);
      expect(outbox.stats.recordedOutcomesReturned).toBe(returned + 1);
      expect(await counts()).toEqual({ orders: 1, events: 1 });
    });

    it('lets only one of two concurrent executions commit: the later one rolls back and answers with the first', async () => {
      const item = `twice-${name}`;
      holdItems.add(item);
      try {
        const first = post(name, item, `${name}-twice`);
        const releaseFirst = await held.next(); // order and event written, not committed
        await redisForgets(); // so Redis lets a second execution in
        const second = post(name, item, `${name}-twice`);
        const releaseSecond = await held.next();
        releaseSecond();
        const b = await second; // commits first
        releaseFirst(); // meets the second's record before its commit: rolled back
        const a = await first;
        expect([a.status, b.status]).toEqual([201, 201]);
        expect(await a.text()).toBe(await b.text());
        expect(await counts()).toEqual({ orders: 1, events: 1 });
      } finally {
        holdItems.delete(item);
      }
    });

    it('leaves no record behind when the request fails, so its retry runs', async () => {
      // Where the transaction is the caller's, its owner commits its other work anyway: no
      // record may commit with it, or the key would be held by a result never recorded.
      const effects = () =>
        withClient(databaseUrl(), async (client) => {
          const { rows } = await client.query(
            `SELECT count(*)::int AS n FROM "${schema}".sse_outbox_effects`,
          );
          return rows[0].n;
        });
      const item = `flaky-${name}`;
      failOnce.add(item);
      expect((await post(name, item, `${name}-failed`)).status).toBe(500);
      expect(await counts()).toEqual({ orders: 0, events: 0 });
      expect(await effects()).toBe(0);

      // The same request again, with the same key: it runs, and this time commits.
      const retry = await post(name, item, `${name}-failed`);
      expect(retry.status).toBe(201);
      expect(retry.headers.get('idempotent-replayed')).toBeNull();
      expect(await retry.json()).toMatchObject({ item });
      expect(await counts()).toEqual({ orders: 1, events: 1 });
      expect(await effects()).toBe(1);
    });
  });
});
