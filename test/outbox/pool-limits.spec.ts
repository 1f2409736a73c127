import { OutboxService, PostgresPoolExhaustedError } from '../../src';
import { PostgresConnection } from '../../src/connections/postgres-connection';
import { startApp } from '../support/http';
import { databaseUrl, dropSchema, uniqueSchema, withClient } from '../support/postgres';

describe('PostgreSQL connection budget', () => {
  const schema = uniqueSchema('pool');
  afterAll(() => dropSchema(schema));

  it('never opens more than pool.max + 1 connections, even for 20 concurrent transactions', async () => {
    const applicationName = `pool-budget-${schema}`;
    const url = `${databaseUrl()}?application_name=${applicationName}`;
    const t = await startApp([], {
      postgres: { connectionString: url, schema, pool: { max: 3, connectionTimeoutMs: 10_000 } },
    });
    try {
      const outbox = t.app.get(OutboxService);
      let peak = 0;
      let sampling = true;
      // application_name in the URL wins over the module's, for the pool and the listener alike.
      const sampler = withClient(databaseUrl(), async (admin) => {
        while (sampling) {
          const { rows } = await admin.query(
            `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`,
            [applicationName],
          );
          peak = Math.max(peak, rows[0].n);
        }
      });
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          outbox.transaction(async (tx) => {
            await tx.query('SELECT pg_sleep(0.02)');
            return outbox.publish(tx, { topic: 'budget', data: i });
          }),
        ),
      );
      sampling = false;
      await sampler;
      expect(results.flat()).toHaveLength(20);
      // The pool was saturated (so the sampler saw it) and never exceeded its budget.
      expect(peak).toBeGreaterThanOrEqual(3);
      expect(peak).toBeLessThanOrEqual(3 + 1);
    } finally {
      await t.close();
    }
  });

  it('fails a checkout with a clear error when the pool stays exhausted past connectionTimeoutMs', async () => {
    const t = await startApp([], {
      postgres: {
        connectionString: databaseUrl(),
        schema,
        pool: { max: 2, connectionTimeoutMs: 200 },
      },
      outbox: { migrate: false },
    });
    const postgres = t.app.get(PostgresConnection);
    const held = await Promise.all([postgres.connect(), postgres.connect()]);
    try {
      const outbox = t.app.get(OutboxService);
      const attempt = outbox.transaction((tx) => outbox.publish(tx, { topic: 'x', data: 1 }));
      await expect(attempt).rejects.toThrow(PostgresPoolExhaustedError);
      await expect(attempt).rejects.toThrow(
        /within postgres\.pool\.connectionTimeoutMs \(200 ms\)/,
      );
    } finally {
      held.forEach((client) => client.release());
      await t.close();
    }
  });
});
