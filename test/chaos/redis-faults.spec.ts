// The idempotency store's fault model (docs/guarantees.md) against private redis-servers: a silently
// dead network path, and restarts with and without persistence.
import { Controller, Post } from '@nestjs/common';
import { Idempotent } from '../../src';
import { raceTimeout } from '../../src/common/timeout';
import { FaultProxy } from '../support/fault-proxy';
import { startApp, TestApp } from '../support/http';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedis } = require('../support/services');

let runs = 0;

@Controller()
class PaymentsController {
  @Post('pay')
  @Idempotent()
  pay() {
    return { paid: ++runs };
  }
}

interface RedisServer {
  url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  destroy(): Promise<void>;
}

const pay = async (app: TestApp, key: string) => {
  const response = await fetch(`${app.url}/pay`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: '{}',
  });
  return { status: response.status, replayed: response.headers.get('idempotent-replayed') };
};

/** Retries `pay` until it is not a 503 (the store reconnecting), bounded by a deadline. */
async function payWhenAvailable(app: TestApp, key: string, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const reply = await pay(app, key);
    if (reply.status !== 503 || Date.now() > deadline) return reply;
  }
}

describe('chaos: Redis under the idempotency store (private servers)', () => {
  it('a silent network path: requests answer 503 within the bound, then the connection is replaced and replays work', async () => {
    const redis: RedisServer = await startPrivateRedis();
    const proxy = await FaultProxy.start(redis.url);
    const t = await startApp([PaymentsController], {
      redis: { url: proxy.via(redis.url), commandTimeoutMs: 300 },
    });
    try {
      const first = await pay(t, 'silent-1');
      expect(first.status).toBe(201);
      const ranBefore = runs;
      expect(proxy.freeze()).toBe(1);

      const during = await raceTimeout(pay(t, 'silent-1'), 3_000, () => {
        throw new Error('an idempotent request hung on a silent Redis');
      });
      expect(during.status).toBe(503);
      // The silent connection is destroyed (socketTimeout) and a new one passes the proxy.
      const after = await payWhenAvailable(t, 'silent-1');
      expect(after).toEqual({ status: 201, replayed: 'true' });
      expect(runs).toBe(ranBefore);
      expect(proxy.accepted).toBeGreaterThan(1);
    } finally {
      await raceTimeout(t.close(), 5_000, () => {
        throw new Error('app.close() hung on a silent Redis');
      });
      await proxy.close();
      await redis.destroy();
    }
  }, 30_000);

  it.each([
    [true, 'replays the stored response: the handler ran once'],
    [
      false,
      'has forgotten the record: the handler runs again (why docs/idempotency.md asks for AOF)',
    ],
  ])(
    'restarted with appendonly=%s, it %s',
    async (appendOnly, _what) => {
      const redis: RedisServer = await startPrivateRedis({ appendOnly });
      const t = await startApp([PaymentsController], {
        redis: { url: redis.url, commandTimeoutMs: 500 },
      });
      try {
        const key = `restart-${appendOnly}`;
        const before = runs;
        expect((await pay(t, key)).status).toBe(201);
        await redis.stop();
        expect((await pay(t, key)).status).toBe(503); // failMode closed while it is down
        await redis.start();
        const retry = await payWhenAvailable(t, key);
        expect(retry.status).toBe(201);
        if (appendOnly) {
          expect(retry.replayed).toBe('true');
          expect(runs - before).toBe(1);
        } else {
          expect(retry.replayed).toBeNull();
          expect(runs - before).toBe(2);
        }
      } finally {
        await t.close();
        await redis.destroy();
      }
    },
    30_000,
  );
});
