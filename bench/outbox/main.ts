/**
 * Outbox end to end: transaction start → SSE receipt latency at a fixed event rate with many
 * subscribers, sustained throughput (committed and delivered events/s) with 1, 10 and 100
 * events per transaction, the wake-up sent by the trigger inside the transaction vs by the
 * publisher after commit, and a bare LISTEN/NOTIFY round trip as the floor.
 *
 *   npm run bench -- outbox [--subscribers 1000] [--rates 100,1000,5000] [--seconds 10] [--throughput-seconds 5]
 *
 * Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) in a schema of its own.
 */
import { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as http from 'node:http';
import * as path from 'node:path';
import { Client } from 'pg';
import { ask, numericOption, spawnChild, stopChild as stop, writeReport } from '../shared/child';
import { now, openStream, round, summarize } from '../shared/sse-client';
import { outboxSql } from '../../src/outbox/store/outbox.sql';

const SUBSCRIBERS = numericOption('subscribers', 1000);
/** `--rates 100,1000,5000` (or a single `--rate N`): one latency phase per rate. */
const RATES = (() => {
  const args = process.argv.slice(2);
  const i = args.indexOf('--rates');
  if (i >= 0) return args[i + 1].split(',').map(Number);
  const single = numericOption('rate', 0);
  return single > 0 ? [single] : [100, 1000, 5000];
})();
/** Deliveries one latency phase may produce: a rate the machine cannot keep up with would
 * otherwise take minutes to drain; its phase is shortened instead (and says so). */
const MAX_DELIVERIES_PER_PHASE = numericOption('max-deliveries', 10_000_000);
const SECONDS = numericOption('seconds', 10);
const THROUGHPUT_SECONDS = numericOption('throughput-seconds', 5);
const LATENCY_SAMPLERS = Math.min(SUBSCRIBERS, 50);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `bench_${randomBytes(4).toString('hex')}`;

/** Sequential NOTIFY → notification round trips on two plain connections. */
async function listenNotifyFloor(count = 1000) {
  const listener = new Client({ connectionString: DATABASE_URL });
  const notifier = new Client({ connectionString: DATABASE_URL });
  await Promise.all([listener.connect(), notifier.connect()]);
  await listener.query('LISTEN bench_floor');
  const latencies: number[] = [];
  for (let i = 0; i < count; i++) {
    const received = new Promise<void>((resolve) =>
      listener.once('notification', (n) => {
        latencies.push(now() - Number(n.payload));
        resolve();
      }),
    );
    await notifier.query(`SELECT pg_notify('bench_floor', $1)`, [String(now())]);
    await received;
  }
  await Promise.all([listener.end(), notifier.end()]);
  return summarize(latencies);
}

/** Waits until `count()` reaches `target` or `timeoutMs` passes; returns when it stopped. */
async function waitFor(count: () => number, target: number, timeoutMs: number): Promise<number> {
  const deadline = now() + timeoutMs;
  while (count() < target && now() < deadline) await new Promise((r) => setTimeout(r, 20));
  return now();
}

async function main() {
  const admin = new Client({ connectionString: DATABASE_URL });
  await admin.connect();
  const report: Record<string, unknown> = {
    benchmark: 'outbox',
    date: new Date().toISOString(),
    node: process.version,
    postgres: (await admin.query('SHOW server_version')).rows[0].server_version,
  };
  try {
    report.listenNotifyFloorMs = await listenNotifyFloor();

    const { child: server, ready } = await spawnChild(path.join(__dirname, 'server.js'), [
      DATABASE_URL,
      SCHEMA,
    ]);
    const port: number = ready.port;
    const { child: publisher } = await spawnChild(path.join(__dirname, 'publisher.js'), [
      DATABASE_URL,
      SCHEMA,
      'trigger',
    ]);

    // Phases 1 and 2 wake the relay with the trigger (`outbox.wakeup: 'trigger'`): the publisher
    // is a plain pg process, a writer the module knows nothing of. Phase 3 drops it.
    for (const statement of outboxSql({
      schema: SCHEMA,
      table: 'sse_outbox',
      channel: 'sse_outbox',
      wakeup: 'trigger',
    }).migrate)
      await admin.query(statement);
    // 1. Latency at each rate, one event per transaction, SUBSCRIBERS streams.
    let delivered = 0;
    let latencies: number[] = [];
    const streams: http.ClientRequest[] = [];
    for (let i = 0; i < SUBSCRIBERS; i += 100) {
      const batch = Array.from({ length: Math.min(100, SUBSCRIBERS - i) }, (_, k) =>
        openStream(
          port,
          '/stream',
          () => delivered++,
          i + k < LATENCY_SAMPLERS ? (ms) => latencies.push(ms) : undefined,
        ),
      );
      streams.push(...(await Promise.all(batch)));
    }
    report.latency = [];
    for (const rate of RATES) {
      const seconds = Math.max(
        1,
        Math.min(SECONDS, MAX_DELIVERIES_PER_PHASE / (rate * SUBSCRIBERS)),
      );
      const before = delivered;
      latencies = [];
      await ask(server, { cmd: 'probe-start' }, 'probe-started');
      const run = await ask(
        publisher,
        { cmd: 'run', perTx: 1, rate, seconds, concurrency: 0 },
        'done',
      );
      const expected = run.committed * SUBSCRIBERS;
      await waitFor(() => delivered - before, expected, 60_000);
      const txStartToReceiptMs = summarize(latencies);
      const probe = await ask(server, { cmd: 'probe-stop' }, 'probe');
      (report.latency as unknown[]).push({
        subscribers: SUBSCRIBERS,
        targetRate: rate,
        seconds: round(seconds),
        committedPerSecond: Math.round(run.committed / (run.elapsedMs / 1000)),
        deliveries: delivered - before,
        lost: expected - (delivered - before),
        txStartToReceiptMs,
        // Inside the server: when the relay handed the event to the hub, and when every
        // subscriber's socket had been written. The rest is the load generator reading
        // SUBSCRIBERS sockets on the same cores.
        serverTxStartToRelayMs: probe.txStartToRelayMs,
        serverTxStartToAllWrittenMs: probe.txStartToAllWrittenMs,
        p99VsFloor: round(txStartToReceiptMs.p99 / (report.listenNotifyFloorMs as any).p99),
      });
    }
    streams.slice(1).forEach((s) => s.destroy());

    // 2. Sustained throughput, one subscriber, 1/10/100 events per transaction.
    const throughput = async (perTx: number, publisherChild: ChildProcess) => {
      const before = delivered;
      const started = now();
      const result = await ask(
        publisherChild,
        { cmd: 'run', perTx, rate: 0, seconds: THROUGHPUT_SECONDS, concurrency: 8 },
        'done',
      );
      const caughtUp = await waitFor(() => delivered - before, result.committed, 60_000);
      return {
        eventsPerTx: perTx,
        committedPerSecond: Math.round(result.committed / (result.elapsedMs / 1000)),
        deliveredPerSecond: Math.round((delivered - before) / ((caughtUp - started) / 1000)),
        lost: result.committed - (delivered - before),
      };
    };
    report.throughputTrigger = [];
    for (const perTx of [1, 10, 100])
      (report.throughputTrigger as unknown[]).push(await throughput(perTx, publisher));
    await stop(publisher);

    // 3. The same with the wake-up sent after commit by the publisher instead of the trigger.
    await admin.query(`DROP TRIGGER IF EXISTS sse_outbox_notify ON "${SCHEMA}".sse_outbox`);
    const { child: afterCommit } = await spawnChild(path.join(__dirname, 'publisher.js'), [
      DATABASE_URL,
      SCHEMA,
      'after-commit',
    ]);
    report.throughputAfterCommit = [];
    for (const perTx of [1, 10, 100])
      (report.throughputAfterCommit as unknown[]).push(await throughput(perTx, afterCommit));
    await stop(afterCommit);

    report.relay = (await ask(server, { cmd: 'stats' }, 'stats')).stats;
    streams[0].destroy();
    await stop(server);
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`);
    await admin.end();
  }

  const floor = report.listenNotifyFloorMs as any;
  console.log(
    `\noutbox: ${SUBSCRIBERS} subscribers, rates ${RATES.join('/')} events/s; PostgreSQL ${report.postgres}, node ${process.version}\n`,
  );
  const latencyRows: Record<string, unknown> = {
    'bare LISTEN/NOTIFY round trip': {
      'p50 ms': floor.p50,
      'p99 ms': floor.p99,
      'max ms': floor.max,
    },
  };
  for (const l of report.latency as any[]) {
    latencyRows[
      `tx start → SSE receipt, target ${l.targetRate} ev/s (${l.committedPerSecond} committed/s, ${l.seconds}s)`
    ] = {
      'p50 ms': l.txStartToReceiptMs.p50,
      'p99 ms': l.txStartToReceiptMs.p99,
      'max ms': l.txStartToReceiptMs.max,
      'p99 ÷ floor': l.p99VsFloor,
      'relay p50/p99': `${l.serverTxStartToRelayMs.p50} / ${l.serverTxStartToRelayMs.p99}`,
      'all written p50/p99': `${l.serverTxStartToAllWrittenMs.p50} / ${l.serverTxStartToAllWrittenMs.p99}`,
      deliveries: l.deliveries,
      lost: l.lost,
    };
  }
  console.table(latencyRows);
  const rows: Record<string, unknown> = {};
  for (const [label, list] of [
    ['NOTIFY by trigger (in tx)', report.throughputTrigger],
    ['NOTIFY after commit', report.throughputAfterCommit],
  ] as const) {
    for (const r of list as any[])
      rows[`${label}, ${r.eventsPerTx}/tx`] = {
        'committed/s': r.committedPerSecond,
        'delivered/s': r.deliveredPerSecond,
        lost: r.lost,
      };
  }
  console.table(rows);
  writeReport('outbox', report);
  process.exit(0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
