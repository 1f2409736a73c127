/**
 * The write path held for a while (issue 24's adversary "thousands of tiny transactions a second
 * from 64 writers for a minute"): 40 writers through `outbox.transaction()` and 24 publishing
 * into transactions of their own (watched until they commit), one instance, for --seconds.
 * Every 10 s: heap after a GC, RSS, transactions, transactions watched, and the wake-up's
 * counters; at the end every event must have reached the relay and nothing may be left watched.
 *
 *   npm run bench -- write-soak [--seconds 60] [--replay-cache-bytes 1000000]
 *
 * The relay's cache of recent events grows to its bound (`outbox.replayCacheBytes`, 16 MiB by
 * default) by design; a small bound here shows what else grows. Heap figures are after a
 * collection (bench/run.js starts benchmarks with --expose-gc).
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomBytes } from 'node:crypto';
import { Client, Pool } from 'pg';
import { OutboxService, SseModule } from '../../src';
import { OutboxRelay } from '../../src/outbox/read/outbox-relay';
import { OutboxWakeup } from '../../src/outbox/write/outbox-wakeup';
import { numericOption, writeReport } from '../shared/child';

const SECONDS = numericOption('seconds', 60);
const CACHE_BYTES = numericOption('replay-cache-bytes', 1_000_000);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `bench_soak_${randomBytes(4).toString('hex')}`;
const ORDERS = `"${SCHEMA}".orders`;

async function main() {
  const setup = new Client({ connectionString: DATABASE_URL });
  await setup.connect();
  await setup.query(`CREATE SCHEMA "${SCHEMA}"`);
  await setup.query(`CREATE TABLE ${ORDERS} (id bigserial PRIMARY KEY, item text NOT NULL)`);
  @Module({
    imports: [
      SseModule.forRoot({
        postgres: { connectionString: DATABASE_URL, schema: SCHEMA, pool: { max: 40 } },
        outbox: { batchSize: 1_000, replayCacheBytes: CACHE_BYTES },
        health: { path: false },
      }),
    ],
  })
  class SoakModule {}
  const app = await NestFactory.create(SoakModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const outbox = app.get(OutboxService);
  const wakeup = app.get(OutboxWakeup);
  const relay = app.get(OutboxRelay);
  const callers = new Pool({ connectionString: DATABASE_URL, max: 24 });
  const counts = { own: 0, caller: 0, maxWatching: 0 };
  const samples: Array<Record<string, number>> = [];
  const started = Date.now();
  const end = started + SECONDS * 1000;
  const sample = setInterval(() => {
    (globalThis as { gc?: () => void }).gc?.();
    const memory = process.memoryUsage();
    const row = {
      seconds: Math.round((Date.now() - started) / 1000),
      heapMB: Math.round(memory.heapUsed / 1e5) / 10,
      rssMB: Math.round(memory.rss / 1e5) / 10,
      transactions: counts.own + counts.caller,
      watching: wakeup.watching,
      notifications: wakeup.stats.notifications,
      checks: wakeup.stats.checks,
      relayReads: relay.stats.reads,
    };
    samples.push(row);
    console.log(JSON.stringify(row));
  }, 10_000);
  try {
    await Promise.all(
      Array.from({ length: 64 }, async (_, writer) => {
        while (Date.now() < end) {
          if (writer < 40) {
            await outbox.transaction(async (tx) => {
              const { rows } = await tx.query(
                `INSERT INTO ${ORDERS} (item) VALUES ('own') RETURNING id`,
              );
              await outbox.publish(tx, { topic: 'orders', data: { id: rows[0].id } });
            });
            counts.own++;
            continue;
          }
          const client = await callers.connect();
          try {
            await client.query('BEGIN');
            const { rows } = await client.query(
              `INSERT INTO ${ORDERS} (item) VALUES ('caller') RETURNING id`,
            );
            await outbox.publish(client, { topic: 'orders', data: { id: rows[0].id } });
            counts.maxWatching = Math.max(counts.maxWatching, wakeup.watching);
            await client.query('COMMIT');
            counts.caller++;
          } finally {
            client.release();
          }
        }
      }),
    );
    clearInterval(sample);
    const published = counts.own + counts.caller;
    const deadline = Date.now() + 30_000;
    while ((relay.stats.events < published || wakeup.watching > 0) && Date.now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const result = {
      seconds: SECONDS,
      replayCacheBytes: CACHE_BYTES,
      ...counts,
      txPerSecond: Math.round(published / SECONDS),
      delivered: relay.stats.events,
      leftWatched: wakeup.watching,
      wakeup: wakeup.stats,
      samples,
    };
    writeReport('write-soak', result);
    if (relay.stats.events !== published || wakeup.watching !== 0) process.exitCode = 1;
  } finally {
    clearInterval(sample);
    await app.close();
    await callers.end();
    await setup.query(`DROP SCHEMA "${SCHEMA}" CASCADE`);
    await setup.end();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
