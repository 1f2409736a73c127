import { Controller, Post } from '@nestjs/common';
import { Idempotent, OutboxService, Sse, SseMetrics } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { databaseUrl, dropSchema, uniqueSchema } from '../support/postgres';
import { redisUrl, uniquePrefix, withRedis } from '../support/redis';

@Controller()
class AppController {
  @Sse('feed', { topic: 'feed' })
  feed() {}

  @Post('pay')
  @Idempotent()
  pay() {
    return { ok: true };
  }
}

/** One sample of a metric from the text exposition format. */
function sample(text: string, metric: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${metric} `));
  return line === undefined ? undefined : Number(line.slice(metric.length + 1));
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('Prometheus metrics', () => {
    const schema = uniqueSchema('metrics');
    const keyPrefix = uniquePrefix('metrics');
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [AppController],
        {
          sse: { heartbeatMs: 60_000 },
          postgres: { connectionString: databaseUrl(), schema },
          redis: { url: redisUrl(), keyPrefix },
          metrics: { path: 'metrics' },
        },
        { platform },
      );
    });
    afterAll(async () => {
      await t?.close();
      await dropSchema(schema);
      await withRedis(redisUrl(), async (redis) => {
        const keys = await redis.keys(`${keyPrefix}*`);
        if (keys.length) await redis.del(...keys);
      });
    });

    it('exposes connections, deliveries, replays, resets, idempotency outcomes, relay batches and lag', async () => {
      const live = new RecordingEventSource(`${t.url}/feed`);
      const reset = new RecordingEventSource(`${t.url}/feed`, ['reset'], {
        'last-event-id': 'garbage',
      });
      try {
        await Promise.all([live.opened(), reset.received(1)]);
        const outbox = t.app.get(OutboxService);
        const ids = await outbox.transaction((tx) =>
          outbox.publish(tx, [
            { topic: 'feed', data: 1 },
            { topic: 'feed', data: 2 },
          ]),
        );
        await live.received(2);
        const resumed = new RecordingEventSource(`${t.url}/feed`, [], { 'last-event-id': ids[0] });
        await resumed.received(1);
        resumed.close();
        const pay = () =>
          fetch(`${t.url}/pay`, { method: 'POST', headers: { 'idempotency-key': 'm1' } });
        await pay();
        await pay();

        const response = await fetch(`${t.url}/metrics`);
        expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
        const text = await response.text();
        expect(sample(text, 'sse_open_connections')).toBe(2);
        expect(sample(text, 'sse_max_connections')).toBe(10_000);
        // 2 events to 2 live streams (the resumed stream's event was replayed, not delivered live).
        expect(sample(text, 'sse_events_delivered_total')).toBe(4);
        expect(sample(text, 'sse_replayed_events_total')).toBe(1);
        expect(sample(text, 'sse_resets_total')).toBe(1);
        expect(sample(text, 'sse_slow_consumer_disconnects_total')).toBe(0);
        expect(sample(text, 'sse_idempotency_requests_total{outcome="first"}')).toBe(1);
        expect(sample(text, 'sse_idempotency_requests_total{outcome="replay"}')).toBe(1);
        expect(sample(text, 'sse_relay_batch_duration_seconds_count')).toBeGreaterThan(0);
        expect(sample(text, 'sse_outbox_lag_events')).toBe(0);
        expect(t.app.get(SseMetrics).registry).toBeDefined();
      } finally {
        live.close();
        reset.close();
      }
    });
  });
});

// Last in the file: the mocked module stays in Jest's registry.
describe('without prom-client', () => {
  it.each(PLATFORMS)(
    'collects nothing on %s, and refuses metrics.path with a clear error',
    async (platform) => {
      await jest.isolateModulesAsync(async () => {
        jest.doMock('prom-client', () => {
          throw new Error("Cannot find module 'prom-client'");
        });
        const { startApp: start } = await import('../support/http');
        const { SseMetrics: Metrics } = await import('../../src');
        const plain = await start([], {}, { platform });
        try {
          expect(plain.app.get(Metrics).registry).toBeUndefined();
        } finally {
          await plain.close();
        }
        await expect(start([], { metrics: { path: 'metrics' } }, { platform })).rejects.toThrow(
          /metrics\.path needs .*prom-client/,
        );
      });
    },
  );
});
