/**
 * Streams per instance: for each size N (1,000 / 5,000 / 15,000 by default) and each server
 * (bare node:http, the same as an Express route, this package on Express, on Fastify), N idle streams held by load-generator
 * processes (at most `--per-loadgen` streams each, from loopback addresses of their own):
 * heap and RSS per idle stream, event-loop delay p99 while idle with the default heartbeat,
 * and publish → receipt p50/p99 of one event to all of them (`--events` times).
 *
 *   npm run bench -- streams [--sizes 1000,5000,15000] [--modes bare,durable,durable-fastify]
 *                            [--idle-ms 16000] [--events 5] [--per-loadgen 5000]
 *
 * Every wait is bounded; streams that cannot be opened are counted by cause (EMFILE, refused,
 * a status, a timeout) and fail the run. Children exit with it.
 */
import { ChildProcess, fork } from 'node:child_process';
import * as path from 'node:path';
import { ask, listOption, numericOption, writeReport } from '../shared/child';
import { percentile, round } from '../shared/sse-client';

const SIZES = listOption('sizes', '1000,5000,15000').map(Number);
const MODES = listOption('modes', 'bare,bare-express,durable,durable-fastify');
const IDLE_MS = numericOption('idle-ms', 16_000);
const EVENTS = numericOption('events', 5);
const PER_LOADGEN = numericOption('per-loadgen', 5_000);
const OPEN_TIMEOUT_MS = numericOption('open-timeout-ms', 120_000);

const children = new Set<ChildProcess>();
const kill = () => children.forEach((child) => child.kill('SIGKILL'));
process.on('exit', kill);
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    kill();
    process.exit(130);
  });

/** Forks a child and waits (bounded) for its `ready`. */
export async function spawn(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  execArgv: string[] = [],
): Promise<{ child: ChildProcess; ready: any }> {
  const child = fork(path.join(__dirname, file), args, {
    execArgv,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const ready = await within(
    new Promise((resolve, reject) => {
      child.once('message', resolve);
      child.once('exit', (code) => reject(new Error(`${file} exited with ${code}`)));
    }),
    30_000,
    `${file} to start`,
  );
  return { child, ready };
}

/** `work`, or an error naming `what` after `ms`. */
export function within<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    work.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`waited ${ms} ms for ${what}`)), ms);
    }),
  ]);
}

/** Loopback source addresses for load generator `index`: 127.0.<index + 1>.1 … .250. */
export const addressesFor = (index: number) =>
  Array.from({ length: 250 }, (_, i) => `127.0.${index + 1}.${i + 1}`);

/** Load generators holding `total` streams to `port` between them; throws with the causes when some cannot be opened. */
export async function openStreams(port: number, total: number, perLoadgen = PER_LOADGEN) {
  const count = Math.ceil(total / perLoadgen);
  const loadgens = await Promise.all(
    Array.from({ length: count }, () => spawn('loadgen.js', [])).map((p) => p.then((s) => s.child)),
  );
  const results = await within(
    Promise.all(
      loadgens.map((loadgen, i) =>
        ask(
          loadgen,
          {
            cmd: 'open',
            port,
            path: '/stream',
            count: Math.min(perLoadgen, total - i * perLoadgen),
            addresses: addressesFor(i),
            concurrency: 200,
            timeoutMs: 30_000,
          },
          'opened',
        ),
      ),
    ),
    OPEN_TIMEOUT_MS,
    `${total} streams to open`,
  );
  const open = results.reduce((sum, r) => sum + r.open, 0);
  if (open < total) {
    const causes: Record<string, number> = {};
    for (const r of results)
      for (const [cause, n] of Object.entries(r.errors as Record<string, number>))
        causes[cause] = (causes[cause] ?? 0) + n;
    throw new Error(`only ${open} of ${total} streams opened: ${JSON.stringify(causes)}`);
  }
  return loadgens;
}

async function measure(mode: string, size: number) {
  const { child: server, ready } = await spawn('server.js', [mode], {}, ['--expose-gc']);
  const base = await ask(server, { cmd: 'stats', gc: true }, 'stats');
  const loadgens = await openStreams(ready.port, size);
  const connected = await ask(server, { cmd: 'stats', gc: true }, 'stats');
  await ask(server, { cmd: 'eld-start' }, 'eld-started');
  await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
  const eld = await ask(server, { cmd: 'eld' }, 'eld');
  const idle = await ask(server, { cmd: 'stats', gc: true }, 'stats');
  // Latencies collected so far (heartbeats carry none) are dropped.
  await Promise.all(loadgens.map((l) => ask(l, { cmd: 'latencies' }, 'latencies')));
  const latencies: number[] = [];
  for (let seq = 1; seq <= EVENTS; seq++) {
    await ask(server, { cmd: 'publish', seq }, 'published');
    const deadline = Date.now() + 30_000;
    let got = 0;
    while (got < size) {
      if (Date.now() > deadline) throw new Error(`event ${seq} reached ${got} of ${size} streams`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const parts = await Promise.all(
        loadgens.map((l) => ask(l, { cmd: 'latencies' }, 'latencies')),
      );
      for (const part of parts) {
        got += part.values.length;
        latencies.push(...part.values);
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
  latencies.sort((a, b) => a - b);
  for (const loadgen of loadgens) loadgen.kill('SIGKILL');
  server.kill('SIGKILL');
  return {
    mode,
    streams: size,
    connections: connected.connections,
    heapPerStreamBytes: Math.round((idle.heap - base.heap) / size),
    rssPerStreamBytes: Math.round((idle.rss - base.rss) / size),
    idleEventLoopDelayMs: eld,
    oneEventToAllMs: {
      p50: round(percentile(latencies, 50)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies[latencies.length - 1]),
    },
  };
}

async function main() {
  const results = [];
  for (const size of SIZES) {
    for (const mode of MODES) {
      const result = await measure(mode, size);
      console.log(JSON.stringify(result));
      results.push(result);
    }
  }
  console.log(
    '\nstreams per instance (heap/RSS per idle stream, idle ELD p99, one event to all p50/p99):',
  );
  for (const r of results) {
    console.log(
      `  ${String(r.streams).padStart(6)} ${r.mode.padEnd(16)} heap ${r.heapPerStreamBytes} B, ` +
        `RSS ${r.rssPerStreamBytes} B, ELD p99 ${r.idleEventLoopDelayMs.p99} ms, ` +
        `event ${r.oneEventToAllMs.p50} / ${r.oneEventToAllMs.p99} ms`,
    );
  }
  writeReport('streams', { benchmark: 'streams', date: new Date().toISOString(), results });
  process.exit(0);
}

if (require.main === module) {
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
}
