/**
 * The outbox's cost on the business transaction (issue 24). For 1/8/32/64 concurrent writers:
 *
 * - plain: each writer runs BEGIN; INSERT an order; COMMIT on a pg.Pool of the writers' size;
 * - through the module: each writer runs `outbox.transaction()` inserting the same order and
 *   publishing one event, on the module's pool of the same size, for each fan-out and each
 *   `outbox.wakeup`; one SSE subscriber, on another instance, must receive every event, in order;
 *
 * the writers spread over --processes load-generating processes (writer.ts; 2 by default), the
 * module's writers each an instance of their own, so no case is bounded by one Node.js process;
 * rounds alternated, tx/s and the ratio to plain within the same round. Then a quiet run
 * (100 events/s, 10 streams): commit → receipt latency, measured from the moment COMMIT returned
 * to the event's arrival on a stream. Then the database alone, with pgbench: orders only, with
 * the outbox row, with the row and the NOTIFY trigger, and with the row and one NOTIFY per
 * transaction sent after its commit (the module's wake-up, without its coalescing).
 *
 *   npm run bench -- write-path [--writers 1,8,32,64] [--seconds 5] [--rounds 2] [--modes ...]
 *     [--processes 2]
 *     [--quiet-seconds 10] [--no-pgbench]
 *
 * DATABASE_URL / REDIS_URL (defaults: the local servers); a schema and key prefix of its own.
 */
import 'reflect-metadata';
import { Controller, INestApplication, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { ChildProcess, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import Redis from 'ioredis';
import { Client } from 'pg';
import { OutboxService, Sse, SseModule } from '../../src';
import { ask, listOption, numericOption, spawnChild, writeReport } from '../shared/child';
import type { WriterConfig } from './writer';
import { now, round, summarize } from '../shared/sse-client';

const WRITERS = listOption('writers', '1,8,32,64').map(Number);
const MODES = listOption('modes', 'postgres/after-commit,redis/after-commit,postgres/trigger');
const SECONDS = numericOption('seconds', 5);
const ROUNDS = numericOption('rounds', 2);
const QUIET_SECONDS = numericOption('quiet-seconds', 10);
const PROCESSES = numericOption('processes', 2);
const PGBENCH = !process.argv.includes('--no-pgbench');
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const SCHEMA = `bench_${randomBytes(4).toString('hex')}`;
const ORDERS = `"${SCHEMA}".orders`;
let apps = 0;

@Controller()
class FeedController {
  @Sse('feed', { topic: 'orders' })
  feed() {}
}

/** One SSE client: counts events, checks their ids only grow, records commit → receipt. */
function subscribe(port: number, commits: Map<number, number>, latencies: number[]) {
  const state = { received: 0, outOfOrder: 0, last: [-1n, -1n] as [bigint, bigint] };
  const request = http.get({ host: '127.0.0.1', port, path: '/feed', agent: false });
  const opened = new Promise<void>((resolve, reject) => {
    request.on('error', reject);
    request.on('response', (res) => {
      res.setEncoding('utf8');
      let buffer = '';
      res.on('data', (chunk: string) => {
        const at = now();
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const data = /^data: (.*)$/m.exec(frame);
          const id = /^id: (\d+)-(\d+)$/m.exec(frame);
          if (!data || !id) continue;
          state.received++;
          const position: [bigint, bigint] = [BigInt(id[1]), BigInt(id[2])];
          const [tx, n] = state.last;
          if (position[0] < tx || (position[0] === tx && position[1] <= n)) state.outOfOrder++;
          state.last = position;
          const seq = (JSON.parse(data[1]) as { n: number }).n;
          const committed = commits.get(seq);
          if (committed !== undefined) {
            latencies.push(at - committed);
            commits.delete(seq);
          }
        }
      });
      resolve();
    });
  });
  return { state, opened, close: () => request.destroy() };
}

async function startModule(
  fanout: 'postgres' | 'redis',
  wakeup: 'after-commit' | 'trigger',
  poolSize: number,
  keyPrefix = `${SCHEMA}:${++apps}:`,
): Promise<INestApplication> {
  @Module({
    imports: [
      SseModule.forRoot({
        sse: { heartbeatMs: 3_600_000, maxConnections: 1_000, maxBufferedBytes: 64 << 20 },
        postgres: {
          connectionString: DATABASE_URL,
          schema: SCHEMA,
          pool: { max: poolSize, connectionTimeoutMs: 60_000 },
        },
        outbox: { fanout, wakeup, batchSize: 1_000 },
        // A stream of its own per round: what one run appended is not the next one's history.
        ...(fanout === 'redis' ? { redis: { url: REDIS_URL, keyPrefix } } : {}),
        health: { path: false },
      }),
    ],
    controllers: [FeedController],
  })
  class BenchModule {}
  const app = await NestFactory.create(BenchModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  return app;
}

/** Resolves as `promise` does, or rejects saying what took longer than `ms`. */
function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
    }),
  ]);
}

async function stopWithin(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.send({ cmd: 'exit' });
  await within(exited, 10_000, 'a writer exiting').catch(() => child.kill('SIGKILL'));
}

/**
 * `writers` transactions at a time for SECONDS, spread over PROCESSES load-generating processes
 * (writer.ts), all told to start at once: transactions per second, and what they sent.
 */
async function runWriters(
  mode: string,
  writers: number,
  keyPrefix: string,
): Promise<{ txPerSecond: number; published: number; notifications: number }> {
  const count = Math.min(PROCESSES, writers);
  const shares = Array.from(
    { length: count },
    (_, i) => Math.floor(writers / count) + (i < writers % count ? 1 : 0),
  );
  const started: ChildProcess[] = [];
  try {
    await Promise.all(
      shares.map(async (share, i) => {
        const config: WriterConfig = {
          mode,
          writers: share,
          seconds: SECONDS,
          databaseUrl: DATABASE_URL,
          redisUrl: REDIS_URL,
          schema: SCHEMA,
          keyPrefix,
          firstSeq: i * 1_000_000_000,
        };
        const { child } = await within(
          spawnChild(path.join(__dirname, 'writer.js'), [JSON.stringify(config)]),
          60_000,
          'a writer starting',
        );
        started.push(child);
      }),
    );
    const results = await Promise.all(
      started.map((child) =>
        within(ask(child, { cmd: 'run' }, 'done'), (SECONDS + 60) * 1000, 'a writer running'),
      ),
    );
    const published = results.reduce((sum, r) => sum + (r.committed as number), 0);
    return {
      txPerSecond: published / SECONDS,
      published,
      notifications: results.reduce((sum, r) => sum + (r.notifications as number), 0),
    };
  } finally {
    await Promise.all(started.map(stopWithin));
  }
}

async function plainRound(writers: number): Promise<number> {
  return (await runWriters('plain', writers, '')).txPerSecond;
}

interface ModuleResult {
  txPerSecond: number;
  delivered: number;
  published: number;
  outOfOrder: number;
  notifications: number;
  drainMs: number;
}

/**
 * The writers through the module, in their own processes (each an instance); this process is
 * one more instance, with the one SSE subscriber that must receive every event, in order.
 */
async function moduleRound(mode: string, writers: number): Promise<ModuleResult> {
  const [fanout, wakeup] = mode.split('/') as ['postgres' | 'redis', 'after-commit' | 'trigger'];
  const keyPrefix = `${SCHEMA}:${++apps}:`;
  const app = await startModule(fanout, wakeup, 4, keyPrefix);
  const { port } = app.getHttpServer().address() as AddressInfo;
  const subscriber = subscribe(port, new Map(), []);
  await subscriber.opened;
  try {
    const { txPerSecond, published, notifications } = await runWriters(mode, writers, keyPrefix);
    // Every event must arrive: wait for the stream to catch up (bounded).
    const drainStart = now();
    while (subscriber.state.received < published && now() - drainStart < 30_000)
      await new Promise((resolve) => setTimeout(resolve, 20));
    return {
      txPerSecond,
      published,
      delivered: subscriber.state.received,
      outOfOrder: subscriber.state.outOfOrder,
      notifications,
      drainMs: round(now() - drainStart),
    };
  } finally {
    subscriber.close();
    await app.close();
  }
}

/** 100 events/s, one per transaction, to 10 streams: commit → receipt. */
async function quietRun(mode: string) {
  const [fanout, wakeup] = mode.split('/') as ['postgres' | 'redis', 'after-commit' | 'trigger'];
  const app = await startModule(fanout, wakeup, 4);
  const outbox = app.get(OutboxService);
  const { port } = app.getHttpServer().address() as AddressInfo;
  const latencies: number[] = [];
  const commits = new Map<number, number>();
  // One stream measures (each commit is timed once); nine more are load.
  const measured = subscribe(port, commits, latencies);
  const others = Array.from({ length: 9 }, () => subscribe(port, new Map(), []));
  await Promise.all([measured.opened, ...others.map((s) => s.opened)]);
  try {
    const count = QUIET_SECONDS * 100;
    const start = now();
    for (let seq = 0; seq < count; seq++) {
      const wait = start + seq * 10 - now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      await outbox.transaction((tx) => outbox.publish(tx, { topic: 'orders', data: { n: seq } }));
      commits.set(seq, now());
    }
    const deadline = now() + 10_000;
    while (measured.state.received < count && now() < deadline)
      await new Promise((resolve) => setTimeout(resolve, 20));
    return { ...summarize(latencies), received: measured.state.received, sent: count };
  } finally {
    measured.close();
    others.forEach((s) => s.close());
    await app.close();
  }
}

/** pgbench on the same statements, the database alone; tx/s by clients. */
function pgbenchRuns() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'write-path-'));
  const outboxInsert = `INSERT INTO "${SCHEMA}".sse_outbox (topic, type, payload) VALUES ('orders', 'order', '{"n":1}');`;
  const scripts: Record<string, string> = {
    'orders only': `BEGIN;\nINSERT INTO ${ORDERS} (item) VALUES ('x');\nCOMMIT;\n`,
    '+ outbox row': `BEGIN;\nINSERT INTO ${ORDERS} (item) VALUES ('x');\n${outboxInsert}\nCOMMIT;\n`,
    '+ row, NOTIFY in the transaction': `BEGIN;\nINSERT INTO ${ORDERS} (item) VALUES ('x');\n${outboxInsert}\nSELECT pg_notify('bench_wp', '');\nCOMMIT;\n`,
    '+ row, NOTIFY after commit': `BEGIN;\nINSERT INTO ${ORDERS} (item) VALUES ('x');\n${outboxInsert}\nCOMMIT;\nSELECT pg_notify('bench_wp', '');\n`,
  };
  const url = new URL(DATABASE_URL);
  const results: Record<string, Record<number, number>> = {};
  for (const [name, script] of Object.entries(scripts)) {
    const file = path.join(dir, `${name.replace(/\W+/g, '_')}.sql`);
    fs.writeFileSync(file, script);
    results[name] = {};
    for (const clients of WRITERS) {
      const run = spawnSync(
        'pgbench',
        [
          '-n',
          '-h',
          url.hostname,
          '-p',
          url.port || '5432',
          '-U',
          url.username || 'postgres',
          '-c',
          String(clients),
          '-j',
          String(Math.min(clients, 2)),
          '-T',
          String(SECONDS),
          '-f',
          file,
          url.pathname.slice(1),
        ],
        { encoding: 'utf8' },
      );
      const tps = /tps = ([\d.]+)/.exec(run.stdout ?? '');
      results[name][clients] = tps ? Math.round(Number(tps[1])) : NaN;
      if (!tps) console.error(`pgbench (${name}, ${clients}): ${run.stderr || run.error}`);
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
  return results;
}

async function main() {
  const setup = new Client({ connectionString: DATABASE_URL });
  await setup.connect();
  await setup.query(`CREATE SCHEMA "${SCHEMA}"`);
  await setup.query(`CREATE TABLE ${ORDERS} (id bigserial PRIMARY KEY, item text NOT NULL)`);
  const table: Array<Record<string, unknown>> = [];
  try {
    // The outbox tables, created once by the module.
    await (await startModule('postgres', 'after-commit', 1)).close();
    for (const writers of WRITERS) {
      for (let r = 0; r < ROUNDS; r++) {
        const plain = await plainRound(writers);
        const row: Record<string, unknown> = { writers, round: r + 1, plain: Math.round(plain) };
        for (const mode of MODES) {
          const result = await moduleRound(mode, writers);
          row[mode] = Math.round(result.txPerSecond);
          row[`${mode} ratio`] = round(result.txPerSecond / plain);
          row[`${mode} delivered`] =
            result.delivered === result.published && result.outOfOrder === 0
              ? 'all, in order'
              : `${result.delivered}/${result.published}, ${result.outOfOrder} out of order`;
          row[`${mode} NOTIFYs/tx`] = round(result.notifications / Math.max(1, result.published));
        }
        table.push(row);
        console.log(JSON.stringify(row));
        // Between rounds: no table growth carried into the next.
        await setup.query(`TRUNCATE ${ORDERS}, "${SCHEMA}".sse_outbox`);
      }
    }
    const quiet: Record<string, unknown> = {};
    for (const mode of MODES) {
      quiet[mode] = await quietRun(mode);
      console.log(mode, JSON.stringify(quiet[mode]));
    }
    // The database alone: no trigger left by a 'trigger' round (the scripts notify themselves).
    await setup.query(`DROP TRIGGER IF EXISTS sse_outbox_notify ON "${SCHEMA}".sse_outbox`);
    const pgbench = PGBENCH ? pgbenchRuns() : undefined;
    console.table(table);
    console.table(quiet);
    if (pgbench) console.table(pgbench);
    writeReport('write-path', { seconds: SECONDS, rounds: table, quiet, pgbench });
  } finally {
    await setup.query(`DROP SCHEMA "${SCHEMA}" CASCADE`);
    await setup.end();
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${SCHEMA}:*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
