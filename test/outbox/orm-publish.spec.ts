import { OutboxService } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { TestApp } from '../support/http';
import { event, KITS, useOrmApp } from './orm/orm-kits';

/**
 * docs/outbox.md, "In your ORM's transaction": publishing and the exactly-once row ride the transaction of the library the team
 * already uses. Each library is the real package against real PostgreSQL (and Redis for the
 * idempotency records).
 */
describe('outbox.transaction(source, fn) with the libraries teams use: publishing', () => {
  const env = useOrmApp();
  const { counts } = env;
  let t: TestApp;
  let outbox: OutboxService;
  beforeAll(() => ({ t, outbox } = env));

  it('says what it accepts, and when what it was given is not in a transaction', async () => {
    await expect(outbox.transaction(42 as unknown as object, async () => 1)).rejects.toThrow(
      /cannot use number as a transaction/,
    );
    await expect(outbox.publish({ rows: [] }, event(1, 'x'))).rejects.toThrow(
      /cannot use object as a transaction/,
    );
    const client = await env.pool.connect();
    try {
      await expect(outbox.transaction(client, async () => 1)).rejects.toThrow(
        /the pg given is not in a transaction \(run BEGIN first/,
      );
    } finally {
      client.release();
    }
    const runner = env.typeorm.createQueryRunner();
    try {
      await expect(outbox.publish(runner, event(1, 'x'))).rejects.toThrow(
        /start its transaction first/,
      );
    } finally {
      await runner.release();
    }
    expect(await counts()).toEqual({ orders: 0, events: 0 });
  });

  describe.each(Object.keys(KITS))('%s', (name) => {
    const kit = () => KITS[name];

    it('commits the order with its event, delivered to a subscriber; a failed one leaves neither', async () => {
      const subscriber = new RecordingEventSource(`${t.url}/orders`, ['order.placed']);
      try {
        await subscriber.opened();
        await expect(kit().place(outbox, 'fail')).rejects.toThrow('business rule failed');
        const placed = await kit().place(outbox, 'book');
        expect(placed.eventId).toMatch(/^\d+-\d+$/);
        expect(await counts()).toEqual({ orders: 1, events: 1 });
        await subscriber.received(1);
        expect(subscriber.events).toEqual([
          {
            type: 'order.placed',
            data: JSON.stringify({ id: placed.id, item: 'book' }),
            lastEventId: placed.eventId,
          },
        ]);
      } finally {
        subscriber.close();
      }
    });

    if (KITS[name].starter) {
      it('refuses to publish on what only begins transactions', async () => {
        await expect(outbox.publish(kit().starter!(), event(1, 'x'))).rejects.toThrow(
          /needs the transaction your data is written in/,
        );
      });
    }
  });
});
