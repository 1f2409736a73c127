/**
 * Fan-out: N idle connections, then a burst of E events to all of them. For this package
 * (@Sse + SseHub) and for Nest's built-in @Sse with a shared Subject, each on Express and on
 * Fastify, and for better-sse, bare node:http and bare Express, in one run:
 * deliveries/s, publish→receive latency p50/p99, and server RSS/heap per idle connection.
 *
 *   npm run bench -- fanout [--connections 1000] [--events 200] [--batch 10]
 *
 * `--otel [--rounds 5]` measures instead what an OpenTelemetry SDK that samples nothing costs:
 * this package's stream fed by the hub and fed through the outbox (PostgreSQL, one transaction
 * per batch), each without an SDK and with one registered (sampler off), alternated round by
 * round; medians and their ratio (bench/results/fanout-otel.json).
 */
import * as http from 'node:http';
import * as path from 'node:path';
import { ask, numericOption, spawnChild, stopChild, writeReport } from '../shared/child';
import { now, openStream, round, summarize } from '../shared/sse-client';
import { registerTracing } from '../shared/tracing';
import { recordDeliveries, startPublish } from '../../src/observability/tracing';

const CONNECTIONS = numericOption('connections', 1000);
const EVENTS = numericOption('events', 200);
const BATCH = numericOption('batch', 10);
const OTEL = process.argv.includes('--otel');
const ROUNDS = numericOption('rounds', 5);

interface Result {
  mode: string;
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  connections: number;
  events: number;
  deliveries: number;
  lost: number;
  deliveriesPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number };
  /** Server CPU (user + system) from the burst's start to the last receipt, per delivery. */
  serverCpuMicrosPerDelivery: number;
  rssPerConnectionBytes: number;
  heapPerConnectionBytes: number;
}

const MODES = [
  'durable',
  'nest',
  'durable-fastify',
  'nest-fastify',
  'better-sse',
  'bare',
  'bare-express',
] as const;
/** `durable-outbox` runs under `--otel` only: the default run compares stream servers alone. */
type Mode = (typeof MODES)[number] | 'durable-outbox';

const LABELS: Record<Mode, string> = {
  durable: 'nestjs-durable-sse @Sse + SseHub',
  'durable-outbox': 'nestjs-durable-sse @Sse, events through the outbox',
  nest: 'Nest built-in @Sse + Subject',
  'durable-fastify': 'nestjs-durable-sse on Fastify',
  'nest-fastify': 'Nest built-in @Sse on Fastify',
  'better-sse': 'better-sse channel (node:http)',
  bare: 'bare node:http, pre-encoded',
  'bare-express': 'bare Express 5, pre-encoded',
};

async function runMode(mode: Mode): Promise<Result> {
  const { child, ready } = await spawnChild(
    path.join(__dirname, 'server.js'),
    [mode],
    // BENCH_CPU_PROF=<dir> writes a CPU profile of each server (open it in Chrome DevTools).
    [
      '--expose-gc',
      ...(process.env.BENCH_CPU_PROF
        ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`]
        : []),
    ],
  );
  const port: number = ready.port;
  // Warm-up: open and close as many streams first, so one-time costs (lazily compiled code,
  // heap spaces grown by the first burst of request garbage) are not counted per connection.
  const warmUp: http.ClientRequest[] = [];
  for (let i = 0; i < CONNECTIONS; i += 100) {
    warmUp.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(100, CONNECTIONS - i) }, () =>
          openStream(port, '/stream', () => undefined),
        ),
      )),
    );
  }
  warmUp.forEach((request) => request.destroy());
  while ((await ask(child, { cmd: 'connections' }, 'connections')).count > 0) {
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const before = await ask(child, { cmd: 'memory' }, 'memory');

  const latencies: number[] = [];
  let delivered = 0;
  let allDelivered: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allDelivered = resolve));
  const onEvent = () => {
    if (++delivered === CONNECTIONS * EVENTS) allDelivered();
  };
  const onLatency = (ms: number) => latencies.push(ms);
  const clients: http.ClientRequest[] = [];
  for (let i = 0; i < CONNECTIONS; i += 100) {
    clients.push(
      ...(await Promise.all(
        Array.from({ length: Math.min(100, CONNECTIONS - i) }, () =>
          openStream(port, '/stream', onEvent, onLatency),
        ),
      )),
    );
  }
  const idle = await ask(child, { cmd: 'memory' }, 'memory');

  const cpuBefore = (await ask(child, { cmd: 'cpu' }, 'cpu')).micros;
  const started = now();
  await ask(child, { cmd: 'burst', events: EVENTS, batch: BATCH }, 'burst');
  const timeout = new Promise<void>((resolve) => setTimeout(resolve, 60_000).unref());
  await Promise.race([done, timeout]);
  const elapsedMs = now() - started;
  const cpuMicros = (await ask(child, { cmd: 'cpu' }, 'cpu')).micros - cpuBefore;

  const delay = await ask(child, { cmd: 'loop-delay' }, 'loop-delay');
  clients.forEach((c) => c.destroy());
  await stopChild(child);

  const { p50, p99, max } = summarize(latencies);
  return {
    mode,
    connections: CONNECTIONS,
    events: EVENTS,
    deliveries: delivered,
    lost: CONNECTIONS * EVENTS - delivered,
    deliveriesPerSecond: Math.round(delivered / (elapsedMs / 1000)),
    latencyMs: { p50, p99, max },
    serverCpuMicrosPerDelivery: Math.round((cpuMicros / Math.max(1, delivered)) * 1000) / 1000,
    eventLoopDelayMs: { p50: round(delay.p50Ms), p99: round(delay.p99Ms), max: round(delay.maxMs) },
    rssPerConnectionBytes: Math.round((idle.rss - before.rss) / CONNECTIONS),
    heapPerConnectionBytes: Math.round((idle.heapUsed - before.heapUsed) / CONNECTIONS),
  };
}

/** Runs `mode` with BENCH_OTEL as given (the server registers the SDK when it is set). */
async function runWith(mode: Mode, otel: string | undefined): Promise<Result> {
  if (otel) process.env.BENCH_OTEL = otel;
  else delete process.env.BENCH_OTEL;
  return runMode(mode);
}

async function mainOtel() {
  const modes: Mode[] = ['durable', 'durable-outbox'];
  const runs: Record<string, Result[]> = {};
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of modes) {
      // Alternated, and which goes first flips each round: drift on a shared machine hits both.
      const order = round % 2 === 0 ? [undefined, 'sampling-off'] : ['sampling-off', undefined];
      for (const otel of order) {
        const key = `${mode}${otel ? ' + SDK (sampling off)' : ''}`;
        (runs[key] ??= []).push(await runWith(mode, otel));
      }
    }
  }
  const median = (values: number[]) => {
    const sorted = [...values].sort((x, y) => x - y);
    return sorted[Math.floor(sorted.length / 2)];
  };
  const summary = Object.fromEntries(
    Object.entries(runs).map(([key, results]) => [
      key,
      {
        'deliveries/s': median(results.map((r) => r.deliveriesPerSecond)),
        'server CPU µs/delivery': median(results.map((r) => r.serverCpuMicrosPerDelivery)),
        'p50 ms': median(results.map((r) => r.latencyMs.p50)),
        'p99 ms': median(results.map((r) => r.latencyMs.p99)),
        lost: results.reduce((sum, r) => sum + r.lost, 0),
        'all runs (deliveries/s)': results.map((r) => r.deliveriesPerSecond).join(' '),
      },
    ]),
  );
  console.log(
    `\nfanout --otel: ${CONNECTIONS} connections × ${EVENTS} events (batches of ${BATCH}), ${ROUNDS} rounds, medians, node ${process.version}\n`,
  );
  console.table(summary);
  const ratio = (mode: Mode, column: 'deliveries/s' | 'server CPU µs/delivery') =>
    Math.round((summary[`${mode} + SDK (sampling off)`][column] / summary[mode][column]) * 1000) /
    1000;
  const ratios = Object.fromEntries(
    modes.map((mode) => [
      mode,
      {
        deliveriesPerSecond: ratio(mode, 'deliveries/s'),
        serverCpu: ratio(mode, 'server CPU µs/delivery'),
      },
    ]),
  );
  for (const [mode, r] of Object.entries(ratios))
    console.log(
      `${mode}: with the SDK ÷ without: deliveries/s ×${r.deliveriesPerSecond}, server CPU per delivery ×${r.serverCpu}`,
    );
  // Where tracing's time goes, without the noise of a whole server: the calls it adds, timed
  // in this process with the same SDK (sampler off). Per event published, and per publish
  // context handed to a relay's streams — not per subscriber.
  registerTracing('sampling-off');
  const perCall = (fn: () => void, calls = 200_000) => {
    for (let i = 0; i < 10_000; i++) fn();
    const started = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn();
    return Math.round(Number(process.hrtime.bigint() - started) / calls) / 1000;
  };
  const context = startPublish(['bench'], 1, 'public.sse_outbox')!.context!;
  const microseconds = {
    publish: perCall(() => startPublish(['bench'], 1, 'public.sse_outbox')!.end(['1-1'])),
    deliver: perCall(() =>
      recordDeliveries(
        [{ context, topics: new Set(['bench']), ids: ['1-1'], subscribers: CONNECTIONS }],
        Date.now(),
      ),
    ),
  };
  console.log(
    `per call, SDK sampling off: publish span + context ${microseconds.publish} µs, delivery span ${microseconds.deliver} µs`,
  );
  writeReport('fanout-otel', {
    microsecondsPerCall: microseconds,
    benchmark: 'fanout --otel',
    date: new Date().toISOString(),
    node: process.version,
    connections: CONNECTIONS,
    events: EVENTS,
    batch: BATCH,
    rounds: ROUNDS,
    summary,
    ratios,
    runs,
  });
  process.exit(0);
}

async function main() {
  if (OTEL) return mainOtel();
  const results: Result[] = [];
  for (const mode of MODES) results.push(await runMode(mode));
  const of = Object.fromEntries(results.map((r) => [r.mode, r])) as Record<Mode, Result>;
  const ratio = (ours: Result, other: Result) => ({
    deliveriesPerSecond: round(ours.deliveriesPerSecond / other.deliveriesPerSecond),
    rssPerConnection: round(ours.rssPerConnectionBytes / other.rssPerConnectionBytes),
    heapPerConnection: round(ours.heapPerConnectionBytes / other.heapPerConnectionBytes),
  });
  const ratios = {
    express: {
      vsNest: ratio(of.durable, of.nest),
      vsBetterSse: ratio(of.durable, of['better-sse']),
      vsBare: ratio(of.durable, of.bare),
      // The same bare loop behind Express, which this run of the package is on: what Express costs.
      vsBareExpress: ratio(of.durable, of['bare-express']),
    },
    fastify: {
      vsNest: ratio(of['durable-fastify'], of['nest-fastify']),
      vsBetterSse: ratio(of['durable-fastify'], of['better-sse']),
      vsBare: ratio(of['durable-fastify'], of.bare),
    },
  };

  console.log(
    `\nfanout: ${CONNECTIONS} connections × ${EVENTS} events (batches of ${BATCH}), node ${process.version}\n`,
  );
  console.table(
    Object.fromEntries(
      results.map((r) => [
        LABELS[r.mode as Mode],
        {
          'deliveries/s': r.deliveriesPerSecond,
          lost: r.lost,
          'p50 ms': r.latencyMs.p50,
          'p99 ms': r.latencyMs.p99,
          'loop delay p99 ms': r.eventLoopDelayMs.p99,
          'RSS/conn (B)': r.rssPerConnectionBytes,
          'heap/conn (B)': r.heapPerConnectionBytes,
        },
      ]),
    ),
  );
  for (const [platform, byOther] of Object.entries(ratios)) {
    for (const [name, r] of Object.entries(byOther)) {
      console.log(
        `durable on ${platform} ÷ ${name.slice(2)}: deliveries/s ×${r.deliveriesPerSecond}, RSS/conn ×${r.rssPerConnection}, heap/conn ×${r.heapPerConnection}`,
      );
    }
  }
  const report = {
    benchmark: 'fanout',
    date: new Date().toISOString(),
    node: process.version,
    results,
    ratios,
  };
  writeReport(`fanout-${CONNECTIONS}`, report);
  process.exit(0);
}

void main();
