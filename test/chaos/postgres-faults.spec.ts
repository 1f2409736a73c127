// The fault model of docs/guarantees.md against a private PostgreSQL: connections that die loudly
// (terminated, idle_in_transaction_session_timeout) and silently (a frozen network path).
import { Controller, Logger } from '@nestjs/common';
import { Client } from 'pg';
import type { PoolClient } from 'pg';
import { OutboxRelay, OutboxService, Sse, SseModuleOptions } from '../../src';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { raceTimeout } from '../../src/common/timeout';
import { RecordingEventSource } from '../support/event-source';
import { FaultProxy } from '../support/fault-proxy';
import { startApp, TestApp } from '../support/http';
import { withClient } from '../support/postgres';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivatePostgres } = require('../support/services');

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

/** Uncaught exceptions raised while `fn` runs (each would have crashed a process without Jest). */
async function uncaughtDuring(fn: () => Promise<void>): Promise<Error[]> {
  const caught: Error[] = [];
  const record = (error: Error) => caught.push(error);
  process.on('uncaughtException', record);
  try {
    await fn();
    // Errors emitted by a dying socket arrive in the ticks after the query rejected.
    await new Promise((resolve) => setImmediate(resolve));
  } finally {
    process.removeListener('uncaughtException', record);
  }
  return caught;
}

/** Terminates backend `pid` once it runs `pg_sleep` (polled: the server sends no event for it). */
async function terminateWhenAsleep(url: string, pid: number): Promise<void> {
  await withClient(url, async (admin) => {
    for (let attempt = 0; attempt < 100; attempt++) {
      const { rows } = await admin.query(
        `SELECT pg_terminate_backend(pid) AS done FROM pg_stat_activity
         WHERE pid = $1 AND state = 'active' AND query LIKE 'SELECT pg_sleep%'`,
        [pid],
      );
      if (rows[0]?.done) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    throw new Error(`backend ${pid} was never seen asleep`);
  });
}

/** Fails the test if `work` has not settled within `ms`: the bound a user is promised. */
function within<T>(ms: number, what: string, work: Promise<T>): Promise<T> {
  return raceTimeout(work, ms, () => {
    throw new Error(`${what} did not finish within ${ms} ms`);
  });
}

describe('chaos: PostgreSQL connections dying (private server)', () => {
  let pg: { url: string; destroy(): Promise<void> };
  beforeAll(async () => {
    pg = await startPrivatePostgres();
  }, 60_000);
  afterAll(() => pg?.destroy());

  const options = (url: string, extra: Partial<SseModuleOptions> = {}): SseModuleOptions => ({
    sse: { heartbeatMs: 60_000 },
    postgres: { connectionString: url, pool: { max: 4 }, queryTimeoutMs: 1_000 },
    outbox: { pollIntervalMs: 200, listenerCheckMs: 500 },
    health: { cacheMs: 0 },
    ...extra,
  });

  describe('loudly', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp([FeedController], options(pg.url));
    });
    afterAll(() => t?.close());

    it('a connection terminated inside outbox.transaction() rejects the call and crashes nothing', async () => {
      const outbox = t.app.get(OutboxService);
      let rejection: unknown;
      const uncaught = await uncaughtDuring(async () => {
        rejection = await outbox
          .transaction(async (tx) => {
            const { rows } = await tx.query('SELECT pg_backend_pid() AS pid');
            const sleeping = tx.query('SELECT pg_sleep(30)');
            sleeping.catch(() => undefined); // awaited below, once the backend is terminated
            await terminateWhenAsleep(pg.url, rows[0].pid);
            await sleeping;
          })
          .then(
            () => undefined,
            (error: unknown) => error,
          );
      });
      expect(String((rejection as Error)?.message)).toMatch(/terminat/i);
      expect(uncaught).toEqual([]);
      // The dead connection was discarded: the pool serves the next transaction.
      const [id] = await outbox.transaction((tx) =>
        outbox.publish(tx, { topic: 'feed', data: 'after termination' }),
      );
      expect(id).toMatch(/^\d+-\d+$/);
    });

    it('idle_in_transaction_session_timeout ending a transaction rejects it and crashes nothing', async () => {
      const outbox = t.app.get(OutboxService);
      let rejection: unknown;
      const uncaught = await uncaughtDuring(async () => {
        rejection = await outbox
          .transaction(async (tx: PoolClient) => {
            await tx.query(`SET LOCAL idle_in_transaction_session_timeout = '200ms'`);
            // The transaction idles; the server ends the session. Awaited through a bare 'end'
            // listener: events.once() would also listen for 'error', the very listener the module
            // must add itself.
            await new Promise((resolve) => tx.once('end', resolve));
            await tx.query('SELECT 1');
          })
          .then(
            () => undefined,
            (error: unknown) => error,
          );
      });
      expect(rejection).toBeInstanceOf(Error);
      expect(uncaught).toEqual([]);
      const pool = t.app.get(PostgresConnection).requirePool();
      const { rows } = await pool.query('SELECT 1 AS ok');
      expect(rows[0].ok).toBe(1);
    });
  });

  describe('silently: the network path to PostgreSQL freezes', () => {
    it('detects it in seconds, delivers what was published meanwhile, recovers /health, and closes in bounded time', async () => {
      const proxy = await FaultProxy.start(pg.url);
      const writer = await startApp([FeedController], options(pg.url, { health: { path: false } }));
      const reader = await startApp([FeedController], {
        ...options(proxy.via(pg.url)),
        outbox: { pollIntervalMs: 200, listenerCheckMs: 500, migrate: false },
      });
      const client = new RecordingEventSource(`${reader.url}/feed`);
      try {
        await client.opened();
        const outbox = writer.app.get(OutboxService);
        await outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: 'warm' }));
        await client.received(1);
        const relay = reader.app.get(OutboxRelay);
        const failuresBefore = relay.listenerStats!.failures;

        expect(proxy.freeze()).toBeGreaterThanOrEqual(2); // the listener and a pooled connection
        const ids: string[] = [];
        for (let i = 0; i < 10; i++) {
          ids.push(
            ...(await outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: i }))),
          );
        }
        // Bounded by the liveness check and queryTimeoutMs (1 s), not by TCP (hours).
        await within(15_000, 'delivery after the freeze', client.received(11));
        expect(client.events.slice(1).map((e) => e.lastEventId)).toEqual(ids);
        expect(relay.listenerStats!.failures).toBeGreaterThan(failuresBefore);
        expect(proxy.accepted).toBeGreaterThan(2); // it reconnected through the same path

        const health = await fetch(`${reader.url}/health`);
        expect(health.status).toBe(200);
      } finally {
        client.close();
        await writer.close();
        // Frozen connections are still in the pool or being discarded: close must not wait on them.
        await within(5_000, 'app.close()', reader.close());
        await proxy.close();
      }
    }, 30_000);

    it('a frozen path under an open transaction fails that transaction within the bound', async () => {
      const proxy = await FaultProxy.start(pg.url);
      // The user's own statements are bounded at statementTimeoutMs + queryTimeoutMs.
      const t = await startApp([FeedController], {
        ...options(proxy.via(pg.url)),
        postgres: {
          connectionString: proxy.via(pg.url),
          queryTimeoutMs: 1_000,
          statementTimeoutMs: 1_000,
        },
      });
      try {
        const outbox = t.app.get(OutboxService);
        const rejection = await within(
          10_000,
          'the frozen transaction',
          outbox
            .transaction(async (tx) => {
              await tx.query('SELECT 1');
              proxy.freeze();
              await outbox.publish(tx, { topic: 'feed', data: 'never committed' });
            })
            .then(
              () => undefined,
              (error: unknown) => error,
            ),
        );
        expect(String((rejection as Error)?.message)).toMatch(/timeout/i);
        // A fresh connection through the same path works.
        const [id] = await within(
          10_000,
          'the next transaction',
          outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: 'next' })),
        );
        expect(id).toMatch(/^\d+-\d+$/);
      } finally {
        await within(5_000, 'app.close()', t.close());
        await proxy.close();
      }
    }, 30_000);
  });

  describe('a transaction held open elsewhere', () => {
    it('holds delivery back visibly: pendingEvents and oldestPendingMs in /health and metrics, one log naming the backend, readiness up', async () => {
      const warn = jest.spyOn(Logger.prototype, 'warn');
      const t = await startApp([FeedController], {
        ...options(pg.url),
        outbox: { pollIntervalMs: 200, listenerCheckMs: 500, table: 'held_back' },
        health: { cacheMs: 0, pendingWarnMs: 300 },
        metrics: { path: 'metrics' },
      });
      const client = new RecordingEventSource(`${t.url}/feed`);
      const blocker = new Client({ connectionString: pg.url, application_name: 'long-report' });
      await blocker.connect();
      try {
        await client.opened();
        await blocker.query('BEGIN');
        const { rows } = await blocker.query(
          'SELECT pg_backend_pid() AS pid, pg_current_xact_id() AS xid',
        );
        const outbox = t.app.get(OutboxService);
        const ids: string[] = [];
        for (let i = 0; i < 20; i++) {
          ids.push(
            ...(await outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: i }))),
          );
        }
        // Polled: the held-back state has no event to await; bounded by the test's timeout.
        let lag: Record<string, any> = {};
        while (!lag.heldBackBy) {
          const response = await fetch(`${t.url}/health`);
          expect(response.status).toBe(200); // a cause outside the instance: readiness stays up
          lag = ((await response.json()) as any).details.outbox_lag;
        }
        expect(lag).toMatchObject({ status: 'up', behind: 0, pendingEvents: 20 });
        expect(lag.oldestPendingMs).toBeGreaterThanOrEqual(300);
        expect(lag.heldBackBy).toMatchObject({ pid: rows[0].pid, applicationName: 'long-report' });
        const logged = warn.mock.calls.filter(([m]) => /held back/.test(String(m)));
        expect(logged).toHaveLength(1);
        expect(String(logged[0][0])).toContain(`pid ${rows[0].pid} (long-report`);

        const metrics = await (await fetch(`${t.url}/metrics`)).text();
        expect(metrics).toMatch(/^sse_outbox_pending_events 20$/m);
        expect(metrics).toMatch(/^sse_outbox_lag_measured 1$/m);
        expect(
          Number(/^sse_outbox_oldest_pending_seconds (\S+)$/m.exec(metrics)![1]),
        ).toBeGreaterThan(0);
        expect(client.events).toHaveLength(0); // commit-safe order: nothing skipped ahead

        await blocker.query('COMMIT');
        await client.received(20);
        expect(client.events.map((e) => e.lastEventId)).toEqual(ids);
        const after = (await (await fetch(`${t.url}/health`)).json()) as any;
        expect(after.details.outbox_lag).toMatchObject({ pendingEvents: 0, oldestPendingMs: 0 });
        // Still one warning for the whole episode.
        expect(warn.mock.calls.filter(([m]) => /held back/.test(String(m)))).toHaveLength(1);
      } finally {
        warn.mockRestore();
        client.close();
        await blocker.end().catch(() => undefined);
        await t.close();
      }
    }, 30_000);
  });

  describe('/metrics with PostgreSQL silent', () => {
    it('answers within health.timeoutMs and says what it could not read', async () => {
      const proxy = await FaultProxy.start(pg.url);
      const t = await startApp([FeedController], {
        ...options(proxy.via(pg.url)),
        outbox: { pollIntervalMs: 200, listenerCheckMs: 500, table: 'metrics_frozen' },
        health: { timeoutMs: 500, cacheMs: 0 },
        metrics: { path: 'metrics' },
      });
      try {
        const warm = await (await fetch(`${t.url}/metrics`)).text();
        expect(warm).toMatch(/^sse_outbox_lag_measured 1$/m);
        proxy.freeze();
        const frozen = await within(
          3_000,
          '/metrics with a frozen database',
          fetch(`${t.url}/metrics`).then((r) => r.text()),
        );
        expect(frozen).toMatch(/^sse_outbox_lag_measured 0$/m);
        expect(frozen).toMatch(/^sse_open_connections 0$/m); // the rest is still reported
        const health = await within(
          3_000,
          '/health with a frozen database',
          fetch(`${t.url}/health`),
        );
        expect(health.status).toBe(503);
      } finally {
        await within(5_000, 'app.close()', t.close());
        await proxy.close();
      }
    });
  });
});
