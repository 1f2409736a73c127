import {
  Body,
  CanActivate,
  ConflictException,
  Controller,
  ExecutionContext,
  Get,
  Header,
  Injectable,
  InternalServerErrorException,
  Param,
  Post,
  Res,
  UseGuards,
  ValidationPipe,
} from '@nestjs/common';
import { IsInt, IsString } from 'class-validator';
import { Cluster } from 'ioredis';
import * as http from 'node:http';
import { once } from 'node:events';
import { Idempotent, IdempotencyService, SseModuleOptions } from '../../src';
import { Platform, PLATFORMS, startApp, TestApp } from '../support/http';
import { redisUrl, uniquePrefix, withRedis } from '../support/redis';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedisCluster } = require('../support/services');

const runs: Record<string, number> = {};
const ran = (name: string) => (runs[name] = (runs[name] ?? 0) + 1);
let gate: Promise<void> = Promise.resolve();
let entered: () => void = () => undefined;

class CreateOrder {
  @IsString() item!: string;
  @IsInt() quantity!: number;
}

@Injectable()
class HeaderAuth implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    const user = request.headers['x-user'];
    if (!user) return false;
    request.user = { id: user };
    return true;
  }
}

/** The shape of NestJS's own JWT example: a principal with neither `id` nor `sub`. */
@Injectable()
class UserIdAuth implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    request.user = { userId: request.headers['x-user'], username: 'someone' };
    return true;
  }
}

@Controller()
class OrdersController {
  private next = 0;

  @Post('orders')
  @Idempotent()
  @Header('Location', '/orders/latest')
  create(@Body() body: unknown) {
    ran('create');
    return { order: ++this.next, received: body, note: 'é ✓' };
  }

  @Post('orders/other')
  @Idempotent()
  other(@Body() body: unknown) {
    ran('other');
    return { other: true, received: body };
  }

  @Post('required')
  @Idempotent({ required: true })
  required() {
    ran('required');
    return 'ok';
  }

  @Post('flaky/:mode')
  @Idempotent()
  flaky(@Param('mode') mode: string) {
    const count = ran(`flaky:${mode}`);
    if (mode === '500' && count === 1) throw new InternalServerErrorException('try again');
    if (mode === 'crash' && count === 1) throw new Error('unexpected');
    if (mode === '409') throw new ConflictException({ code: 'SOLD_OUT', count });
    return { count };
  }

  @Post('validated')
  @Idempotent()
  validated(@Body(new ValidationPipe()) body: CreateOrder) {
    ran('validated');
    return body;
  }

  @Post('slow')
  @Idempotent()
  async slow() {
    ran('slow');
    entered();
    await gate;
    return { slow: true };
  }

  @Post('secure')
  @UseGuards(HeaderAuth)
  @Idempotent()
  secure(@Body() body: unknown) {
    return { count: ran('secure'), body };
  }

  @Post('jwt-shaped')
  @UseGuards(UserIdAuth)
  @Idempotent()
  jwtShaped(@Body() body: unknown) {
    return { count: ran('jwt-shaped'), body };
  }

  @Post('jwt-shaped/scoped')
  @UseGuards(UserIdAuth)
  @Idempotent({ scope: (request) => String(request.user.userId) })
  jwtScoped(@Body() body: unknown) {
    return { count: ran('jwt-scoped'), body };
  }

  @Post('cookie')
  @Idempotent({ storedHeaders: ['set-cookie', 'x-request-cost'] })
  // header() and send(): the API Express' res and Fastify's reply share.
  cookie(@Res({ passthrough: true }) response: { header(name: string, value: string): void }) {
    ran('cookie');
    response.header('Set-Cookie', 'session=secret');
    response.header('X-Request-Cost', '7');
    return { cookie: true };
  }

  @Post('raw')
  @Idempotent()
  raw(@Res() response: { status(code: number): { send(body: unknown): void } }) {
    response.status(201).send({ raw: ran('raw') });
  }

  @Get('orders')
  @Idempotent({ required: true })
  list() {
    return { list: ran('list') };
  }
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}

async function post(
  app: TestApp,
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  const response = await fetch(`${app.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

/** Resolves once `count` of `promises` have settled (whatever their outcome). */
function settled(promises: Promise<unknown>[], count: number): Promise<void> {
  let done = 0;
  return new Promise((resolve) => {
    for (const promise of promises)
      void promise.finally(() => {
        if (++done === count) resolve();
      });
  });
}

interface Backend {
  /** Options for SseModule.forRoot (redis + idempotency). */
  options: SseModuleOptions;
  cleanup(): Promise<void>;
}

/** The whole HTTP suite, run once per Redis topology. */
function idempotencySuite(label: string, platform: Platform, setup: () => Promise<Backend>) {
  describe(`@Idempotent() over HTTP on ${platform} — ${label}`, () => {
    let backend: Backend;
    let a: TestApp;
    let b: TestApp;
    let keyCounter = 0;
    const freshKey = () => `key-${Date.now()}-${++keyCounter}`;

    beforeAll(async () => {
      backend = await setup();
      a = await startApp([OrdersController], backend.options, { platform });
      b = await startApp([OrdersController], backend.options, { platform });
    }, 60_000);
    afterAll(async () => {
      await a?.close();
      await b?.close();
      await backend?.cleanup();
    });
    beforeEach(() => {
      for (const name of Object.keys(runs)) delete runs[name];
    });

    it('runs the first request once and replays it byte for byte, with status and allowed headers', async () => {
      const key = freshKey();
      const first = await post(
        a,
        '/orders',
        { item: 'book', quantity: 1 },
        { 'idempotency-key': key },
      );
      const again = await post(
        b,
        '/orders',
        { quantity: 1, item: 'book' },
        { 'idempotency-key': `"${key}"` },
      );
      expect(runs.create).toBe(1);
      expect(first.status).toBe(201);
      expect(again.status).toBe(201);
      expect(again.text).toBe(first.text);
      expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
      expect(again.headers.get('location')).toBe('/orders/latest');
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(first.headers.get('idempotent-replayed')).toBeNull();
    });

    it('answers 422 for the same key with another body, URL or array order', async () => {
      const key = freshKey();
      await post(a, '/orders', { item: 'book', tags: [1, 2] }, { 'idempotency-key': key });
      for (const [path, body] of [
        ['/orders', { item: 'pen', tags: [1, 2] }],
        ['/orders', { item: 'book', tags: [2, 1] }],
        ['/orders/other', { item: 'book', tags: [1, 2] }],
      ] as const) {
        const reply = await post(a, path, body, { 'idempotency-key': key });
        expect(reply.status).toBe(422);
        expect(reply.headers.get('content-type')).toMatch(/^application\/problem\+json/);
        expect(JSON.parse(reply.text)).toMatchObject({
          status: 422,
          type: 'urn:nestjs-durable-sse:idempotency:key-reused',
        });
      }
      expect(runs.create).toBe(1);
      expect(runs.other).toBeUndefined();
    });

    it('validates the key: required → 400, empty/too long/non-ASCII → 400; no key runs every time', async () => {
      const missing = await post(a, '/required', {});
      expect(missing.status).toBe(400);
      expect(missing.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(missing.text)).toMatchObject({
        type: 'urn:nestjs-durable-sse:idempotency:key-required',
      });
      for (const bad of ['""', 'x'.repeat(256), '"tab\there"']) {
        const reply = await post(a, '/orders', {}, { 'idempotency-key': bad });
        expect(reply.status).toBe(400);
        expect(JSON.parse(reply.text)).toMatchObject({
          type: 'urn:nestjs-durable-sse:idempotency:key-invalid',
        });
      }
      expect(runs.required).toBeUndefined();
      await post(a, '/orders', {});
      await post(a, '/orders', {});
      expect(runs.create).toBe(2);
    });

    it('lets GET through untouched even when a key is required', async () => {
      const reply = await fetch(`${a.url}/orders`);
      expect(reply.status).toBe(200);
      expect(runs.list).toBe(1);
    });

    it('releases the key after a 5xx or an unknown error so a retry runs; stores and replays a 4xx', async () => {
      const key500 = freshKey();
      expect((await post(a, '/flaky/500', {}, { 'idempotency-key': key500 })).status).toBe(500);
      const retried = await post(b, '/flaky/500', {}, { 'idempotency-key': key500 });
      expect(retried.status).toBe(201);
      expect(runs['flaky:500']).toBe(2);

      const crash = freshKey();
      expect((await post(a, '/flaky/crash', {}, { 'idempotency-key': crash })).status).toBe(500);
      expect((await post(a, '/flaky/crash', {}, { 'idempotency-key': crash })).status).toBe(201);
      expect(runs['flaky:crash']).toBe(2);

      const key409 = freshKey();
      const first = await post(a, '/flaky/409', {}, { 'idempotency-key': key409 });
      const replay = await post(b, '/flaky/409', {}, { 'idempotency-key': key409 });
      expect(first.status).toBe(409);
      expect(replay.status).toBe(409);
      expect(replay.text).toBe(first.text);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(runs['flaky:409']).toBe(1);
    });

    it('leaves no record when a validation pipe rejects the body', async () => {
      const key = freshKey();
      const invalid = await post(
        a,
        '/validated',
        { item: 'x', quantity: 'many' },
        { 'idempotency-key': key },
      );
      expect(invalid.status).toBe(400);
      const valid = await post(
        a,
        '/validated',
        { item: 'x', quantity: 2 },
        { 'idempotency-key': key },
      );
      expect(valid.status).toBe(201);
      expect(runs.validated).toBe(1);
    });

    it('answers 409 + Retry-After while the first request runs, and 422 for a different one', async () => {
      const key = freshKey();
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      const inHandler = new Promise<void>((resolve) => (entered = resolve));
      const first = post(a, '/slow', {}, { 'idempotency-key': key });
      await inHandler;
      const during = await post(b, '/slow', {}, { 'idempotency-key': key });
      expect(during.status).toBe(409);
      expect(Number(during.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
      expect(JSON.parse(during.text)).toMatchObject({
        type: 'urn:nestjs-durable-sse:idempotency:in-progress',
      });
      const different = await post(b, '/slow', { other: true }, { 'idempotency-key': key });
      expect(different.status).toBe(422);
      open();
      expect((await first).status).toBe(201);
      expect(runs.slow).toBe(1);
    });

    it('runs the handler exactly once for 50 concurrent identical requests across two instances', async () => {
      const key = freshKey();
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      const inHandler = new Promise<void>((resolve) => (entered = resolve));
      const replies = Array.from({ length: 50 }, (_, i) =>
        post(i % 2 ? a : b, '/slow', {}, { 'idempotency-key': key }),
      );
      await inHandler;
      // The first holds the lease until the gate opens, so every other request is answered
      // while it runs: they are concurrent however slow the machine is.
      await settled(replies, 49);
      open();
      const statuses = (await Promise.all(replies)).map((r) => r.status);
      expect(runs.slow).toBe(1);
      expect(statuses.filter((s) => s === 201)).toHaveLength(1);
      expect(statuses.filter((s) => s === 409)).toHaveLength(49);
      const after = await post(a, '/slow', {}, { 'idempotency-key': key });
      expect(after.status).toBe(201);
      expect(after.headers.get('idempotent-replayed')).toBe('true');
      expect(runs.slow).toBe(1);
    });

    it('detects a different request on the lost-race path too: concurrent mixed bodies run once', async () => {
      const key = freshKey();
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      const inHandler = new Promise<void>((resolve) => (entered = resolve));
      const replies = Array.from({ length: 30 }, (_, i) =>
        post(i % 2 ? a : b, '/slow', i % 3 === 0 ? { variant: 'other' } : {}, {
          'idempotency-key': key,
        }).then((r) => ({
          variant: i % 3 === 0 ? 'other' : 'same',
          status: r.status,
        })),
      );
      await inHandler;
      await settled(replies, 29); // all answered while the first still runs
      open();
      const results = await Promise.all(replies);
      expect(runs.slow).toBe(1);
      // Whichever body won the race, every request with the other body is a 422, the others
      // with its body a 409.
      const winners = results.filter((r) => r.status === 201);
      expect(winners).toHaveLength(1);
      for (const result of results) {
        if (result === winners[0]) continue;
        expect(result.status).toBe(result.variant === winners[0].variant ? 409 : 422);
      }
    });

    it('replays allow-listed headers but never Set-Cookie', async () => {
      const key = freshKey();
      const first = await post(a, '/cookie', {}, { 'idempotency-key': key });
      expect(first.headers.get('set-cookie')).toBe('session=secret');
      const replay = await post(b, '/cookie', {}, { 'idempotency-key': key });
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(replay.headers.get('x-request-cost')).toBe('7');
      expect(replay.headers.get('set-cookie')).toBeNull();
      expect(runs.cookie).toBe(1);
    });

    it('stores a response written with @Res() too, and replays it byte for byte', async () => {
      const key = freshKey();
      const first = await post(a, '/raw', {}, { 'idempotency-key': key });
      const again = await post(b, '/raw', {}, { 'idempotency-key': key });
      expect(first.status).toBe(201);
      expect(JSON.parse(first.text)).toEqual({ raw: 1 });
      expect(again.status).toBe(201);
      expect(again.text).toBe(first.text);
      expect(again.headers.get('idempotent-replayed')).toBe('true');
      expect(runs.raw).toBe(1);
    });

    it('scopes keys by principal: two users with one key and body run twice, never replay each other', async () => {
      const key = freshKey();
      const alice = await post(
        a,
        '/secure',
        { x: 1 },
        { 'idempotency-key': key, 'x-user': 'alice' },
      );
      const bob = await post(a, '/secure', { x: 1 }, { 'idempotency-key': key, 'x-user': 'bob' });
      const aliceAgain = await post(
        b,
        '/secure',
        { x: 1 },
        { 'idempotency-key': key, 'x-user': 'alice' },
      );
      expect(JSON.parse(alice.text).count).toBe(1);
      expect(JSON.parse(bob.text).count).toBe(2);
      expect(aliceAgain.text).toBe(alice.text);
      expect(bob.headers.get('idempotent-replayed')).toBeNull();
      // A guard's rejection leaves no record either.
      expect((await post(a, '/secure', { x: 1 }, { 'idempotency-key': freshKey() })).status).toBe(
        403,
      );
    });

    it('counts outcomes', async () => {
      const stats = a.app.get(IdempotencyService).stats;
      const before = { ...stats };
      const key = freshKey();
      await post(a, '/orders', { n: 1 }, { 'idempotency-key': key });
      await post(a, '/orders', { n: 1 }, { 'idempotency-key': key });
      await post(a, '/orders', { n: 2 }, { 'idempotency-key': key });
      let open!: () => void;
      gate = new Promise((resolve) => (open = resolve));
      const inHandler = new Promise<void>((resolve) => (entered = resolve));
      const slowKey = freshKey();
      const first = post(a, '/slow', {}, { 'idempotency-key': slowKey });
      await inHandler;
      await post(a, '/slow', {}, { 'idempotency-key': slowKey });
      open();
      await first;
      expect(stats.first - before.first).toBe(2);
      expect(stats.replay - before.replay).toBe(1);
      expect(stats.mismatch - before.mismatch).toBe(1);
      expect(stats.conflict - before.conflict).toBe(1);
    });

    it('refuses two Idempotency-Key header lines (Node would join them into one key)', async () => {
      const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const request = http.request(`${a.url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': ['a', 'b'] },
        });
        request.on('response', (response) => {
          let body = '';
          response.on('data', (chunk) => (body += chunk));
          response.on('end', () => resolve({ status: response.statusCode!, body }));
        });
        request.on('error', reject);
        request.end('{}');
      });
      expect(reply.status).toBe(400);
      expect(JSON.parse(reply.body)).toMatchObject({
        type: 'urn:nestjs-durable-sse:idempotency:key-invalid',
      });
      expect(runs.create).toBeUndefined();
      // One line whose value holds a comma is one key.
      const comma = await post(a, '/orders', {}, { 'idempotency-key': `"${freshKey()}, x"` });
      expect(comma.status).toBe(201);
    });

    it('never lets a principal it cannot identify share a scope: req.user = { userId } fails loudly', async () => {
      const key = freshKey();
      const alice = await post(
        a,
        '/jwt-shaped',
        { x: 1 },
        { 'idempotency-key': key, 'x-user': 'alice' },
      );
      const bob = await post(
        a,
        '/jwt-shaped',
        { x: 1 },
        { 'idempotency-key': key, 'x-user': 'bob' },
      );
      for (const reply of [alice, bob]) {
        expect(reply.status).toBe(500);
        expect(reply.text).not.toContain('count');
      }
      expect(runs['jwt-shaped']).toBeUndefined();
      // With the fix the error names (a scope function), each principal has its own key space.
      const aliceScoped = await post(
        a,
        '/jwt-shaped/scoped',
        { x: 1 },
        { 'idempotency-key': key, 'x-user': 'alice' },
      );
      const bobScoped = await post(
        b,
        '/jwt-shaped/scoped',
        { x: 1 },
        { 'idempotency-key': key, 'x-user': 'bob' },
      );
      expect(JSON.parse(aliceScoped.text).count).toBe(1);
      expect(JSON.parse(bobScoped.text).count).toBe(2);
      expect(bobScoped.headers.get('idempotent-replayed')).toBeNull();
    });

    it('rejects a request body that is not JSON before taking a key', async () => {
      const reply = await post(a, '/orders', '{not json', { 'idempotency-key': freshKey() });
      expect(reply.status).toBe(400);
      expect(runs.create).toBeUndefined();
    });
  });
}

for (const platform of PLATFORMS)
  idempotencySuite('single Redis', platform, async () => {
    const keyPrefix = uniquePrefix('idem-http');
    return {
      options: { redis: { url: redisUrl(), keyPrefix }, idempotency: { inFlightTtlSeconds: 30 } },
      cleanup: () =>
        withRedis(redisUrl(), async (redis) => {
          const keys = await redis.keys(`${keyPrefix}*`);
          if (keys.length) await redis.del(...keys);
        }),
    };
  });

// The topology is the store's concern, not the platform's: one platform each.
for (const [keyPrefix, platform] of [
  [undefined, 'express'],
  ['cluster:prefix:', 'fastify'],
] as const) {
  idempotencySuite(
    `3-master Redis Cluster${keyPrefix ? ', keyPrefix' : ''}`,
    platform,
    async () => {
      const cluster = await startPrivateRedisCluster(3);
      const client = new Cluster(cluster.nodes, {
        keyPrefix,
        enableOfflineQueue: false,
        redisOptions: { maxRetriesPerRequest: 1 },
      });
      await once(client, 'ready');
      return {
        options: { redis: { existingClient: client }, idempotency: { inFlightTtlSeconds: 30 } },
        cleanup: async () => {
          client.disconnect();
          await cluster.destroy();
        },
      };
    },
  );
}
