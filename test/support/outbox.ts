import { Type } from '@nestjs/common';
import { OutboxFanout, OutboxRelay, OutboxService, SseModuleOptions } from '../../src';
import { RecordingEventSource } from './event-source';
import { Platform, PLATFORMS, startApp, TestApp } from './http';
import { databaseUrl, dropSchema, uniqueSchema } from './postgres';
import { deletePrefix, redisUrl } from './redis';

export const FANOUTS: OutboxFanout[] = ['postgres', 'redis'];

/** Every platform with every fan-out, for `describe.each` (title: `on %s, fanout %s`). */
export const PLATFORM_FANOUTS: Array<[Platform, OutboxFanout]> = PLATFORMS.flatMap((platform) =>
  FANOUTS.map((fanout): [Platform, OutboxFanout] => [platform, fanout]),
);

/** Redis keys of the suite using `schema` (the stream, with `fanout: 'redis'`). */
export const schemaKeyPrefix = (schema: string) => `test:${schema}:`;

/**
 * Outbox options on the test database, in `schema`; polling far apart unless a test wants it.
 * With `fanout: 'redis'`, the shared Redis under a key prefix of the schema's.
 */
export function outboxOptions(
  schema: string,
  extra: SseModuleOptions = {},
  fanout: OutboxFanout = 'postgres',
): SseModuleOptions {
  return {
    ...extra,
    sse: { heartbeatMs: 60_000, ...extra.sse },
    postgres: { connectionString: databaseUrl(), schema, ...extra.postgres },
    outbox: { pollIntervalMs: 5_000, fanout, ...extra.outbox },
    ...(fanout === 'redis'
      ? { redis: { url: redisUrl(), keyPrefix: schemaKeyPrefix(schema), ...extra.redis } }
      : {}),
  };
}

/** Drops the schema and, with it, the Redis keys of its stream. */
export async function dropOutbox(schema: string): Promise<void> {
  await dropSchema(schema);
  await deletePrefix(redisUrl(), schemaKeyPrefix(schema));
}

export interface TwoInstances {
  schema: string;
  fanout: OutboxFanout;
  /** {@link outboxOptions} of this schema and fan-out. */
  options(extra?: SseModuleOptions): SseModuleOptions;
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
  fanout: OutboxFanout = 'postgres',
): TwoInstances {
  const clients: RecordingEventSource[] = [];
  const schema = uniqueSchema(schemaPrefix);
  const instances = {
    schema,
    fanout,
    options: (more: SseModuleOptions = {}) => outboxOptions(schema, more, fanout),
    track: (client: RecordingEventSource) => {
      clients.push(client);
      return client;
    },
  } as TwoInstances;

  beforeAll(async () => {
    instances.a = await startApp(controllers, instances.options(extra), { platform });
    instances.b = await startApp(
      controllers,
      instances.options({ ...extra, outbox: { ...extra.outbox, migrate: false } }),
      { platform },
    );
    instances.outbox = instances.a.app.get(OutboxService);
  });
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  afterAll(async () => {
    await instances.a?.close();
    await instances.b?.close();
    await dropOutbox(instances.schema);
  });
  return instances;
}

/**
 * Resolves once the app's relay has handed over every committed event (so a stream opened next
 * starts after all of them). Polled, bounded: the relay emits nothing when it catches up. Events
 * held back by a transaction open elsewhere (another suite's, on the shared server) count as not
 * handed over: `behind` alone is 0 while they wait, and nothing would wake the relay for them.
 */
export async function relayCaughtUp(app: TestApp, timeoutMs = 10_000): Promise<void> {
  const relay = app.app.get(OutboxRelay);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    relay.wake();
    const lag = await relay.lag();
    if (lag.behind === 0 && lag.pendingEvents === 0) return;
    if (Date.now() > deadline) throw new Error(`the relay did not catch up within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Polls `check` until it holds (bounded): for states that emit no event, such as which instance
 * leads. Rejects naming `what` after `timeoutMs`.
 */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  timeoutMs = 15_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
