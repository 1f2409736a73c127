import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { openRaw, PLATFORMS, RawStream } from '../support/http';
import { FANOUTS } from '../support/outbox';
import { dropSchema, uniqueSchema } from '../support/postgres';
import { redisUrl, withRedis } from '../support/redis';

const child = path.join(__dirname, 'shutdown-child.js');
const built = path.join(__dirname, '../../dist/index.js');

/** A schema (and Redis key prefix) of the enclosing describe's own, removed after it. */
function useChildSchema(prefix: string): string {
  const schema = uniqueSchema(prefix);
  afterAll(async () => {
    await dropSchema(schema);
    await withRedis(redisUrl(), async (redis) => {
      const keys = await redis.keys(`${schema}:*`);
      if (keys.length) await redis.del(...keys);
    });
  });
  return schema;
}

/** Forks shutdown-child.js (the built package) and waits until it listens. */
async function forkApp(platform: string, schema: string, env: Record<string, string> = {}) {
  if (!fs.existsSync(built))
    throw new Error('dist/ is missing: run `npm run build` (npm test does)');
  const app = fork(child, [], {
    env: { ...process.env, SHUTDOWN_SCHEMA: schema, PLATFORM: platform, ...env },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = once(app, 'exit');
  const [ready] = (await once(app, 'message')) as [{ port: number }];
  return { app, exited, port: ready.port, url: `http://127.0.0.1:${ready.port}` };
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('graceful shutdown (docs/operations.md#shutdown)', () => {
    const schema = useChildSchema('shutdown');

    it.each(FANOUTS)(
      'closes an app (fanout %s) holding 1,000 open streams, and the process then exits on its own',
      async (fanout) => {
        const { app, exited, url } = await forkApp(platform, schema, { FANOUT: fanout });

        const streams: RawStream[] = [];
        for (let i = 0; i < 1000; i += 100) {
          streams.push(
            ...(await Promise.all(Array.from({ length: 100 }, () => openRaw(`${url}/stream`)))),
          );
        }
        await Promise.all(streams.map((s) => s.until((text) => text.startsWith('retry'))));
        const paid = await fetch(`${url}/pay`, {
          method: 'POST',
          headers: { 'idempotency-key': 'k1' },
        });
        expect(paid.status).toBe(201);

        app.send({ cmd: 'close' });
        const [closed] = (await once(app, 'message')) as [{ cmd: string; ms: number }];
        expect(closed.cmd).toBe('closed');
        // Every stream was ended by the server (clients resume elsewhere by id).
        await Promise.all(streams.map((s) => s.ended));
        expect(streams.every((s) => s.response.complete)).toBe(true);
        // No process.exit() in the child: it ends only when no timer, socket or pool keeps it alive.
        const [code] = await exited;
        expect(code).toBe(0);
      },
      60_000,
    );
  });

  describe('SIGTERM: drain, then a bounded close that waits on no client', () => {
    const schema = useChildSchema('sigterm');

    it('reports 503 for drainMs while still serving, answers the request in flight, closes silent and half-sent sockets, and exits', async () => {
      const drainMs = 1_500;
      const graceMs = 1_000;
      const { app, exited, port, url } = await forkApp(platform, schema, {
        DRAIN_MS: String(drainMs),
        GRACE_MS: String(graceMs),
        SLOW_MS: String(drainMs + 500),
      });

      const stream = await openRaw(`${url}/stream`);
      await stream.until((text) => text.startsWith('retry'));
      // A client that connected and says nothing, and one that stopped mid-request.
      const silent = await connectRaw(port, '');
      const halfSent = await connectRaw(port, 'POST /pay HTTP/1.1\r\nHost: x\r\nContent-Le');
      const silentClosed = once(silent, 'close');
      const halfSentClosed = once(halfSent, 'close');
      // In flight across the whole drain window, on a connection of its own.
      const inFlight = fetch(`${url}/slow`, { method: 'POST' });

      const signalled = Date.now();
      app.kill('SIGTERM');
      // The drain starts once Nest's signal handler runs: polled, there is no event to await.
      let status = 200;
      while (status === 200) status = (await fetch(`${url}/health`)).status;
      expect(status).toBe(503);
      // Draining: load balancers are told, but nothing is refused or closed yet.
      const during = await openRaw(`${url}/stream`);
      expect(during.status).toBe(200);
      expect(stream.response.complete).toBe(false);

      expect((await inFlight).status).toBe(201);
      await Promise.all([stream.ended, during.ended, silentClosed, halfSentClosed]);
      // Nest's shutdown hooks re-raise the signal once app.close() has finished.
      const [code, signal] = await exited;
      expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' });
      // Bounded by drainMs + graceMs (+ the app's own shutdown), not by the clients (65 s before).
      expect(Date.now() - signalled).toBeLessThan(drainMs + graceMs + 5_000);
    }, 60_000);
  });
});

/** A raw TCP connection to the app that sends `bytes` and then nothing. */
function connectRaw(port: number, bytes: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => {
      if (bytes) socket.write(bytes);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}
