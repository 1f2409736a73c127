'use strict';
// Runs under NestJS 12 (ESM-only packages loaded from CommonJS via require(esm)) against the
// packed package in ./node_modules/nestjs-durable-sse, installed by ../run-nest12.js.
require('reflect-metadata');
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Controller, Module, UseGuards, ForbiddenException } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { of } = require('rxjs');
const durable = require('nestjs-durable-sse');

const nestVersion = require('@nestjs/core/package.json').version;

/** Every test runs on both of Nest's HTTP platforms. */
const PLATFORMS = ['express', 'fastify'];
function create(module, platform) {
  if (platform === 'express') return NestFactory.create(module, { logger: ['error'] });
  const { FastifyAdapter } = require('@nestjs/platform-fastify');
  return NestFactory.create(module, new FastifyAdapter(), { logger: ['error'] });
}

function decorateMethod(target, name, decorators) {
  const descriptor = Reflect.decorate(
    decorators,
    target.prototype,
    name,
    Object.getOwnPropertyDescriptor(target.prototype, name),
  );
  Object.defineProperty(target.prototype, name, descriptor);
}

class DenyGuard {
  canActivate(context) {
    if (context.switchToHttp().getRequest().headers['x-deny']) throw new ForbiddenException();
    return true;
  }
}

class StreamController {
  topic() {}
  ticks() {
    return of({ id: '1', data: { n: 1 } }, { id: '2', type: 'tick', data: 'a\nb' });
  }
}
decorateMethod(StreamController, 'topic', [
  durable.Sse('topic', { topic: 'news' }),
  UseGuards(DenyGuard),
]);
decorateMethod(StreamController, 'ticks', [durable.Sse('ticks')]);
Controller()(StreamController);

class AppModule {}
Module({
  imports: [
    durable.SseModule.forRoot({ sse: { heartbeatMs: 60000, retryMs: 1000, maxConnections: 1 } }),
  ],
  controllers: [StreamController],
})(AppModule);

function open(url, headers = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { headers, agent: false }, (res) => {
      let text = '';
      const waiters = [];
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        text += chunk;
        waiters.forEach((w) => w());
      });
      const ended = new Promise((r) => res.on('close', r));
      resolve({
        res,
        ended,
        text: () => text,
        until: (pred) =>
          new Promise((r) => {
            const check = () => pred(text) && r(text);
            waiters.push(check);
            check();
          }),
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

class OutboxModule {}
const schema = `nest12_${process.pid}`;
Module({
  imports: [
    durable.SseModule.forRoot({
      sse: { heartbeatMs: 60000 },
      postgres: {
        connectionString: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
        schema,
      },
      outbox: { pollIntervalMs: 60000 },
    }),
  ],
  controllers: [StreamController],
})(OutboxModule);

for (const platform of PLATFORMS)
  test(`outbox under NestJS ${nestVersion} on ${platform}: publish, deliver, resume`, async () => {
    const app = await create(OutboxModule, platform);
    await app.listen(0, '127.0.0.1');
    const base = `http://127.0.0.1:${app.getHttpServer().address().port}`;
    const outbox = app.get(durable.OutboxService);
    try {
      const live = await open(`${base}/topic`);
      await live.until((x) => x.startsWith('retry'));
      const ids = await outbox.transaction((tx) =>
        outbox.publish(tx, [
          { topic: 'news', type: 'n', data: { a: 1 } },
          { topic: 'news', data: 'b' },
        ]),
      );
      const text = await live.until((x) => x.includes(`id: ${ids[1]}`));
      assert.equal(
        text,
        `retry: 3000\n\nid: ${ids[0]}\nevent: n\ndata: {"a":1}\n\nid: ${ids[1]}\ndata: b\n\n`,
      );
      const resumed = await open(`${base}/topic`, { 'last-event-id': ids[0] });
      assert.match(
        await resumed.until((x) => x.includes(`id: ${ids[1]}`)),
        new RegExp(`id: ${ids[1]}\\ndata: b`),
      );
      live.close();
      resumed.close();
    } finally {
      await app
        .get(durable.PostgresConnection)
        .requirePool()
        .query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await app.close();
    }
  });

class PaymentsController {
  pay(body) {
    PaymentsController.runs++;
    return { paid: PaymentsController.runs, body };
  }
}
PaymentsController.runs = 0;
const { Post, Body } = require('@nestjs/common');
Body()(PaymentsController.prototype, 'pay', 0);
decorateMethod(PaymentsController, 'pay', [Post('pay'), durable.Idempotent()]);
Controller()(PaymentsController);

class IdempotencyModule {}
Module({
  imports: [
    durable.SseModule.forRoot({
      redis: {
        url: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
        keyPrefix: `nest12:${process.pid}:`,
      },
    }),
  ],
  controllers: [PaymentsController],
})(IdempotencyModule);

for (const platform of PLATFORMS)
  test(`@Idempotent() under NestJS ${nestVersion} on ${platform}: first, replay, 422 problem`, async () => {
    const app = await create(IdempotencyModule, platform);
    await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${app.getHttpServer().address().port}/pay`;
    const post = (key, body) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': key },
        body: JSON.stringify(body),
      });
    try {
      const before = PaymentsController.runs;
      const key = `k-${platform}-${Date.now()}`;
      const first = await post(key, { a: 1, b: 2 });
      const replay = await post(`"${key}"`, { b: 2, a: 1 });
      assert.equal(first.status, 201);
      assert.equal(replay.status, 201);
      assert.equal(replay.headers.get('idempotent-replayed'), 'true');
      assert.equal(await replay.text(), await first.text());
      const reused = await post(key, { a: 2 });
      assert.equal(reused.status, 422);
      assert.match(reused.headers.get('content-type'), /^application\/problem\+json/);
      assert.equal(PaymentsController.runs, before + 1);
    } finally {
      // The module's client prefixes keys itself; KEYS patterns are not prefixed.
      const redis = app.get(durable.RedisConnection).client;
      const keys = await redis.keys(`nest12:${process.pid}:*`);
      if (keys.length)
        await redis.del(...keys.map((key) => key.slice(`nest12:${process.pid}:`.length)));
      await app.close();
    }
  });

for (const platform of PLATFORMS)
  test(`nestjs-durable-sse under NestJS ${nestVersion} on ${platform}`, async (t) => {
    assert.match(nestVersion, /^12\./);
    const app = await create(AppModule, platform);
    await app.listen(0, '127.0.0.1');
    const base = `http://127.0.0.1:${app.getHttpServer().address().port}`;

    await t.test('invalid options fail bootstrap with SseConfigError', async () => {
      class Bad {}
      Module({ imports: [durable.SseModule.forRoot({ sse: { heartbeatMs: -1 } })] })(Bad);
      await assert.rejects(
        NestFactory.createApplicationContext(Bad, { logger: false, abortOnError: false }),
        (error) => {
          assert.equal(error.name, 'SseConfigError');
          assert.match(error.message, /sse\.heartbeatMs/);
          return true;
        },
      );
    });

    await t.test('observable handler streams framed events', async () => {
      const s = await open(`${base}/ticks`);
      await s.ended;
      assert.equal(s.res.statusCode, 200);
      assert.equal(s.res.headers['content-type'], 'text/event-stream');
      assert.equal(
        s.text(),
        'retry: 1000\n\nid: 1\ndata: {"n":1}\n\nid: 2\nevent: tick\ndata: a\ndata: b\n\n',
      );
    });

    await t.test('guard rejection is an ordinary 403', async () => {
      const s = await open(`${base}/topic`, { 'x-deny': '1' });
      await s.ended;
      assert.equal(s.res.statusCode, 403);
    });

    await t.test(
      'topic stream receives hub events; a second stream gets 503 + Retry-After',
      async () => {
        const s = await open(`${base}/topic`);
        await s.until((x) => x.startsWith('retry'));
        const full = await open(`${base}/topic`);
        await full.ended;
        assert.equal(full.res.statusCode, 503);
        assert.ok(Number(full.res.headers['retry-after']) >= 1);
        app.get(durable.SseHub).publish('news', { id: 'n1', data: 'hello' });
        assert.equal(
          await s.until((x) => x.includes('data: hello')),
          'retry: 1000\n\nid: n1\ndata: hello\n\n',
        );

        await app.close();
        await s.ended;
        assert.equal(app.get(durable.SseConnectionRegistry).size, 0);
      },
    );
  });
