import { Controller } from '@nestjs/common';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { interval, map, take } from 'rxjs';
import { OutboxService, SSE_DIAGNOSTICS, SseJob } from '../../src';
import { FetchedStream } from '../support/sse-fetch';
import { RecordingEventSource } from '../support/event-source';
import { OrdersController } from './orders.controller';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { dropOutbox, eventually, outboxOptions, schemaKeyPrefix } from '../support/outbox';
import { uniqueSchema } from '../support/postgres';
import { redisUrl } from '../support/redis';

@Controller()
class JobsController {
  @SseJob('jobs')
  job() {
    return interval(5).pipe(
      take(3),
      map((i) => ({ data: i })),
    );
  }
}

/** Every message of every channel, in order, as [channel name, payload]. */
function record(): { seen: Array<[string, any]>; stop(): void } {
  const seen: Array<[string, any]> = [];
  const listeners = Object.values(SSE_DIAGNOSTICS).map((ch) => {
    const listener = (message: unknown) => seen.push([ch.name as string, message]);
    subscribe(ch.name, listener);
    return [ch.name, listener] as const;
  });
  return { seen, stop: () => listeners.forEach(([name, l]) => unsubscribe(name, l)) };
}

describe.each(PLATFORMS)(
  'diagnostics_channel events on %s (real PostgreSQL and Redis)',
  (platform) => {
    const schema = uniqueSchema('diag');
    let t: TestApp;
    let recorder: ReturnType<typeof record>;
    const of = (name: string) =>
      recorder.seen
        .filter(([channel]) => channel === `nestjs-durable-sse:${name}`)
        .map(([, m]) => m);

    beforeAll(async () => {
      t = await startApp(
        [OrdersController, JobsController],
        {
          ...outboxOptions(schema),
          redis: { url: redisUrl(), keyPrefix: schemaKeyPrefix(schema) },
        },
        { platform },
      );
    });
    const clients: RecordingEventSource[] = [];
    const track = (client: RecordingEventSource) => (clients.push(client), client);
    beforeEach(() => (recorder = record()));
    afterEach(() => {
      recorder.stop();
      clients.splice(0).forEach((client) => client.close());
    });
    afterAll(async () => {
      await t?.close();
      await dropOutbox(schema);
    });

    it('tells a stream opening, an event published and delivered to it, its resume, its reset and its close', async () => {
      const client = track(new RecordingEventSource(`${t.url}/orders`));
      await client.opened();
      expect(of('stream:open')).toHaveLength(1);
      const [id] = await t.app
        .get(OutboxService)
        .transaction((tx) => t.app.get(OutboxService).publish(tx, { topic: 'orders', data: 'a' }));
      expect(of('outbox:publish')).toEqual([{ topics: ['orders'], ids: [id] }]);
      await client.received(1);
      await eventually(() => of('outbox:deliver').length > 0, 'the deliver event');
      expect(of('outbox:deliver')).toEqual([{ events: 1, topics: { orders: 1 } }]);
      client.close();
      await eventually(() => of('stream:close').length > 0, 'the close event');
      expect(of('stream:close')[0].reason).toBe('client');

      // Resumed by id (from the relay's memory), then a malformed id is reset.
      const [before] = await t.app
        .get(OutboxService)
        .transaction((tx) => t.app.get(OutboxService).publish(tx, { topic: 'orders', data: 'b' }));
      await eventually(() => of('outbox:deliver').length > 1, 'the second delivery');
      const resumed = track(
        new RecordingEventSource(`${t.url}/orders`, [], { 'last-event-id': id }),
      );
      await resumed.received(1);
      expect(resumed.events[0].lastEventId).toBe(before);
      expect(of('stream:replay')).toEqual([{ lastEventId: id, events: 1, from: 'memory' }]);
      resumed.close();
      const broken = track(
        new RecordingEventSource(`${t.url}/orders`, ['reset'], {
          'last-event-id': 'garbage',
        }),
      );
      await broken.received(1);
      broken.close();
      expect(of('stream:reset')).toEqual([{ reason: 'malformed', lastEventId: 'garbage' }]);
    });

    it('tells the outcome of each @Idempotent() request, and a job start and end', async () => {
      const post = () =>
        fetch(`${t.url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': `diag-${platform}` },
          body: JSON.stringify({ item: 'book' }),
        });
      expect((await post()).status).toBe(201);
      expect((await post()).status).toBe(201);
      expect(of('idempotency')).toEqual([
        { outcome: 'first', route: 'OrdersController.place' },
        { outcome: 'replay', route: 'OrdersController.place' },
      ]);

      const job = new FetchedStream(`${t.url}/jobs`, { method: 'POST' });
      await job.ended;
      await eventually(() => of('job:end').length > 0, 'the job end event');
      const [{ id }] = of('job:start');
      expect(job.headers.get('content-location')).toBe(`/jobs/${id}`);
      expect(of('job:end')).toEqual([{ id, end: 'done', reason: undefined, events: 3 }]);
    });
  },
);
