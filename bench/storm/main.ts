/**
 * The reconnect storm: `--streams` clients (EventSource-like: they reconnect after the stream's
 * `retry:` with their Last-Event-ID, and after `Retry-After` when refused) follow an outbox topic
 * on instance A while `--rate` events/s flow; A is killed (SIGKILL) and every client comes back
 * to instance B at once. Reports: every client back, lost, duplicated, resets, refusals, the
 * time until all are live again, PostgreSQL queries per resume on B, and B's `/health/live`
 * latency during the storm (p50/p99/max, probed every 50 ms).
 *
 *   npm run bench -- storm [--streams 15000] [--rate 20] [--platform express|fastify]
 *                          [--per-loadgen 5000] [--timeout-ms 180000]
 *
 * Uses DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test) in a schema of its own.
 * Every wait is bounded; children exit with the bench.
 */
import { randomBytes } from 'node:crypto';
import { Client } from 'pg';
import { ask, choiceOption, numericOption, writeReport } from '../shared/child';
import { percentile, round } from '../shared/sse-client';
import { openStreams, spawn, within } from '../streams/main';

const STREAMS = numericOption('streams', 15_000);
const PLATFORM = choiceOption('platform', ['express', 'fastify'] as const);
const SERVER_MODE = PLATFORM === 'fastify' ? 'durable-outbox-fastify' : 'durable-outbox';
const RATE = numericOption('rate', 20);
const PER_LOADGEN = numericOption('per-loadgen', 5_000);
const TIMEOUT_MS = numericOption('timeout-ms', 180_000);
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `bench_storm_${randomBytes(4).toString('hex')}`;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const env = { BENCH_SCHEMA: SCHEMA, BENCH_SSE: process.env.BENCH_SSE ?? '{}' };
  const a = await spawn('../streams/server.js', [SERVER_MODE], env, ['--expose-gc']);
  // BENCH_PROFILE=<dir>: a CPU profile of B (the instance that takes the storm), written on exit.
  const profile = process.env.BENCH_PROFILE
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_PROFILE}`]
    : [];
  const b = await spawn(
    '../streams/server.js',
    [SERVER_MODE],
    { ...env, BENCH_MIGRATE: '0' },
    profile,
  );
  let seq = 0;
  let publishing = true;
  let publisher: Promise<void> = Promise.resolve();
  try {
    const loadgens = await openStreams(a.ready.port, STREAMS, PER_LOADGEN);
    console.log(`${STREAMS} streams open on A`);
    // Events flow through B's outbox from now on (the publisher is not the instance that dies).
    publisher = (async () => {
      while (publishing) {
        await ask(b.child, { cmd: 'publish', seq: ++seq }, 'published');
        await sleep(1000 / RATE);
      }
    })();
    await Promise.all(loadgens.map((l) => ask(l, { cmd: 'track' }, 'tracking')));
    await sleep(3_000);
    await Promise.all(
      loadgens.map((l) => ask(l, { cmd: 'reconnect', port: b.ready.port }, 'reconnecting')),
    );
    const before = (await ask(b.child, { cmd: 'stats' }, 'stats')).relay;
    const probes: number[] = [];
    let probing = true;
    const prober = (async () => {
      while (probing) {
        const started = performance.now();
        try {
          await fetch(`http://127.0.0.1:${b.ready.port}/health/live`, {
            signal: AbortSignal.timeout(5_000),
          });
          probes.push(performance.now() - started);
        } catch {
          probes.push(5_000);
        }
        await sleep(50);
      }
    })();
    const killedAt = Date.now();
    a.child.kill('SIGKILL');
    console.log('A killed: its clients come back to B');

    let reports: any[] = [];
    let allBackMs: number | undefined;
    while (Date.now() - killedAt < TIMEOUT_MS) {
      await sleep(250);
      reports = await Promise.all(loadgens.map((l) => ask(l, { cmd: 'report' }, 'report')));
      const live = reports.reduce((sum, r) => sum + r.live, 0);
      if (live === STREAMS) {
        allBackMs = Date.now() - killedAt;
        break;
      }
    }
    probing = false;
    await prober;
    // A few more events reach everyone, then every client must have every event.
    await sleep(2_000);
    publishing = false;
    await publisher;
    const last = seq;
    await within(
      (async () => {
        for (;;) {
          reports = await Promise.all(
            loadgens.map((l) => ask(l, { cmd: 'report', last }, 'report')),
          );
          if (reports.every((r) => r.caughtUpTo >= last)) return;
          await sleep(250);
        }
      })(),
      30_000,
      'every client to receive the last event',
    ).catch((error) => console.log(String(error)));
    const after = (await ask(b.child, { cmd: 'stats' }, 'stats')).relay;
    const sum = (key: string) => reports.reduce((total, r) => total + (r[key] ?? 0), 0);
    const resumes = after.resumes - before.resumes;
    probes.sort((x, y) => x - y);
    const result = {
      platform: PLATFORM,
      streams: STREAMS,
      eventsPerSecond: RATE,
      allBackMs: allBackMs ?? null,
      live: sum('live'),
      lost: sum('lost') + reports.reduce((t, r) => t + r.behind, 0),
      duplicated: sum('duplicated'),
      resets: sum('resets'),
      refusals: sum('refused'),
      reconnects: sum('reconnects'),
      connectErrors: Object.fromEntries(
        reports.flatMap((r) => Object.entries(r.errors as Record<string, number>)),
      ),
      resumesOnB: resumes,
      replayedFromMemory: after.replayedFromMemory - before.replayedFromMemory,
      postgresQueriesPerResume: round((after.resumeQueries - before.resumeQueries) / resumes),
      healthLiveMs: {
        p50: round(percentile(probes, 50)),
        p99: round(percentile(probes, 99)),
        max: round(probes[probes.length - 1]),
        probes: probes.length,
      },
    };
    console.log(JSON.stringify(result));
    writeReport(PLATFORM === 'fastify' ? 'storm-fastify' : 'storm', {
      benchmark: 'storm',
      date: new Date().toISOString(),
      result,
    });
    const ok = allBackMs !== undefined && result.lost + result.duplicated + result.resets === 0;
    process.exitCode = ok ? 0 : 1;
  } catch (error) {
    console.error(error);
    process.exitCode = 1;
  } finally {
    publishing = false;
    await publisher.catch(() => undefined);
    const exited = new Promise((resolve) => b.child.once('exit', resolve));
    b.child.send({ cmd: 'exit' });
    await within(exited, 10_000, 'B to exit').catch(() => b.child.kill('SIGKILL'));
    const client = new Client({ connectionString: DATABASE_URL });
    await client.connect();
    await client.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await client.end();
    process.exit(process.exitCode ?? 1);
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
