import { Body, Controller, Post } from '@nestjs/common';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { Idempotent, OutboxService } from '../../src';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { dropOutbox, outboxOptions, schemaKeyPrefix } from '../support/outbox';
import { databaseUrl, uniqueSchema, withClient } from '../support/postgres';
import { deletePrefix, redisUrl } from '../support/redis';
import { Holds } from '../support/holds';

/**
 * Orders for item 'held' wait inside their transaction (the order inserted, the record not yet
 * written) until the test releases them.
 */
const held = new Holds();

@Controller()
class OrdersController {
  constructor(private readonly outbox: OutboxService) {}

  @Post('orders')
  @Idempotent()
  place(@Body() body: { item: string }) {
    return this.placeOrder(body);
  }

  @Post('short-orders')
  @Idempotent({ ttlSeconds: 1 })
  placeBriefly(@Body() body: { item: string }) {
    return this.placeOrder(body);
  }

  private async placeOrder(body: { item: string }) {
    const placed = await this.outbox.transaction(async (tx) => {
      const { rows } = await tx.query(
        `INSERT INTO ${ORDERS} (item) VALUES ($1) RETURNING id, created_at`,
        [body.item],
      );
      const [eventId] = await this.outbox.publish(tx, {
        topic: 'orders',
        type: 'order.placed',
        data: { id: rows[0].id, item: body.item },
      });
      if (body.item === 'cut' && !cutOnce) {
        cutOnce = true; // the connection dies mid-transaction (an admin, a failover), once
        await tx.query('SELECT pg_terminate_backend(pg_backend_pid())').catch(() => undefined);
      }
      if (body.item === 'held') await held.arrive();
      return { id: rows[0].id as number, createdAt: rows[0].created_at as Date, eventId };
    });
    return { ...placed, item: body.item };
  }
}

let ORDERS = '';
let cutOnce = false;

/**
 * docs/idempotency.md (exactly-once effects): inside an @Idempotent() request, outbox.transaction() commits its result with its
 * effects; a retry that Redis cannot answer (record lost) gets that result, and the effects do
 * not run again. Real PostgreSQL and Redis.
 */
describe.each(PLATFORMS)('on %s: exactly-once effects across a Redis that forgets', (platform) => {
  const schema = uniqueSchema('effects');
  let t: TestApp;
  const counts = () =>
    withClient(databaseUrl(), async (client) => {
      const orders = await client.query(`SELECT count(*)::int AS n FROM ${ORDERS}`);
      const events = await client.query(`SELECT count(*)::int AS n FROM "${schema}".sse_outbox`);
      return { orders: orders.rows[0].n, events: events.rows[0].n };
    });
  const post = (item: string, key: string, route = 'orders') =>
    fetch(`${t.url}/${route}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ item }),
    });
  /** Redis forgets everything this app stored (a restart without persistence, an eviction). */
  const redisForgets = () => deletePrefix(redisUrl(), schemaKeyPrefix(schema));

  beforeAll(async () => {
    cutOnce = false;
    t = await startApp([OrdersController], outboxOptions(schema, {}, 'redis'), { platform });
    ORDERS = `"${schema}".orders`;
    await withClient(databaseUrl(), (client) =>
      client.query(
        `CREATE TABLE ${ORDERS} (id serial PRIMARY KEY, item text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`,
      ),
    );
  });
  afterAll(async () => {
    await t?.close();
    await dropOutbox(schema);
  });
  beforeEach(() =>
    withClient(databaseUrl(), (client) =>
      client.query(`TRUNCATE ${ORDERS}, "${schema}".sse_outbox`),
    ),
  );

  it('answers a retry after Redis lost the record with the first body, byte for byte: one order, one event', async () => {
    const first = await post('book', 'k-lost');
    expect(first.status).toBe(201);
    const firstBody = await first.text();
    await redisForgets();

    const retry = await post('book', 'k-lost');
    expect(retry.status).toBe(201);
    expect(await retry.text()).toBe(firstBody);
    expect(await counts()).toEqual({ orders: 1, events: 1 });
    expect(t.app.get(OutboxService).stats.recordedOutcomesReturned).toBeGreaterThanOrEqual(1);

    // And Redis has the outcome again: the next retry is a plain replay.
    const again = await post('book', 'k-lost');
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(await again.text()).toBe(firstBody);
  });

  it('refuses the same key for a different body even when Redis forgot the first', async () => {
    expect((await post('pen', 'k-reused')).status).toBe(201);
    await redisForgets();
    const other = await post('pencil', 'k-reused');
    expect(other.status).toBe(422);
    expect(await counts()).toEqual({ orders: 1, events: 1 });
  });

  it('runs again once the recorded outcome has expired (the idempotency TTL)', async () => {
    expect((await post('old', 'k-expired')).status).toBe(201);
    await redisForgets();
    await withClient(databaseUrl(), (client) =>
      client.query(
        `UPDATE "${schema}".sse_outbox_effects SET expires_at = now() - interval '1 second' WHERE key = 'k-expired'`,
      ),
    );
    // Another body under the key: 422 while the record lived; now a new request.
    expect((await post('new', 'k-expired')).status).toBe(201);
    expect(await counts()).toEqual({ orders: 2, events: 2 });
  });

  it('lets only one of two concurrent executions of a key commit: the later commit rolls back and answers with the first', async () => {
    const first = post('held', 'k-twice');
    const releaseFirst = await held.next(); // inside its transaction, its order inserted
    await redisForgets(); // so Redis lets a second execution in
    const second = post('held', 'k-twice');
    // Nothing in PostgreSQL stops the second before its commit: it runs too.
    const releaseSecond = await held.next();
    releaseSecond();
    const b = await second; // it commits first
    releaseFirst(); // the first meets the second's record at COMMIT, and rolls back
    const a = await first;
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(await a.text()).toBe(await b.text());
    expect(await counts()).toEqual({ orders: 1, events: 1 });
  });

  it('keeps a record for its TTL counted from the commit, however long the transaction ran (a retry cannot claim over it)', async () => {
    // TTL 1 s; the first execution's transaction runs longer than that, Redis forgets it
    // meanwhile, and a retry arrives after the TTL counted from the first one's start.
    const started = Date.now();
    const first = post('held', 'k-slow', 'short-orders');
    const releaseFirst = await held.next();
    await redisForgets();
    // Time itself is the subject here: the TTL must have passed since the first began.
    await new Promise((resolve) =>
      setTimeout(resolve, Math.max(0, 1_300 - (Date.now() - started))),
    );
    const retry = post('held', 'k-slow', 'short-orders');
    const releaseRetry = await held.next();
    releaseFirst();
    const a = await first; // committed now: its record lives for 1 s from here
    releaseRetry();
    const b = await retry;
    expect([a.status, b.status]).toEqual([201, 201]);
    expect(await b.text()).toBe(await a.text());
    expect(await counts()).toEqual({ orders: 1, events: 1 });
  });

  it('places one order for 50 concurrent duplicates per wave, Redis flushed between and during waves', async () => {
    const bodies = new Set<string>();
    const statuses = new Map<number, number>();
    const returned = t.app.get(OutboxService).stats.recordedOutcomesReturned;
    for (let wave = 0; wave < 4; wave++) {
      const requests = Array.from({ length: 50 }, () => post('wave', 'k-waves'));
      // Forgotten while the wave is in flight too: several executions get past Redis at once
      // and meet in PostgreSQL.
      const forgetting = redisForgets();
      const responses = await Promise.all(requests);
      await forgetting;
      for (const response of responses) {
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        const text = await response.text();
        if (response.status === 201) bodies.add(text);
        else expect(response.status).toBe(409); // a duplicate still in flight
      }
      await redisForgets();
    }
    expect(statuses.get(201)).toBeGreaterThanOrEqual(4);
    expect(bodies.size).toBe(1);
    // Every wave after the first had an execution Redis could not stop, answered from PostgreSQL.
    expect(
      t.app.get(OutboxService).stats.recordedOutcomesReturned - returned,
    ).toBeGreaterThanOrEqual(3);
    expect(await counts()).toEqual({ orders: 1, events: 1 });
  });

  it('runs the effects once when the process died after COMMIT, before its response reached Redis', async () => {
    const child = fork(path.join(__dirname, 'crash-child.js'), [], {
      env: {
        ...process.env,
        SCHEMA: schema,
        KEY_PREFIX: schemaKeyPrefix(schema),
        DATABASE_URL: databaseUrl(),
        REDIS_URL: redisUrl(),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const exited = once(child, 'exit');
    const [ready] = (await once(child, 'message')) as [{ port: number }];
    const body = JSON.stringify({ item: 'crash', crash: true });
    const send = (url: string) =>
      fetch(`${url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': 'k-crash' },
        body,
      });
    // The child commits the order and its event, then is killed before answering.
    await expect(send(`http://127.0.0.1:${ready.port}`)).rejects.toThrow();
    const [, signal] = await exited;
    expect(signal).toBe('SIGKILL');
    expect(await counts()).toEqual({ orders: 1, events: 1 });

    // Another instance gets the retry: 409 while the dead one's lease (1 s) lasts, then the
    // handler runs, its transaction finds the committed outcome, and nothing runs twice.
    let retry = await send(t.url);
    const deadline = Date.now() + 10_000;
    while (retry.status === 409 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 200));
      retry = await send(t.url);
    }
    expect(retry.status).toBe(201);
    const answered = (await retry.json()) as { id: number; eventId: string; item: string };
    const recorded = await withClient(databaseUrl(), (client) =>
      client.query(
        `SELECT o.id, e.tx_id || '-' || e.id AS event_id FROM ${ORDERS} o, "${schema}".sse_outbox e`,
      ),
    );
    expect(answered).toMatchObject({
      id: recorded.rows[0].id,
      eventId: recorded.rows[0].event_id,
      item: 'crash',
    });
    expect(await counts()).toEqual({ orders: 1, events: 1 });
  });

  it('keeps a key and a result full of quotes and backslashes as they are (literals escaped)', async () => {
    const outbox = t.app.get(OutboxService);
    const { idempotentEffects } = await import('../../src/idempotency/idempotent-effects');
    const key = `k'); DELETE FROM ${ORDERS}; --\\'\\`;
    const request = () => ({
      scope: "s'\\",
      key,
      fingerprint: 'f',
      ttlMs: 60_000,
      transactions: 0,
    });
    const result = { text: `it's \\'quoted'\\ ; COMMIT; --`, n: [1, 2] };
    let runs = 0;
    const place = () =>
      outbox.transaction(async (tx) => {
        runs++;
        await tx.query(`INSERT INTO ${ORDERS} (item) VALUES ('quoted')`);
        return result;
      });
    expect(await idempotentEffects.run(request(), place)).toEqual(result);
    expect(await idempotentEffects.run(request(), place)).toEqual(result);
    expect(runs).toBe(1);
    const stored = await withClient(databaseUrl(), (client) =>
      client.query(
        `SELECT scope, key FROM "${schema}".sse_outbox_effects WHERE key LIKE 'k''); DELETE%'`,
      ),
    );
    expect(stored.rows).toEqual([{ scope: "s'\\", key }]);
    expect(await counts()).toEqual({ orders: 1, events: 0 });
  });

  it('answers 5xx when the connection dies mid-transaction, commits nothing, and the retry runs once', async () => {
    const cut = await post('cut', 'k-cut');
    expect(cut.status).toBeGreaterThanOrEqual(500);
    expect(await counts()).toEqual({ orders: 0, events: 0 });
    const retry = await post('cut', 'k-cut');
    expect(retry.status).toBe(201);
    await redisForgets();
    const again = await post('cut', 'k-cut');
    expect(await again.text()).toBe(await retry.text());
    expect(await counts()).toEqual({ orders: 1, events: 1 });
  });

  it('refuses a transaction result that cannot be JSON', async () => {
    const outbox = t.app.get(OutboxService);
    const { idempotentEffects } = await import('../../src/idempotency/idempotent-effects');
    const effects = { scope: '', key: 'k-json', fingerprint: 'f', ttlMs: 60_000, transactions: 0 };
    await expect(
      idempotentEffects.run(effects, () => outbox.transaction(async () => ({ n: 1n }))),
    ).rejects.toThrow(/JSON-serializable result/);
  });

  it('says what to apply when migrations run by the team predate the _effects table', async () => {
    const outbox = t.app.get(OutboxService);
    const { idempotentEffects } = await import('../../src/idempotency/idempotent-effects');
    const effects = { scope: '', key: 'k-old', fingerprint: 'f', ttlMs: 60_000, transactions: 0 };
    await withClient(databaseUrl(), (client) =>
      client.query(`DROP TABLE "${schema}".sse_outbox_effects`),
    );
    try {
      await expect(
        idempotentEffects.run(effects, () => outbox.transaction(async () => 1)),
      ).rejects.toThrow(/_effects table: apply docs\/outbox-schema.sql/);
    } finally {
      await outbox.migrate();
    }
  });
});

/**
 * Resolves once a claim on this suite's effects table waits on a transaction lock: the second
 * execution, blocked by the first's uncommitted claim (other suites' waits, on the same server,
 * do not count).
 */
