/**
 * What the fleet costs the database: 1 / 2 / 4 / 8 instances follow the same event stream, with
 * `fanout: 'postgres'` (every instance reads the table) and `'redis'` (one leader reads it and
 * appends to a Redis Stream the others follow). Per published event: PostgreSQL transactions
 * (the publisher's own included) and rows read, from pg_stat_database; Redis commands, from
 * INFO stats. Then commit → receipt latency at a fixed rate, next to a floor measured on the same
 * transactions: a bare client LISTENing for a NOTIFY each of them also sends.
 *
 *   npm run bench -- scale [--instances 1,2,4,8] [--modes postgres,redis] [--events 1000]
 *     [--rate 200] [--latency-rate 1000] [--subscribers 100] [--seconds 5]
 *
 * DATABASE_URL / REDIS_URL (defaults: the local servers); a schema and key prefix of its own.
 * Run it alone: both servers' counters are global.
 */
import { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import Redis from 'ioredis';
import { Client } from 'pg';
import {
  ask,
  listOption,
  numericOption,
  spawnChild,
  stopChild,
  writeReport,
} from '../shared/child';
import { now, openStream, round, summarize } from '../shared/sse-client';

const INSTANCES = listOption('instances', '1,2,4,8').map(Number);
const MODES = listOption('modes', 'postgres,redis');
const EVENTS = numericOption('events', 1000);
const RATE = numericOption('rate', 200);
const LATENCY_RATE = numericOption('latency-rate', 1000);
const SUBSCRIBERS = numericOption('subscribers', 100);
const SECONDS = numericOption('seconds', 5);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
/** Lets the fleet settle (and its start-up counts reach pg_stat_database) before measuring. */
const STATS_FLUSH_MS = 1_500;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Fleet {
  schema: string;
  keyPrefix: string;
  servers: Array<{ child: ChildProcess; port: number }>;
}

async function startFleet(mode: string, count: number): Promise<Fleet> {
  const schema = `bench_${randomBytes(4).toString('hex')}`;
  const keyPrefix = `bench:${schema}:`;
  const file = path.join(__dirname, 'server.js');
  const args = (migrate: boolean) => [
    DATABASE_URL,
    schema,
    mode,
    REDIS_URL,
    keyPrefix,
    migrate ? 'migrate' : 'no',
  ];
  const first = await spawnChild(file, args(true));
  const rest = await Promise.all(
    Array.from({ length: count - 1 }, () => spawnChild(file, args(false))),
  );
  const servers = [first, ...rest].map(({ child, ready }) => ({ child, port: ready.port }));
  if (mode === 'redis') {
    const deadline = now() + 15_000;
    for (;;) {
      const states = await Promise.all(servers.map((s) => ask(s.child, { cmd: 'state' }, 'state')));
      if (states.some((s) => s.leading)) break;
      if (now() > deadline) throw new Error('no instance took the lead within 15 s');
      await sleep(50);
    }
  }
  return { schema, keyPrefix, servers };
}

async function dropFleet(fleet: Fleet, admin: Client, redis: Redis): Promise<void> {
  await admin.query(`DROP SCHEMA IF EXISTS "${fleet.schema}" CASCADE`);
  const keys = await redis.keys(`${fleet.keyPrefix}*`);
  if (keys.length) await redis.del(...keys);
}

/** Publishes `count` events at `rate` in the publisher child; resolves when all committed. */
function publish(publisher: ChildProcess, schema: string, count: number, rate: number) {
  return ask(publisher, { cmd: 'run', schema, count, rate }, 'done') as Promise<{
    elapsedMs: number;
  }>;
}

async function databaseCounters(admin: Client) {
  const { rows } = await admin.query(
    `SELECT xact_commit + xact_rollback AS xacts, tup_returned + tup_fetched AS rows
     FROM pg_stat_database WHERE datname = current_database()`,
  );
  return { xacts: Number(rows[0].xacts), rows: Number(rows[0].rows) };
}

async function redisCommands(redis: Redis): Promise<number> {
  const info = await redis.info('stats');
  return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
}

async function waitFor(count: () => number, target: number, timeoutMs: number): Promise<boolean> {
  const deadline = now() + timeoutMs;
  while (count() < target) {
    if (now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/**
 * PostgreSQL counts a backend's transactions in pg_stat_database late: when it has been idle a
 * while (up to 10 s) or when it disconnects. So the fleet and the publisher are started fresh for
 * each phase and both have exited (every backend flushed) before the counters are read again.
 */
async function cost(mode: string, count: number, admin: Client, redis: Redis) {
  const fleet = await startFleet(mode, count);
  const { child: publisher } = await spawnChild(path.join(__dirname, 'publisher.js'), [
    DATABASE_URL,
  ]);
  let delivered = 0;
  const streams: http.ClientRequest[] = await Promise.all(
    fleet.servers.map((s) => openStream(s.port, '/stream', () => delivered++)),
  );
  await sleep(STATS_FLUSH_MS);
  const pgBefore = await databaseCounters(admin);
  const redisBefore = await redisCommands(redis);
  const started = now();
  await publish(publisher, fleet.schema, EVENTS, RATE);
  const complete = await waitFor(() => delivered, EVENTS * count, 60_000);
  const windowMs = now() - started;
  const redisAfter = await redisCommands(redis);
  streams.forEach((s) => s.destroy());
  await stopChild(publisher);
  await Promise.all(fleet.servers.map((s) => stopChild(s.child)));
  await sleep(500);
  const pgAfter = await databaseCounters(admin);
  await dropFleet(fleet, admin, redis);
  return {
    mode,
    instances: count,
    events: EVENTS,
    rate: RATE,
    lost: EVENTS * count - delivered,
    complete,
    windowMs: Math.round(windowMs),
    pgTransactionsPerEvent: round((pgAfter.xacts - pgBefore.xacts) / EVENTS),
    pgRowsReadPerEvent: round((pgAfter.rows - pgBefore.rows) / EVENTS),
    redisCommandsPerEvent: round((redisAfter - redisBefore) / EVENTS),
  };
}

async function latency(mode: string, admin: Client, redis: Redis) {
  const fleet = await startFleet(mode, 2);
  const { child: publisher } = await spawnChild(path.join(__dirname, 'publisher.js'), [
    DATABASE_URL,
  ]);
  const floorClient = new Client({ connectionString: DATABASE_URL });
  await floorClient.connect();
  await floorClient.query('LISTEN bench_floor');
  const floor: number[] = [];
  floorClient.on('notification', (n) => floor.push(now() - Number(n.payload)));
  const latencies: number[] = [];
  let delivered = 0;
  const streams: http.ClientRequest[] = [];
  for (let i = 0; i < SUBSCRIBERS; i++) {
    const server = fleet.servers[i % fleet.servers.length];
    streams.push(
      await openStream(
        server.port,
        '/stream',
        () => delivered++,
        (ms) => latencies.push(ms),
      ),
    );
  }
  const count = LATENCY_RATE * SECONDS;
  const run = await publish(publisher, fleet.schema, count, LATENCY_RATE);
  const complete = await waitFor(() => delivered, count * SUBSCRIBERS, 60_000);
  await waitFor(() => floor.length, count, 5_000);
  streams.forEach((s) => s.destroy());
  await floorClient.end();
  await stopChild(publisher);
  await Promise.all(fleet.servers.map((s) => stopChild(s.child)));
  await dropFleet(fleet, admin, redis);
  const receipt = summarize(latencies);
  const floorSummary = summarize(floor);
  return {
    mode,
    instances: 2,
    subscribers: SUBSCRIBERS,
    targetRate: LATENCY_RATE,
    committedPerSecond: Math.round(count / (run.elapsedMs / 1000)),
    complete,
    lost: count * SUBSCRIBERS - delivered,
    commitToReceiptMs: receipt,
    floorMs: floorSummary,
    p99VsFloor: round(receipt.p99 / floorSummary.p99),
  };
}

async function main() {
  const admin = new Client({ connectionString: DATABASE_URL });
  await admin.connect();
  const redis = new Redis(REDIS_URL);
  const report: Record<string, unknown> = {
    benchmark: 'scale',
    date: new Date().toISOString(),
    node: process.version,
    postgres: (await admin.query('SHOW server_version')).rows[0].server_version,
    redis: /redis_version:(\S+)/.exec(await redis.info('server'))![1],
  };
  const costs = [];
  for (const mode of MODES) {
    for (const count of INSTANCES) {
      const row = await cost(mode, count, admin, redis);
      console.log(JSON.stringify(row));
      costs.push(row);
    }
  }
  report.cost = costs;
  const latencies = [];
  for (const mode of MODES) {
    const row = await latency(mode, admin, redis);
    console.log(JSON.stringify(row));
    latencies.push(row);
  }
  report.latency = latencies;
  await admin.end();
  redis.disconnect();

  console.log(
    `\nscale: ${EVENTS} single-event transactions at ${RATE}/s; PostgreSQL ${report.postgres}, Redis ${report.redis}\n`,
  );
  const table: Record<string, Record<string, unknown>> = {};
  for (const row of costs) {
    table[`${row.instances} instance(s)`] ??= {};
    table[`${row.instances} instance(s)`][`${row.mode}: PG tx/event`] = row.pgTransactionsPerEvent;
    table[`${row.instances} instance(s)`][`${row.mode}: PG rows/event`] = row.pgRowsReadPerEvent;
    table[`${row.instances} instance(s)`][`${row.mode}: Redis cmd/event`] =
      row.redisCommandsPerEvent;
    if (row.lost) table[`${row.instances} instance(s)`][`${row.mode}: lost`] = row.lost;
  }
  console.table(table);
  const latencyTable: Record<string, unknown> = {};
  for (const row of latencies) {
    latencyTable[
      `${row.mode}: ${row.committedPerSecond} ev/s to ${row.subscribers} subscribers on 2 instances`
    ] = {
      'p50 ms': row.commitToReceiptMs.p50,
      'p99 ms': row.commitToReceiptMs.p99,
      'floor p50 ms': row.floorMs.p50,
      'floor p99 ms': row.floorMs.p99,
      'p99 ÷ floor': row.p99VsFloor,
      lost: row.lost,
    };
  }
  console.table(latencyTable);
  writeReport('scale', report);
  process.exit(0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
