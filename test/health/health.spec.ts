// Readiness and liveness over HTTP, with failures caused on private PostgreSQL and Redis servers.
import { Controller } from '@nestjs/common';
import { once } from 'node:events';
import { OutboxRelay, OutboxService, Sse, SseConnectionRegistry } from '../../src';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { openRaw } from '../support/http';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { databaseUrl, dropSchema, uniqueSchema, withClient } from '../support/postgres';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivatePostgres, startPrivateRedis } = require('../support/services');

@Controller()
class StreamController {
  @Sse('stream', { topic: 'health' })
  stream() {}
}

interface Health {
  status: number;
  body: {
    status: string;
    info: Record<string, any>;
    error: Record<string, any>;
    details: Record<string, any>;
  };
}

const health = async (app: TestApp, path = '/health'): Promise<Health> => {
  const response = await fetch(`${app.url}${path}`);
  return { status: response.status, body: (await response.json()) as Health['body'] };
};

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('health (private PostgreSQL and Redis)', () => {
    let pg: {
      url: string;
      stop(): Promise<void>;
      start(): Promise<void>;
      destroy(): Promise<void>;
    };
    let redis: {
      url: string;
      stop(): Promise<void>;
      start(): Promise<void>;
      destroy(): Promise<void>;
    };
    let t: TestApp;

    beforeAll(async () => {
      [pg, redis] = await Promise.all([startPrivatePostgres(), startPrivateRedis()]);
      t = await startApp(
        [StreamController],
        {
          sse: { maxConnections: 2, maxConnectionsPerClient: 2, heartbeatMs: 60_000 },
          postgres: { connectionString: pg.url, pool: { connectionTimeoutMs: 2_000 } },
          redis: { url: redis.url },
          outbox: { pollIntervalMs: 100, listenerCheckMs: 300 },
          // Bounds the checks of hung dependencies below; room for a cold pool on a loaded machine.
          health: { timeoutMs: 2_000, cacheMs: 0 },
        },
        { platform },
      );
    }, 60_000);
    afterAll(async () => {
      await t?.close();
      await Promise.all([pg?.destroy(), redis?.destroy()]);
    });

    it('is ready when every dependency is, with Terminus JSON naming each', async () => {
      const ready = await health(t);
      // With what was down: if a dependency is reported down, the failure says which and why.
      expect({ status: ready.status, down: ready.body.error }).toEqual({ status: 200, down: {} });
      expect(ready.body.status).toBe('ok');
      expect(Object.keys(ready.body.details).sort()).toEqual([
        'outbox_lag',
        'outbox_listener',
        'postgres',
        'redis',
        'sse',
      ]);
      expect(ready.body.details.sse).toMatchObject({ status: 'up', open: 0, max: 2 });
      expect(ready.body.details.outbox_lag).toMatchObject({ status: 'up', behind: 0 });
      expect((await health(t, '/health/live')).status).toBe(200);
    });

    it('answers 503 naming redis while Redis is stopped; liveness stays 200', async () => {
      await redis.stop();
      try {
        const down = await health(t);
        expect(down.status).toBe(503);
        expect(down.body.status).toBe('error');
        expect(Object.keys(down.body.error)).toEqual(['redis']);
        expect((await health(t, '/health/live')).status).toBe(200);
      } finally {
        await redis.start();
      }
    });

    it('answers 503 naming outbox_listener until the listener reconnects, then 200', async () => {
      const relay = t.app.get(OutboxRelay);
      if (!relay.listenerStats!.connected) await once(relay.listenerEvents!, 'listening');
      // Keep the listener from coming back: no new connections to the database for a while.
      await withClient(pg.url.replace(/\/test$/, '/postgres'), async (admin) => {
        await admin.query('ALTER DATABASE test WITH ALLOW_CONNECTIONS false');
        const lost = once(relay.listenerEvents!, 'lost');
        await admin.query(
          `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nestjs-durable-sse listener'`,
        );
        await lost;
        const down = await health(t);
        expect(down.status).toBe(503);
        expect(down.body.error.outbox_listener).toMatchObject({ status: 'down', connected: false });
        expect((await health(t, '/health/live')).status).toBe(200);
        const back = once(relay.listenerEvents!, 'listening');
        await admin.query('ALTER DATABASE test WITH ALLOW_CONNECTIONS true');
        await back;
      });
      // Ready again once the relay has read since reconnecting (it reads on every reconnect).
      let ready = await health(t);
      for (let i = 0; i < 50 && ready.status !== 200; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        ready = await health(t);
      }
      expect(ready.status).toBe(200);
    });

    it('answers 503 naming sse when the instance has no room for another stream', async () => {
      const streams = await Promise.all([openRaw(`${t.url}/stream`), openRaw(`${t.url}/stream`)]);
      try {
        await Promise.all(streams.map((s) => s.until((x) => x.startsWith('retry'))));
        const full = await health(t);
        expect(full.status).toBe(503);
        expect(full.body.error.sse).toMatchObject({ status: 'down', open: 2, max: 2 });
      } finally {
        streams.forEach((s) => s.close());
      }
    });

    it('answers 503 naming postgres when PostgreSQL is unreachable; liveness stays 200', async () => {
      await pg.stop();
      try {
        const down = await health(t);
        expect(down.status).toBe(503);
        expect(down.body.error.postgres).toMatchObject({ status: 'down' });
        expect((await health(t, '/health/live')).status).toBe(200);
      } finally {
        await pg.start();
      }
    });
  });

  describe('health routes', () => {
    it('can be moved or turned off', async () => {
      const moved = await startApp([], { health: { path: 'ops/ready' } }, { platform });
      const off = await startApp([], { health: { path: false } }, { platform });
      try {
        expect((await fetch(`${moved.url}/ops/ready`)).status).toBe(200);
        expect((await fetch(`${moved.url}/ops/ready/live`)).status).toBe(200);
        expect((await fetch(`${moved.url}/health`)).status).toBe(404);
        expect((await fetch(`${off.url}/health`)).status).toBe(404);
      } finally {
        await moved.close();
        await off.close();
      }
    });
  });

  describe('readiness at start-up', () => {
    it('is 200 as soon as the app listens: bootstrap waits for the relay first read, not only its LISTEN', async () => {
      const schema = uniqueSchema('healthstart');
      const t = await startApp(
        [StreamController],
        {
          sse: { heartbeatMs: 60_000 },
          postgres: { connectionString: databaseUrl(), schema },
          // No poll can stand in for the first read within the test.
          outbox: { pollIntervalMs: 60_000 },
          health: { cacheMs: 0 },
        },
        { platform },
      );
      try {
        expect(t.app.get(OutboxRelay).stats.reads).toBeGreaterThanOrEqual(1);
        const ready = await health(t);
        expect({ status: ready.status, down: ready.body.error }).toEqual({ status: 200, down: {} });
      } finally {
        await t.close();
        await dropSchema(schema);
      }
    });
  });

  describe('readiness under a fleet of load balancers', () => {
    it('coalesces concurrent checks into one and reuses the answer for health.cacheMs; draining is reported at once', async () => {
      const schema = uniqueSchema('healthcache');
      const t = await startApp(
        [StreamController],
        {
          sse: { heartbeatMs: 60_000 },
          postgres: { connectionString: databaseUrl(), schema },
          health: { cacheMs: 60_000 },
        },
        { platform },
      );
      const postgres = t.app.get(PostgresConnection);
      const queries = jest.spyOn(postgres, 'query');
      // The relay polls through the same method; only the checks' own queries count here.
      const lagSql = t.app.get(OutboxService).sql.lag;
      const checkQueries = () =>
        queries.mock.calls.filter(([text]) => text === 'SELECT 1' || text === lagSql).length;
      try {
        const answers = await Promise.all(Array.from({ length: 20 }, () => health(t)));
        expect(answers.map((a) => ({ status: a.status, down: a.body.error }))).toEqual(
          answers.map(() => ({ status: 200, down: {} })),
        );
        // 20 concurrent requests: one SELECT 1 and one lag query; 20 more within cacheMs: none.
        expect(checkQueries()).toBe(2);
        await Promise.all(Array.from({ length: 20 }, () => health(t)));
        expect(checkQueries()).toBe(2);
        // The cache never hides a shutdown.
        t.app.get(SseConnectionRegistry).beginDrain();
        const draining = await health(t);
        expect(draining.status).toBe(503);
        expect(draining.body.error.sse).toMatchObject({ draining: true, shuttingDown: false });
        // Draining still serves streams: load balancers stop first, clients are not refused yet.
        const stream = await openRaw(`${t.url}/stream`);
        expect(stream.status).toBe(200);
        stream.close();
      } finally {
        queries.mockRestore();
        await t.close();
        await dropSchema(schema);
      }
    });
  });

  describe('readiness during shutdown', () => {
    it('turns 503 (sse.shuttingDown) and refuses new streams as soon as shutdown begins', async () => {
      const t = await startApp([StreamController], { sse: { heartbeatMs: 60_000 } }, { platform });
      try {
        expect((await health(t)).status).toBe(200);
        // The first shutdown hook, as app.close() runs it before closing the HTTP server.
        t.app.get(SseConnectionRegistry).shutdown();
        const draining = await health(t);
        expect(draining.status).toBe(503);
        expect(draining.body.error.sse).toMatchObject({ status: 'down', shuttingDown: true });
        expect((await health(t, '/health/live')).status).toBe(200);
        const refused = await fetch(`${t.url}/stream`);
        expect(refused.status).toBe(503);
        expect(refused.headers.get('retry-after')).not.toBeNull();
      } finally {
        await t.close();
      }
    });
  });
});
