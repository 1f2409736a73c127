import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { RecordingEventSource } from '../support/event-source';
import { OrdersController } from './orders.controller';
import { startApp, TestApp } from '../support/http';
import { dropOutbox, outboxOptions } from '../support/outbox';
import { databaseUrl, uniqueSchema, withClient } from '../support/postgres';
import { redisUrl } from '../support/redis';

/**
 * Without an OpenTelemetry SDK — the API installed but nothing registered, or the optional
 * peer dependency missing altogether — everything works and nothing is stored for tracing.
 */
async function publishesAndReplaysUntraced(t: TestApp, schema: string): Promise<void> {
  const client = new RecordingEventSource(`${t.url}/orders`);
  try {
    await client.opened();
    const post = () =>
      fetch(`${t.url}/orders`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'idempotency-key': 'untraced',
          traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
        },
        body: JSON.stringify({ item: 'book' }),
      });
    const first = await post();
    expect(first.status).toBe(201);
    const replayed = await post();
    expect(await replayed.text()).toBe(await first.text());
    await client.received(1);
    const { rows } = await withClient(databaseUrl(), (pg) =>
      pg.query(`SELECT trace_context FROM "${schema}".sse_outbox`),
    );
    expect(rows).toEqual([{ trace_context: null }]);
  } finally {
    client.close();
  }
}

describe('@opentelemetry/api installed, no SDK registered', () => {
  const schema = uniqueSchema('untraced');
  let t: TestApp;

  beforeAll(async () => {
    t = await startApp(
      [OrdersController],
      outboxOptions(schema, { redis: { url: redisUrl(), keyPrefix: `test:${schema}:` } }),
    );
  });
  afterAll(async () => {
    await t?.close();
    await dropOutbox(schema);
  });

  it('publishes, delivers and replays; stores no trace context', () =>
    publishesAndReplaysUntraced(t, schema));
});

describe('@opentelemetry/api not installed', () => {
  it('is only ever loaded by observability/tracing.ts', () => {
    const importers = execFileSync(
      'grep',
      ['-rlE', "from '@opentelemetry|require\\('@opentelemetry", 'src'],
      {
        cwd: path.join(__dirname, '../..'),
        encoding: 'utf8',
      },
    );
    expect(importers.trim().split('\n')).toEqual(['src/observability/tracing.ts']);
  });

  it('turns every tracing call into nothing', () => {
    jest.isolateModules(() => {
      jest.doMock('@opentelemetry/api', () => {
        throw Object.assign(new Error("Cannot find module '@opentelemetry/api'"), {
          code: 'MODULE_NOT_FOUND',
        });
      });
      type Tracing = typeof import('../../src/observability/tracing');
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const tracing = require('../../src/observability/tracing') as Tracing;
      expect(tracing.tracingAvailable()).toBe(false);
      expect(tracing.startPublish(['orders'], 1, 'public.sse_outbox')).toBeUndefined();
      expect(tracing.startStream()).toBeUndefined();
      expect(() => {
        tracing.annotateActive({ a: 1 });
        tracing.recordDeliveries(
          [
            {
              context: 'traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
              topics: new Set(['orders']),
              ids: ['1-1'],
              subscribers: 1,
            },
          ],
          Date.now(),
        );
      }).not.toThrow();
    });
    jest.dontMock('@opentelemetry/api');
  });
});
