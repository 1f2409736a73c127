/**
 * Cache memory: what the relay's recent-events cache (outbox.replayCacheBytes, 16 MiB by default)
 * really holds. N orders go through the orders example's `POST /orders` over HTTP, in this
 * process (so the cache's frames are allocated among an HTTP server's ordinary garbage, as in
 * production); then, after full GCs, the process' ArrayBuffer memory is read. It should stay
 * within the budget: small cached Buffers would each pin a shared 8 KiB pool slab (issue 11
 * measured 56–84 MB for a 16 MiB budget).
 *
 *   npm run bench -- cache-memory [--orders 80000] [--concurrency 20]
 *
 * Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/postgres) and REDIS_URL, in a
 * schema and key prefix of its own.
 */
import 'reflect-metadata';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Client } from 'pg';
import { OutboxRelay } from '../../src';
import { OUTBOX_DEFAULTS } from '../../src/config/sse-module-options';
import { createOrdersApp } from '../../examples/orders/app';
import { resolveBackends } from '../../examples/orders/backends';
import { numericOption, writeReport } from '../shared/child';

const ORDERS = numericOption('orders', 80_000);
const CONCURRENCY = numericOption('concurrency', 20);

setFlagsFromString('--expose_gc');
const gc = runInNewContext('gc') as () => void;

function memory() {
  for (let i = 0; i < 4; i++) gc();
  const { arrayBuffers, heapUsed, rss } = process.memoryUsage();
  const mb = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10;
  return { arrayBuffersMB: mb(arrayBuffers), heapMB: mb(heapUsed), rssMB: mb(rss) };
}

async function main() {
  const schema = `bench_cache_${Date.now()}`;
  const backends = await resolveBackends({});
  if (backends.postgres.kind !== 'server') {
    throw new Error('cache-memory needs a PostgreSQL server (DATABASE_URL or 127.0.0.1:5432)');
  }
  const { app, close } = await createOrdersApp(backends, {
    schema,
    redisKeyPrefix: `${schema}:`,
    logger: ['error'],
  });
  try {
    await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    const before = memory();
    let next = 0;
    const worker = async () => {
      while (next < ORDERS) {
        const i = next++;
        const response = await fetch(`${url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ item: `item-${i}-${'x'.repeat(40)}`, quantity: 1 + (i % 9) }),
        });
        if (response.status >= 300) throw new Error(`POST /orders: ${response.status}`);
        await response.arrayBuffer();
      }
    };
    const started = Date.now();
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    const relay = app.get(OutboxRelay);
    // Bounded wait for the relay to hand over the last commits (it polls every second at most).
    const deadline = Date.now() + 10_000;
    while (relay.stats.events < 2 * ORDERS && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const after = memory();
    const report = {
      benchmark: 'cache-memory',
      date: new Date().toISOString(),
      node: process.version,
      orders: ORDERS,
      seconds: Math.round((Date.now() - started) / 100) / 10,
      eventsRelayed: relay.stats.events,
      replayCacheBytes: OUTBOX_DEFAULTS.replayCacheBytes,
      before,
      after,
    };
    console.table({ before, after });
    writeReport('cache-memory', report);
  } finally {
    await close();
    const admin = new Client({ connectionString: backends.postgres.url });
    await admin.connect();
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    await admin.end();
  }
  process.exit(0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
