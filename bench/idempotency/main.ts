/**
 * Idempotency: requests/s and p99 of a POST with @Idempotent() (first-time keys and replays) vs the
 * same route without it vs @node-idempotency/nestjs, on the same Redis, with autocannon.
 *
 *   npm run bench -- idempotency [--seconds 10] [--connections 50]
 *
 * Uses REDIS_URL (default redis://127.0.0.1:6379). The compared library and autocannon come from
 * bench/tools (installed by bench/run.js).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import Redis from 'ioredis';
import * as path from 'node:path';
import { numericOption, spawnChild, stopChild, writeReport } from '../shared/child';
import { round } from '../shared/sse-client';
import { toolRequire } from '../shared/tools';

const SECONDS = numericOption('seconds', 10);
const CONNECTIONS = numericOption('connections', 50);
const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
interface Run {
  label: string;
  requestsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  errors: number;
}

async function load(port: number, label: string, key: 'none' | 'fresh' | 'fixed'): Promise<Run> {
  const autocannon = toolRequire('autocannon');
  const fixedKey = randomUUID();
  const body = JSON.stringify({ item: 'book', quantity: 1 });
  const url = `http://127.0.0.1:${port}/orders`;
  if (key === 'fixed') {
    // The first request stores the response; everything after it is a replay.
    await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': fixedKey },
      body,
    });
  }
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
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
  return {
    label,
    requestsPerSecond: Math.round(result.requests.average),
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    non2xx: result.non2xx,
    errors: result.errors,
  };
}

async function withServer<T>(mode: string, fn: (port: number) => Promise<T>): Promise<T> {
  const keyPrefix = `bench:${randomBytes(4).toString('hex')}:`;
  const { child, ready } = await spawnChild(path.join(__dirname, 'server.js'), [
    mode,
    REDIS_URL,
    keyPrefix,
  ]);
  try {
    return await fn(ready.port);
  } finally {
    await stopChild(child);
    // The stored responses would otherwise stay for their 24 h TTL.
    const redis = new Redis(REDIS_URL);
    const keys = await redis.keys(`${keyPrefix}*`);
    for (let i = 0; i < keys.length; i += 1000) await redis.del(...keys.slice(i, i + 1000));
    redis.disconnect();
  }
}

async function main() {
  const runs: Run[] = [];
  runs.push(await withServer('plain', (port) => load(port, 'route without idempotency', 'none')));
  await withServer('durable', async (port) => {
    runs.push(await load(port, 'nestjs-durable-sse @Idempotent(), first-time keys', 'fresh'));
    runs.push(await load(port, 'nestjs-durable-sse @Idempotent(), replays', 'fixed'));
  });
  await withServer('competitor', async (port) => {
    runs.push(await load(port, '@node-idempotency/nestjs, first-time keys', 'fresh'));
    runs.push(await load(port, '@node-idempotency/nestjs, replays', 'fixed'));
  });
  const [plain, first, replay, otherFirst, otherReplay] = runs;
  const ratios = {
    firstVsPlain: round(first.requestsPerSecond / plain.requestsPerSecond),
    replayVsPlain: round(replay.requestsPerSecond / plain.requestsPerSecond),
    firstVsCompetitor: round(first.requestsPerSecond / otherFirst.requestsPerSecond),
    replayVsCompetitor: round(replay.requestsPerSecond / otherReplay.requestsPerSecond),
  };
  console.log(
    `\nidempotency: ${CONNECTIONS} connections × ${SECONDS}s per run, Redis ${REDIS_URL}, node ${process.version}\n`,
  );
  console.table(
    Object.fromEntries(
      runs.map((r) => [
        r.label,
        {
          'req/s': r.requestsPerSecond,
          'p50 ms': r.p50Ms,
          'p99 ms': r.p99Ms,
          non2xx: r.non2xx,
          errors: r.errors,
        },
      ]),
    ),
  );
  console.log(
    `first-time ÷ plain ×${ratios.firstVsPlain}, replay ÷ plain ×${ratios.replayVsPlain}; ` +
      `vs @node-idempotency: first ×${ratios.firstVsCompetitor}, replay ×${ratios.replayVsCompetitor}`,
  );
  writeReport('idempotency', {
    benchmark: 'idempotency',
    date: new Date().toISOString(),
    node: process.version,
    runs,
    ratios,
  });
  process.exit(0);
}

void main().catch((error) => {
  console.error(error);
  process.exit(1);
});
