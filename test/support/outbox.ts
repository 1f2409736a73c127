import { Type } from '@nestjs/common';
import { OutboxRelay, OutboxService, SseModuleOptions } from '../../src';
import { RecordingEventSource } from './event-source';
import { Platform, startApp, TestApp } from './http';
import { databaseUrl, dropSchema, uniqueSchema } from './postgres';

/** Outbox options on the test database, in `schema`; polling far apart unless a test wants it. */
export function outboxOptions(schema: string, extra: SseModuleOptions = {}): SseModuleOptions {
  return {
    sse: { heartbeatMs: 60_000, ...extra.sse },
    postgres: { connectionString: databaseUrl(), schema, ...extra.postgres },
    outbox: { pollIntervalMs: 5_000, ...extra.outbox },
  };
}

export interface TwoInstances {
  schema: string;
  a: TestApp;
  b: TestApp;
  /** OutboxService of instance A. */
  outbox: OutboxService;
  /** Registers a client to be closed after the current test. */
  track(client: RecordingEventSource): RecordingEventSource;
}

/**
 * Two app instances sharing one outbox in a fresh schema, for the enclosing `describe`: started
 * before its tests, stopped (and the schema dropped) after; clients are closed after each test.
 */
export function useTwoInstances(
  controllers: Type<unknown>[],
  schemaPrefix: string,
  extra: SseModuleOptions = {},
  platform: Platform = 'express',
): TwoInstances {
  const clients: RecordingEventSource[] = [];
  const instances = {
    schema: uniqueSchema(schemaPrefix),
    track: (client: RecordingEventSource) => {
      clients.push(client);
      return client;
    },
  } as TwoInstances;

  beforeAll(async () => {
    instances.a = await startApp(controllers, outboxOptions(instances.schema, extra), {
      platform,
    });
    instances.b = await startApp(
      controllers,
      outboxOptions(instances.schema, { ...extra, outbox: { ...extra.outbox, migrate: false } }),
      { platform },
    );
    instances.outbox = instances.a.app.get(OutboxService);
  });
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  afterAll(async () => {
    await instances.a?.close();
    await instances.b?.close();
    await dropSchema(instances.schema);
  });
  return instances;
}

/**
 * Resolves once the app's relay has handed over every settled event (so a stream opened next
 * starts after all of them). Polled, bounded: the relay emits nothing when it catches up.
 */
export async function relayCaughtUp(app: TestApp, timeoutMs = 10_000): Promise<void> {
  const relay = app.app.get(OutboxRelay);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    relay.wake();
    if ((await relay.lag()).behind === 0) return;
    if (Date.now() > deadline) throw new Error(`the relay did not catch up within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
