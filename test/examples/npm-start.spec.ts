import { ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RecordingEventSource } from '../support/event-source';
import { databaseUrl, dropSchema, uniqueSchema } from '../support/postgres';
import { deletePrefix, redisUrl } from '../support/redis';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ensureFreshDevBuild } = require('../support/built-package');

const root = join(__dirname, '..', '..');
const MAIN = join(root, '.tmp', 'build', 'examples', 'orders', 'main.js');

interface Started {
  child: ChildProcess;
  url: string;
  output: () => string;
  /** SIGTERM, then the exit code once the process ended by itself. */
  stop(): Promise<number | null>;
}

/** Runs what `npm start` runs (the compiled example) with `env`, until it says where it listens. */
async function start(env: Record<string, string>): Promise<Started> {
  const child = spawn(process.execPath, [MAIN], {
    cwd: root,
    env: { PATH: process.env.PATH, NO_COLOR: '1', PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const listening = new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Open (http:\/\/localhost:\d+)/.exec(output);
      if (match) resolve(match[1].replace('localhost', '127.0.0.1'));
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) =>
      reject(new Error(`exited with ${code} before listening:\n${output}`)),
    );
  });
  const url = await listening;
  return {
    child,
    url,
    output: () => output,
    stop: async () => {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      const [code] = await exited;
      return code as number | null;
    },
  };
}

const placeOrder = async (url: string, item: string) => {
  const response = await fetch(`${url}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': `${item}-${Date.now()}` },
    body: JSON.stringify({ item, quantity: 1 }),
  });
  expect(response.status).toBe(201);
  return (await response.json()) as { order: { id: string }; eventId: string };
};

/**
 * `npm start` end to end: the compiled example as a child process, on the real servers and on
 * the embedded pair. It must serve, report ready, and exit by itself on SIGTERM.
 */
describe('npm start (examples/orders/main.ts as a process)', () => {
  jest.setTimeout(60_000);

  // What `npm start` compiles (tsconfig.dev.json): built beside lint by `npm test`, here only
  // when missing or older than the sources.
  beforeAll(() => ensureFreshDevBuild());

  it('uses DATABASE_URL and REDIS_URL when set, and says so in one line', async () => {
    const schema = uniqueSchema('orders_start');
    const app = await start({
      DATABASE_URL: databaseUrl(),
      REDIS_URL: redisUrl(),
      ORDERS_SCHEMA: schema,
      ORDERS_REDIS_PREFIX: `${schema}:`,
    });
    try {
      expect(app.output()).toMatch(
        /Using PostgreSQL at .* \(DATABASE_URL\); Redis at .* \(REDIS_URL\)\./,
      );
      const health = await fetch(`${app.url}/health`);
      expect(health.status).toBe(200);
      expect(Object.keys(((await health.json()) as { info: object }).info)).toContain('redis');
      await placeOrder(app.url, 'server');
      expect(await app.stop()).toBe(0);
    } finally {
      app.child.kill('SIGKILL');
      await dropSchema(schema);
      await deletePrefix(redisUrl(), `${schema}:`);
    }
  });

  it('runs on embedded PostgreSQL with its data on disk: orders and resume survive a restart (onto Fastify)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'orders-pglite-'));
    const env = { ORDERS_EMBEDDED: '1', PGLITE_DATA_DIR: dataDir };
    let app = await start(env);
    try {
      expect(app.output()).toMatch(
        /Using embedded PostgreSQL \(PGlite, data in .*orders-pglite-.*\) and the in-memory idempotency store/,
      );
      expect((await fetch(`${app.url}/health`)).status).toBe(200);
      const first = await placeOrder(app.url, 'before-restart-1');
      const second = await placeOrder(app.url, 'before-restart-2');
      expect(await app.stop()).toBe(0);

      // The same data, served on Nest's Fastify adapter: ids and resume do not depend on it.
      app = await start({ ...env, PLATFORM: 'fastify' });
      expect(app.output()).toMatch(/on fastify/);
      const listed = (await (await fetch(`${app.url}/orders`)).json()) as { id: string }[];
      expect(listed.map((o) => o.id)).toEqual([second.order.id, first.order.id]);
      const resumed = new RecordingEventSource(`${app.url}/orders/stream`, ['order.placed'], {
        'Last-Event-ID': first.eventId,
      });
      try {
        await resumed.received(1);
        expect(resumed.events.map((e) => e.lastEventId)).toEqual([second.eventId]);
      } finally {
        resumed.close();
      }
      expect(await app.stop()).toBe(0);
    } finally {
      app.child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
