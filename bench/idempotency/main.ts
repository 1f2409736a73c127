/**
 * Idempotency: requests/s and p99 of a POST with @Idempotent() (first-time keys and replays) vs the
 * same route without it vs @node-idempotency/nestjs, on the same Redis, with autocannon.
 *
 *   npm run bench -- idempotency [--seconds 5] [--rounds 3] [--connections 50]
 *                                [--platform express|fastify] [--route insert|constant]
 *
 * Route `insert` (default) inserts one order in a PostgreSQL transaction, as a real POST does;
 * there @Idempotent() also commits its exactly-once record with it, and a fourth server runs the
 * insert outside that record to show what it costs. Route `constant` returns a constant (the
 * figure for idempotency's own overhead, which no Redis lookup can beat).
 *
 * The three servers run side by side (idle but one); each round loads the five cases in turn, and
 * the ratios are the medians of the per-round ratios, so a machine that slows down during the run
 * (shared cores, thermal) does not favour whichever case ran first.
 *
 * Uses REDIS_URL (default redis://127.0.0.1:6379) and DATABASE_URL (default
 * postgres://postgres@127.0.0.1:5432/test; a schema of its own, dropped at the end). The compared library and autocannon come from
 * bench/tools (installed by bench/run.js).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import Redis from 'ioredis';
import { Client } from 'pg';
import * as path from 'node:path';
import {
  ask,
  choiceOption,
  numericOption,
  spawnChild,
  stopChild,
  writeReport,
} from '../shared/child';
import { toolRequire } from '../shared/tools';

const SECONDS = numericOption('seconds', 5);
const ROUNDS = numericOption('rounds', 3);
const CONNECTIONS = numericOption('connections', 50);
const PLATFORM = choiceOption('platform', ['express', 'fastify'] as const);
const ROUTE = choiceOption('route', ['insert', 'constant'] as const);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const SCHEMA = `bench_idempotency_${randomBytes(4).toString('hex')}`;
interface Run {
  label: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
  /** Server CPU time (user + system) per request, µs: steadier than req/s on a shared machine. */
  cpuUsPerRequest: number;
  /**
   * CPU time of the whole machine per request, µs (/proc/stat: the server, PostgreSQL, Redis and
   * the load generator, which share its cores): what the throughput is bounded by here.
   */
  machineCpuUsPerRequest?: number;
}

async function load(
  server: Server,
  label: string,
  key: 'none' | 'fresh' | 'fixed',
  seconds = SECONDS,
): Promise<Run> {
  const autocannon = toolRequire('autocannon');
  const fixedKey = randomUUID();
  const body = JSON.stringify({ item: 'book', quantity: 1 });
  const url = `http://127.0.0.1:${server.port}/orders`;
  if (key === 'fixed') {
    // The first request stores the response; everything after it is a replay.
    await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': fixedKey },
      body,
    });
  }
  const before = await server.cpu();
  const machineBefore = machineCpuUs();
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: seconds,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        setupRequest: (request: { headers: Record<string, string> }) => {
          if (key === 'fresh') request.headers['idempotency-key'] = randomUUID();
          if (key === 'fixed') request.headers['idempotency-key'] = fixedKey;
          return request;
        },
      },
    ],
  });
  const after = await server.cpu();
  const machineAfter = machineCpuUs();
  const cpuUs = after.user - before.user + after.system - before.system;
  return {
    label,
    cpuUsPerRequest: Math.round((cpuUs / result.requests.total) * 10) / 10,
    ...(machineBefore !== undefined && machineAfter !== undefined
      ? {
          machineCpuUsPerRequest: Math.round(
            (machineAfter - machineBefore) / result.requests.total,
          ),
        }
      : {}),
    requestsPerSecond: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

/** Busy CPU time of all cores since boot, µs (Linux); undefined elsewhere. */
function machineCpuUs(): number | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8')
      .split('\n')[0]
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    const busy = cpu.slice(0, 8).reduce((sum, v, i) => (i === 3 || i === 4 ? sum : sum + v), 0);
    return (busy * 1e6) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}
const CLOCK_TICKS = 100; // USER_HZ on Linux

interface Server {
  port: number;
  cpu(): Promise<{ user: number; system: number }>;
  stop(): Promise<void>;
}

async function startServer(mode: string): Promise<Server> {
  const keyPrefix = `bench:${randomBytes(4).toString('hex')}:`;
  const { child, ready } = await spawnChild(path.join(__dirname, 'server.js'), [
    mode,
    REDIS_URL,
    keyPrefix,
    PLATFORM,
    ROUTE,
    DATABASE_URL,
    SCHEMA,
  ]);
  return {
    port: ready.port,
    cpu: async () => (await ask(child, { cmd: 'cpu' }, 'cpu')).usage,
    stop: async () => {
      await stopChild(child);
      // The stored responses would otherwise stay for their 24 h TTL. @node-idempotency/nestjs
      // takes no prefix: its keys are named after the method and the route.
      const redis = new Redis(REDIS_URL);
      const pattern = mode === 'competitor' ? 'node-idempotency:POST:/orders:*' : `${keyPrefix}*`;
      const keys = await redis.keys(pattern);
      for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
      redis.disconnect();
    },
  };
}

const median = (values: number[]): number => {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
};
const ratio = (a: number, b: number) => Math.round((a / b) * 100) / 100;

async function sql(text: string): Promise<void> {
  const client = new Client({ connectionString: DATABASE_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

type Key = 'none' | 'fresh' | 'fixed';
type CaseId = 'plain' | 'first' | 'replay' | 'firstNoRow' | 'competitorFirst' | 'competitorReplay';

async function main() {
  const servers: Server[] = [];
  if (ROUTE === 'insert') {
    await sql(`CREATE SCHEMA ${SCHEMA};
      CREATE TABLE ${SCHEMA}.bench_orders (id bigserial PRIMARY KEY, body jsonb NOT NULL)`);
  }
  try {
    const modes = [
      'plain',
      'durable',
      'competitor',
      ...(ROUTE === 'insert' ? ['durable-no-row'] : []),
    ];
    const byMode: Record<string, Server> = {};
    // One at a time: the first migrates the outbox schema.
    for (const mode of modes) servers.push((byMode[mode] = await startServer(mode)));
    const what = ROUTE === 'insert' ? 'route inserting one order' : 'route returning a constant';
    const cases: [CaseId, string, Server, Key][] = [
      ['plain', `${what}, no idempotency`, byMode.plain, 'none'],
      ['first', 'nestjs-durable-sse @Idempotent(), first-time keys', byMode.durable, 'fresh'],
      ['replay', 'nestjs-durable-sse @Idempotent(), replays', byMode.durable, 'fixed'],
      ...(ROUTE === 'insert'
        ? ([
            [
              'firstNoRow',
              '@Idempotent(), first-time, insert outside the exactly-once record',
              byMode['durable-no-row'],
              'fresh',
            ],
          ] as [CaseId, string, Server, Key][])
        : []),
      ['competitorFirst', '@node-idempotency/nestjs, first-time keys', byMode.competitor, 'fresh'],
      ['competitorReplay', '@node-idempotency/nestjs, replays', byMode.competitor, 'fixed'],
    ];
    const at = (id: CaseId) => cases.findIndex(([caseId]) => caseId === id);
    // Warm-up: a short load per case, not counted.
    for (const [, label, server, key] of cases) await load(server, label, key, 2);
    const rounds: Run[][] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const runs: Run[] = [];
      for (const [, label, server, key] of cases) runs.push(await load(server, label, key));
      rounds.push(runs);
      const [p, f, r] = runs;
      console.log(
        `round ${round + 1}/${ROUNDS}: ` +
          runs.map((run) => run.requestsPerSecond).join(' / ') +
          ` req/s; first ÷ plain ×${ratio(f.requestsPerSecond, p.requestsPerSecond)}, ` +
          `replay ÷ plain ×${ratio(r.requestsPerSecond, p.requestsPerSecond)}; server CPU µs/req ` +
          runs.map((run) => run.cpuUsPerRequest).join(' / ') +
          '; machine CPU µs/req ' +
          runs.map((run) => run.machineCpuUsPerRequest ?? '?').join(' / '),
      );
    }
    const runs: Run[] = cases.map(([, label], i) => ({
      label,
      requestsPerSecond: Math.round(median(rounds.map((runs) => runs[i].requestsPerSecond))),
      p50Ms: median(rounds.map((runs) => runs[i].p50Ms)),
      p99Ms: median(rounds.map((runs) => runs[i].p99Ms)),
      cpuUsPerRequest: median(rounds.map((runs) => runs[i].cpuUsPerRequest)),
      machineCpuUsPerRequest: median(rounds.map((runs) => runs[i].machineCpuUsPerRequest ?? NaN)),
      non2xx: rounds.reduce((sum, runs) => sum + runs[i].non2xx, 0),
      errors: rounds.reduce((sum, runs) => sum + runs[i].errors, 0),
    }));
    const perRound = (a: number, b: number) =>
      median(rounds.map((runs) => ratio(runs[a].requestsPerSecond, runs[b].requestsPerSecond)));
    const ratios = {
      firstVsPlain: perRound(at('first'), at('plain')),
      replayVsPlain: perRound(at('replay'), at('plain')),
      firstVsCompetitor: perRound(at('first'), at('competitorFirst')),
      replayVsCompetitor: perRound(at('replay'), at('competitorReplay')),
      ...(ROUTE === 'insert'
        ? { firstWithRowVsWithout: perRound(at('first'), at('firstNoRow')) }
        : {}),
    };
    // The same ratios from server CPU per request (requests one core would serve, relative).
    const cpuRatio = (a: number, b: number) =>
      ratio(runs[b].cpuUsPerRequest, runs[a].cpuUsPerRequest);
    const cpuRatios = {
      firstVsPlain: cpuRatio(at('first'), at('plain')),
      replayVsPlain: cpuRatio(at('replay'), at('plain')),
      firstVsCompetitor: cpuRatio(at('first'), at('competitorFirst')),
      replayVsCompetitor: cpuRatio(at('replay'), at('competitorReplay')),
      ...(ROUTE === 'insert'
        ? { firstWithRowVsWithout: cpuRatio(at('first'), at('firstNoRow')) }
        : {}),
    };
    console.log(
      `\nidempotency on ${PLATFORM}, route ${ROUTE}: ${CONNECTIONS} connections × ${SECONDS}s per case × ${ROUNDS} rounds (medians), ` +
        `Redis ${REDIS_URL}, node ${process.version}\n`,
    );
    console.table(
      Object.fromEntries(
        runs.map((r) => [
          r.label,
          {
            'req/s': r.requestsPerSecond,
            'p50 ms': r.p50Ms,
            'p99 ms': r.p99Ms,
            'server CPU µs/req': r.cpuUsPerRequest,
            'machine CPU µs/req': r.machineCpuUsPerRequest,
            non2xx: r.non2xx,
            errors: r.errors,
          },
        ]),
      ),
    );
    console.log(
      `first-time ÷ plain ×${ratios.firstVsPlain}, replay ÷ plain ×${ratios.replayVsPlain}; ` +
        `vs @node-idempotency: first ×${ratios.firstVsCompetitor}, replay ×${ratios.replayVsCompetitor}\n` +
        `by server CPU per request: first-time ÷ plain ×${cpuRatios.firstVsPlain}, replay ÷ plain ` +
        `×${cpuRatios.replayVsPlain}; vs @node-idempotency: first ×${cpuRatios.firstVsCompetitor}, ` +
        `replay ×${cpuRatios.replayVsCompetitor}` +
        (ROUTE === 'insert'
          ? `\nthe exactly-once record: first-time with ÷ without ×${ratios.firstWithRowVsWithout} ` +
            `(req/s), ×${cpuRatios.firstWithRowVsWithout} (server CPU)`
          : ''),
    );
    const report = [
      'idempotency',
      ...(ROUTE === 'insert' ? ['insert'] : []),
      ...(PLATFORM === 'express' ? [] : [PLATFORM]),
    ];
    writeReport(report.join('-'), {
      benchmark: 'idempotency',
      platform: PLATFORM,
      route: ROUTE,
      date: new Date().toISOString(),
      node: process.version,
      seconds: SECONDS,
      rounds: rounds.length,
      connections: CONNECTIONS,
      runs,
      ratios,
      cpuRatios,
      perRound: rounds,
    });
  } finally {
    await Promise.all(servers.map((server) => server.stop()));
    if (ROUTE === 'insert') await sql(`DROP SCHEMA ${SCHEMA} CASCADE`);
  }
  process.exit(0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
