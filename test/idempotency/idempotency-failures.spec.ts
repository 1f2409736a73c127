// Outages and leases, against a private redis-server (never the shared one).
import { CanActivate, Controller, Injectable, Post, UseGuards } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { once } from 'node:events';
import {
  IDEMPOTENCY_STORE,
  Idempotent,
  IdempotencyService,
  IdempotencyStore,
  Sha256FingerprintStrategy,
  SseModule,
} from '../../src';
import { raceTimeout } from '../../src/common/timeout';
import { RedisConnection } from '../../src/connections/redis-connection';
import { PLATFORMS, startApp, TestApp } from '../support/http';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedis } = require('../support/services');

@Injectable()
class AllowAll implements CanActivate {
  canActivate(): boolean {
    return true;
  }
}

const COMMAND_TIMEOUT_MS = 300;
const runs: Record<string, number> = {};
let gate: Promise<void> = Promise.resolve();
let entered: () => void = () => undefined;

@Controller()
class PaymentsController {
  @Post('pay')
  @Idempotent()
  pay() {
    runs.pay = (runs.pay ?? 0) + 1;
    return { paid: runs.pay };
  }

  @Post('slow')
  @Idempotent({ inFlightTtlSeconds: 1 })
  async slow() {
    runs.slow = (runs.slow ?? 0) + 1;
    entered();
    await gate;
    return { slow: runs.slow };
  }
}

const post = async (app: TestApp, path: string, key: string) => {
  const response = await fetch(`${app.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: '{}',
  });
  return { status: response.status, headers: response.headers, body: await response.text() };
};

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('idempotency under Redis failures (private Redis)', () => {
    let redis: {
      url: string;
      pid(): number;
      stop(): Promise<void>;
      start(): Promise<void>;
      destroy(): Promise<void>;
    };
    let closed: TestApp;
    let open: TestApp;
    let n = 0;
    const key = () => `k${++n}`;

    beforeAll(async () => {
      redis = await startPrivateRedis();
      const redisOptions = { url: redis.url, commandTimeoutMs: COMMAND_TIMEOUT_MS };
      closed = await startApp(
        [PaymentsController],
        {
          redis: redisOptions,
          idempotency: { failMode: 'closed', retryAfterSeconds: 2 },
        },
        { platform },
      );
      open = await startApp(
        [PaymentsController],
        {
          redis: redisOptions,
          idempotency: { failMode: 'open' },
        },
        { platform },
      );
    }, 60_000);
    afterAll(async () => {
      await closed?.close();
      await open?.close();
      await redis?.destroy();
    });
    beforeEach(() => {
      for (const name of Object.keys(runs)) delete runs[name];
    });

    const ready = async (app: TestApp) => {
      const client = app.app.get(RedisConnection).client!;
      if (client.status !== 'ready') await once(client, 'ready');
    };

    it('answers 503 + Retry-After while Redis is down (failMode closed), and recovers with it', async () => {
      await redis.stop();
      try {
        const down = await post(closed, '/pay', key());
        expect(down.status).toBe(503);
        expect(down.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(down.headers.get('retry-after')).toBe('2');
        expect(JSON.parse(down.body)).toMatchObject({
          type: 'urn:nestjs-durable-sse:idempotency:store-unavailable',
        });
        expect(runs.pay).toBeUndefined();

        // failMode open: the handler runs, without idempotency, and the bypass is counted.
        const bypassed = open.app.get(IdempotencyService).stats.bypass;
        const k = key();
        expect((await post(open, '/pay', k)).status).toBe(201);
        expect((await post(open, '/pay', k)).status).toBe(201);
        expect(runs.pay).toBe(2);
        expect(open.app.get(IdempotencyService).stats.bypass).toBe(bypassed + 2);
      } finally {
        await redis.start();
      }
      await ready(closed);
      const k = key();
      expect((await post(closed, '/pay', k)).status).toBe(201);
      const replay = await post(closed, '/pay', k);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
    });

    it('ends every request within the store timeout while Redis hangs (SIGSTOP), then works after SIGCONT', async () => {
      await ready(closed);
      process.kill(redis.pid(), 'SIGSTOP');
      try {
        // Bounded by the 300 ms command timeout (with room for a loaded machine), not by Redis:
        // it stays stopped until the replies are in.
        const replies = await raceTimeout(
          Promise.all([post(closed, '/pay', key()), post(closed, '/pay', key())]),
          COMMAND_TIMEOUT_MS * 10,
          () => {
            throw new Error(`requests still open ${COMMAND_TIMEOUT_MS * 10} ms into the hang`);
          },
        );
        expect(replies.map((r) => r.status)).toEqual([503, 503]);
      } finally {
        process.kill(redis.pid(), 'SIGCONT');
      }
      await ready(closed);
      expect((await post(closed, '/pay', key())).status).toBe(201);
    });

    it('frees a key after the lease, not the TTL, when its owner died after acquiring', async () => {
      await ready(closed);
      const k = key();
      // A request that took the key and then its process died: nobody completes or releases it.
      const store = closed.app.get<IdempotencyStore>(IDEMPOTENCY_STORE);
      const fingerprint = new Sha256FingerprintStrategy().fingerprint({
        scope: '',
        method: 'POST',
        url: '/pay',
        body: {},
      });
      expect(await store.acquire(`idem:{:${k}}`, fingerprint, 'dead-owner', 300)).toEqual({
        state: 'acquired',
      });
      expect((await post(closed, '/pay', k)).status).toBe(409);
      // The lease is 300 ms and the TTL a day: the retry runs once the lease is gone.
      let status = 409;
      for (let attempt = 0; attempt < 50 && status === 409; attempt++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        status = (await post(closed, '/pay', k)).status;
      }
      expect(status).toBe(201);
      expect(runs.pay).toBe(1);
    });

    it('renews the lease of a handler that runs three times longer than it', async () => {
      await ready(closed);
      const k = key();
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      const inHandler = new Promise<void>((resolve) => (entered = resolve));
      // Renewals are due every third of the 1 s lease: nine of them span three leases.
      const store = closed.app.get<IdempotencyStore>(IDEMPOTENCY_STORE);
      const original = store.extend.bind(store);
      let renewed = 0;
      let threeLeases!: () => void;
      const spanned = new Promise<void>((resolve) => (threeLeases = resolve));
      const extend = jest
        .spyOn(store, 'extend')
        .mockImplementation(async (recordKey, owner, leaseMs) => {
          const extended = await original(recordKey, owner, leaseMs);
          if (extended && ++renewed === 9) threeLeases();
          return extended;
        });
      try {
        const first = post(closed, '/slow', k);
        await inHandler;
        await spanned;
        // Three leases later the first is still running and still holds the key.
        expect((await post(closed, '/slow', k)).status).toBe(409);
        release();
        expect((await first).status).toBe(201);
        expect(runs.slow).toBe(1);
      } finally {
        extend.mockRestore();
      }
    });
  });

  describe('scope warning', () => {
    it('warns once when a guarded route has no principal to scope keys by, and not with scope: false', async () => {
      @Controller()
      class GuardedController {
        @Post('guarded')
        @UseGuards(AllowAll)
        @Idempotent()
        guarded() {
          return 'ok';
        }

        @Post('shared')
        @UseGuards(AllowAll)
        @Idempotent({ scope: false })
        shared() {
          return 'ok';
        }
      }
      const t = await startApp([GuardedController], {}, { platform });
      const warn = jest.spyOn(t.app.get(IdempotencyService).logger, 'report');
      try {
        await post(t, '/guarded', 'w1');
        await post(t, '/guarded', 'w2');
        await post(t, '/shared', 'w3');
        const scopeWarnings = warn.mock.calls.filter(
          ([id, message]) => id === 'idempotency.route' && message.includes('no scope'),
        );
        expect(scopeWarnings).toHaveLength(1);
        expect(scopeWarnings[0][1]).toContain('GuardedController.guarded');
      } finally {
        warn.mockRestore();
        await t.close();
      }
    });
  });
});

describe('in-memory idempotency store', () => {
  it('serves a single process without Redis', async () => {
    const t = await startApp([PaymentsController], {});
    try {
      for (const name of Object.keys(runs)) delete runs[name];
      const first = await post(t, '/pay', 'mem-1');
      const replay = await post(t, '/pay', 'mem-1');
      expect(first.status).toBe(201);
      expect(replay.body).toBe(first.body);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(runs.pay).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('refuses to start in production unless explicitly allowed', async () => {
    const previous = process.env.NODE_ENV;
    process.env.NODE_ENV = 'production';
    try {
      await expect(
        Test.createTestingModule({
          imports: [SseModule.forRoot({})],
          controllers: [PaymentsController],
        })
          .compile()
          .then((m) => m.createNestApplication({ logger: false }).init()),
      ).rejects.toThrow(/in-memory store in production/);
      const allowed = await Test.createTestingModule({
        imports: [SseModule.forRoot({ idempotency: { allowMemoryStoreInProduction: true } })],
        controllers: [PaymentsController],
      }).compile();
      const app = allowed.createNestApplication({ logger: false });
      await app.init();
      await app.close();
      // Without any @Idempotent() route, the in-memory default is no problem.
      const plain = await Test.createTestingModule({ imports: [SseModule.forRoot({})] }).compile();
      await plain.createNestApplication({ logger: false }).init();
      await plain.close();
    } finally {
      process.env.NODE_ENV = previous;
    }
  });
});
