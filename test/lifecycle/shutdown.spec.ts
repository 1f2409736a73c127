import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { openRaw, RawStream } from '../support/http';
import { dropSchema, uniqueSchema } from '../support/postgres';
import { redisUrl, withRedis } from '../support/redis';

const child = path.join(__dirname, 'shutdown-child.js');
const built = path.join(__dirname, '../../dist/index.js');

describe('graceful shutdown (DESIGN §7)', () => {
  const schema = uniqueSchema('shutdown');
  afterAll(async () => {
    await dropSchema(schema);
    await withRedis(redisUrl(), async (redis) => {
      const keys = await redis.keys(`${schema}:*`);
      if (keys.length) await redis.del(...keys);
    });
  });

  it('closes an app holding 1,000 open streams, and the process then exits on its own', async () => {
    if (!fs.existsSync(built))
      throw new Error('dist/ is missing: run `npm run build` (npm test does)');
    const app = fork(child, [], {
      env: { ...process.env, SHUTDOWN_SCHEMA: schema },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const exited = once(app, 'exit');
    const [ready] = (await once(app, 'message')) as [{ port: number }];
    const url = `http://127.0.0.1:${ready.port}`;

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
  }, 60_000);
});
