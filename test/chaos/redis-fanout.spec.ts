import { Controller } from '@nestjs/common';
import { ChildProcess, fork } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import Redis, { Cluster } from 'ioredis';
import { OutboxRelay, OutboxService, Sse, SseModuleOptions } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { FaultProxy } from '../support/fault-proxy';
import { startApp, TestApp } from '../support/http';
import { dropOutbox, eventually, outboxOptions, schemaKeyPrefix } from '../support/outbox';
import { databaseUrl, uniqueSchema, withClient } from '../support/postgres';
import { redisUrl } from '../support/redis';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedis, startPrivateRedisCluster } = require('../support/services');

interface RedisServer {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const ids = (client: RecordingEventSource) => client.events.map((e) => e.lastEventId);
const relayOf = (app: TestApp) => app.app.get(OutboxRelay);
const leading = (app: TestApp) => !!relayOf(app).leader?.leading;

/**
 * Publishes `count` events, one transaction each, in order; `faults[i]` runs (awaited) before
 * event i, so the burst goes on around the fault. Returns the ids in publishing order.
 */
async function burst(
  outbox: OutboxService,
  count: number,
  faults: Record<number, () => Promise<unknown>> = {},
): Promise<string[]> {
  const stored: string[] = [];
  for (let i = 0; i < count; i++) {
    await faults[i]?.();
    stored.push(
      ...(await outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: i }))),
    );
  }
  return stored;
}

describe("fanout: 'redis' under faults (real PostgreSQL and Redis)", () => {
  let schema: string;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];
  const track = <T extends { close(): unknown }>(thing: T): T => {
    cleanups.push(() => thing.close());
    return thing;
  };
  /** An instance with fanout 'redis' on this test's schema; the first one migrates. */
  const start = async (extra: SseModuleOptions = {}, first = false) =>
    track(
      await startApp(
        [FeedController],
        outboxOptions(
          schema,
          {
            ...extra,
            outbox: { leaderCheckMs: 200, migrate: first, ...extra.outbox },
          },
          'redis',
        ),
      ),
    );
  const subscribe = (app: TestApp | string) =>
    track(new RecordingEventSource(`${typeof app === 'string' ? app : app.url}/feed`, ['reset']));

  /**
   * A (started first, migrating, with `aOptions`) leads; B (with `bOptions`) follows; one stream
   * on each, open.
   */
  const leaderAndFollower = async (
    aOptions: SseModuleOptions = {},
    bOptions: SseModuleOptions = {},
  ) => {
    const a = await start(aOptions, true);
    await eventually(() => leading(a), 'A to lead');
    const b = await start(bOptions);
    const subscribers = [subscribe(a), subscribe(b)];
    await Promise.all(subscribers.map((s) => s.opened()));
    return { a, b, subscribers };
  };
  /** A plain client on the shared Redis, and the key of this test's stream there. */
  const streamAdmin = () => {
    const redis = new Redis(redisUrl());
    cleanups.push(() => redis.disconnect());
    return { redis, key: `${schemaKeyPrefix(schema)}outbox:{${schema}.sse_outbox}:events` };
  };

  beforeEach(() => {
    schema = uniqueSchema('fanout');
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await dropOutbox(schema);
  });

  it("hands the lead over when the leader's lock session is terminated mid-burst: every event once, in order, everywhere", async () => {
    const a = await start({}, true);
    await eventually(() => leading(a), 'A to lead');
    const b = await start();
    const subscribers = [subscribe(a), subscribe(a), subscribe(b)];
    await Promise.all(subscribers.map((s) => s.opened()));
    const pid = relayOf(a).leader!.stats.sessionPid;
    expect(pid).toBeGreaterThan(0);

    const stored = await burst(b.app.get(OutboxService), 200, {
      60: () =>
        withClient(databaseUrl(), (client) =>
          client.query('SELECT pg_terminate_backend($1)', [pid]),
        ),
    });
    await Promise.all(subscribers.map((s) => s.received(200)));
    for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);
    // The lead passed on: a second term began, on B or again on A with a new session.
    const terms = relayOf(a).leader!.stats.terms + relayOf(b).leader!.stats.terms;
    expect(terms).toBeGreaterThanOrEqual(2);
    expect(leading(a) !== leading(b)).toBe(true);
  });

  it('hands the lead over when the leader process is SIGKILLed mid-burst', async () => {
    const child: ChildProcess = fork(path.join(__dirname, 'fanout-child.js'), {
      env: {
        ...process.env,
        SCHEMA: schema,
        KEY_PREFIX: schemaKeyPrefix(schema),
        REDIS_URL: redisUrl(),
        DATABASE_URL: databaseUrl(),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    cleanups.push(() => child.exitCode === null && child.signalCode === null && child.kill());
    const state = async () => {
      child.send({ cmd: 'state' });
      const [message] = await once(child, 'message');
      return message as { port: number; leading: boolean; appended: number };
    };
    const [ready] = await once(child, 'message');
    let childState = ready as { port: number; leading: boolean };
    await eventually(async () => (childState = await state()).leading, 'the child to lead');
    const b = await start();
    const onChild = subscribe(`http://127.0.0.1:${childState.port}`);
    const onB = subscribe(b);
    await Promise.all([onChild.opened(), onB.opened()]);
    expect(leading(b)).toBe(false);

    const stored = await burst(b.app.get(OutboxService), 200, {
      60: async () => {
        // The child served events up to here as leader, and its own subscriber had some. Waited
        // for: another suite's open transaction can hold these events back for a while.
        await eventually(async () => (await state()).appended > 0, 'the child to append');
        await onChild.received(1);
        const exited = once(child, 'exit');
        child.kill('SIGKILL');
        await exited;
      },
    });
    await onB.received(200);
    expect(ids(onB)).toEqual(stored);
    expect(leading(b)).toBe(true);
    // The child's subscriber had the events before the kill, in order, and nothing twice.
    expect(ids(onChild).length).toBeGreaterThan(0);
    expect(ids(onChild)).toEqual(stored.slice(0, ids(onChild).length));
  });

  it("hands the lead over when the leader's network path to PostgreSQL goes silent", async () => {
    const proxy = await FaultProxy.start(databaseUrl());
    cleanups.push(() => proxy.close());
    const { b, subscribers } = await leaderAndFollower({
      postgres: { connectionString: proxy.via(databaseUrl()), queryTimeoutMs: 1_000 },
    });

    const stored = await burst(b.app.get(OutboxService), 150, {
      50: async () => {
        expect(proxy.freeze()).toBeGreaterThan(0);
        // PostgreSQL ends the silent session (idle_session_timeout) and the lock passes on.
        await eventually(() => leading(b), 'B to lead after the freeze');
      },
    });
    await Promise.all(subscribers.map((s) => s.received(150)));
    for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);
    expect(relayOf(b).leader!.stats.terms).toBe(1);
  });

  describe('on a private Redis', () => {
    let redis: RedisServer;
    beforeEach(async () => {
      redis = await startPrivateRedis();
    });
    afterEach(async () => {
      await redis.destroy();
    });
    const onPrivate = (first = false) =>
      start({ redis: { url: redis.url, connectTimeoutMs: 1_000 } }, first);

    it('follows the table while Redis is down mid-burst, then the stream again: nothing lost or doubled', async () => {
      const a = await onPrivate(true);
      const b = await start({
        redis: { url: redis.url, connectTimeoutMs: 1_000 },
        metrics: { path: 'metrics' },
        health: { cacheMs: 0 },
      });
      const subscribers = [subscribe(a), subscribe(b)];
      await Promise.all(subscribers.map((s) => s.opened()));
      /** What B's /health and /metrics say about following. */
      const observed = async () => {
        const health = await (await fetch(`${b.url}/health`)).json();
        const metrics = await (await fetch(`${b.url}/metrics`)).text();
        return {
          following: health.details.outbox_listener.following,
          fallbackGauge: /^sse_outbox_stream_fallback (\d)/m.exec(metrics)?.[1],
          leaderGauge: /^sse_outbox_stream_leader (\d)/m.exec(metrics)?.[1],
        };
      };
      expect(await observed()).toEqual({
        following: 'stream',
        fallbackGauge: '0',
        leaderGauge: '0',
      });

      const stored = await burst(a.app.get(OutboxService), 300, {
        100: async () => {
          await subscribers[1].received(100);
          await redis.stop();
          await eventually(() => relayOf(b).stream!.fallingBack, 'B to follow the table');
          expect(await observed()).toMatchObject({ following: 'table', fallbackGauge: '1' });
        },
        200: async () => {
          await subscribers[1].received(200); // delivered from the table, with Redis down
          await redis.start();
        },
      });
      await Promise.all(subscribers.map((s) => s.received(300)));
      for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);
      for (const app of [a, b]) {
        expect(relayOf(app).stream!.stats.fallbacks).toBe(1);
        await eventually(() => !relayOf(app).stream!.fallingBack, 'following the stream again');
      }
      expect(await observed()).toMatchObject({ following: 'stream', fallbackGauge: '0' });
      // Back on the stream: the next events come from it.
      const entries = relayOf(b).stream!.stats.entries;
      const more = await burst(a.app.get(OutboxService), 5);
      await subscribers[1].received(305);
      expect(ids(subscribers[1]).slice(300)).toEqual(more);
      expect(relayOf(b).stream!.stats.entries).toBeGreaterThan(entries);
    });

    it('loses nothing when Redis is flushed mid-burst (the stream gone)', async () => {
      const a = await onPrivate(true);
      const b = await onPrivate();
      const subscribers = [subscribe(a), subscribe(b)];
      await Promise.all(subscribers.map((s) => s.opened()));
      const flush = new Redis(redis.url, { maxRetriesPerRequest: 1 });
      cleanups.push(() => flush.disconnect());

      const stored = await burst(a.app.get(OutboxService), 200, {
        80: () => flush.flushall(),
      });
      await Promise.all(subscribers.map((s) => s.received(200)));
      for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);
    });
  });

  it('a leader starting on a lost stream appends from where its own relay is: nothing is left to the table', async () => {
    const { a, b, subscribers } = await leaderAndFollower();
    const outbox = a.app.get(OutboxService);
    const before = await burst(outbox, 30);
    await Promise.all(subscribers.map((s) => s.received(30)));

    // Nobody leads while the stream is lost and events are committed…
    await Promise.all([relayOf(a).leader!.stop(), relayOf(b).leader!.stop()]);
    const { redis, key } = streamAdmin();
    await redis.del(key);
    const unappended = await burst(outbox, 30);
    // …then B, which never led, starts the stream again: from its relay's position, so the 30
    // are appended too (starting after them would leave them to the table, and to the next event).
    await relayOf(b).leader!.start();
    await eventually(() => leading(b), 'B to lead');
    await Promise.all(subscribers.map((s) => s.received(60)));
    const after = await burst(outbox, 30);

    const stored = [...before, ...unappended, ...after];
    await Promise.all(subscribers.map((s) => s.received(90)));
    for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);
    expect(await redis.xlen(key)).toBe(60);
    for (const app of [a, b]) expect(relayOf(app).stream!.stats.gapEvents).toBe(0);
  });

  it('a follower that fell behind the trimmed stream reads exactly the difference from the table', async () => {
    const trimmed = { outbox: { streamMaxLength: 100, batchSize: 50 } };
    const { a, b, subscribers } = await leaderAndFollower(trimmed, trimmed);
    const outbox = a.app.get(OutboxService);
    const stored = await burst(outbox, 10);
    await Promise.all(subscribers.map((s) => s.received(10)));

    // B stops reading (as through a long pause) while 600 more events pass through the stream.
    const follower = relayOf(b).stream!;
    await follower.stop();
    for (let i = 0; i < 60; i++) {
      const batch = Array.from({ length: 10 }, (_, j) => ({ topic: 'feed', data: i * 10 + j }));
      stored.push(...(await outbox.transaction((tx) => outbox.publish(tx, batch))));
    }
    await subscribers[0].received(610);
    await follower.start();
    await subscribers[1].received(610);
    for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);
    expect(follower.stats.gapEvents).toBeGreaterThan(300);
  });

  it('steps over an entry that is not an event (written by someone else) without reading it again and again', async () => {
    const { a, b, subscribers } = await leaderAndFollower();
    const outbox = a.app.get(OutboxService);
    const before = await burst(outbox, 5);
    await Promise.all(subscribers.map((s) => s.received(5)));

    const { redis, key } = streamAdmin();
    const [txId, id] = before[4].split('-');
    await redis.xadd(key, `${txId}-${BigInt(id) + 1n}`, 'note', 'not an event');
    const reads = relayOf(b).stats.reads;
    const after = await burst(outbox, 5);
    await Promise.all(subscribers.map((s) => s.received(10)));
    for (const subscriber of subscribers) expect(ids(subscriber)).toEqual([...before, ...after]);
    // A follower that read from its last delivered event would get the foreign entry back at
    // once, every time: thousands of reads. One per batch is a handful.
    expect(relayOf(b).stats.reads - reads).toBeLessThan(50);
  });

  it('resumes a client whose id the trimmed stream no longer holds from the table', async () => {
    const a = await start(
      { outbox: { streamMaxLength: 100, replayCacheBytes: 0, batchSize: 50 } },
      true,
    );
    const live = subscribe(a);
    await live.opened();
    const outbox = a.app.get(OutboxService);
    const stored: string[] = [];
    for (let i = 0; i < 60; i++) {
      const batch = Array.from({ length: 10 }, (_, j) => ({ topic: 'feed', data: i * 10 + j }));
      stored.push(...(await outbox.transaction((tx) => outbox.publish(tx, batch))));
    }
    await live.received(600);
    const { redis, key } = streamAdmin();
    const length = await redis.xlen(key);
    expect(length).toBeLessThan(400); // trimmed (MAXLEN ~ keeps whole nodes)

    const relay = relayOf(a);
    const fromStream = relay.stats.replayedFromStream;
    const old = track(
      new RecordingEventSource(`${a.url}/feed`, ['reset'], { 'last-event-id': stored[10] }),
    );
    await old.received(589);
    expect(ids(old)).toEqual(stored.slice(11));
    expect(relay.stats.replayedFromStream).toBe(fromStream); // from the table
    const recent = track(
      new RecordingEventSource(`${a.url}/feed`, ['reset'], { 'last-event-id': stored[589] }),
    );
    await recent.received(10);
    expect(ids(recent)).toEqual(stored.slice(590));
    expect(relay.stats.replayedFromStream).toBe(fromStream + 10);
  });

  it('runs on a 3-master Redis Cluster: delivery on every instance and resume from the stream', async () => {
    const cluster = await startPrivateRedisCluster(3);
    cleanups.push(() => cluster.destroy());
    const clusterClient = async () => {
      const client = new Cluster(cluster.nodes, {
        keyPrefix: schemaKeyPrefix(schema),
        enableOfflineQueue: false,
        redisOptions: { maxRetriesPerRequest: 1 },
      });
      cleanups.push(() => client.disconnect());
      await once(client, 'ready');
      return client;
    };
    const onCluster = async (first = false) => {
      const options = outboxOptions(
        schema,
        { outbox: { leaderCheckMs: 200, migrate: first, replayCacheBytes: 0 } },
        'redis',
      );
      options.redis = { existingClient: await clusterClient() };
      return track(await startApp([FeedController], options));
    };
    const a = await onCluster(true);
    const b = await onCluster();
    const subscribers = [subscribe(a), subscribe(b)];
    await Promise.all(subscribers.map((s) => s.opened()));
    const stored = await burst(a.app.get(OutboxService), 50);
    await Promise.all(subscribers.map((s) => s.received(50)));
    for (const subscriber of subscribers) expect(ids(subscriber)).toEqual(stored);

    const resumed = track(
      new RecordingEventSource(`${b.url}/feed`, ['reset'], { 'last-event-id': stored[19] }),
    );
    await resumed.received(30);
    expect(ids(resumed)).toEqual(stored.slice(20));
    expect(relayOf(b).stats.replayedFromStream).toBe(30);
  });
});
