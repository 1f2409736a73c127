'use strict';
// Runs in a new Nest app (a copy of test/compat/nest11 or nest12: the working directory) that installed
// the packed package with `npm install <tarball>`, as README's "Use it in your app" says; run by
// ../run-compat.js. Everything is required from that app, as its own code would.
// NestJS 12 is ESM-only: its packages load from CommonJS through require(esm).
const path = require('node:path');
const appRequire = require('node:module').createRequire(path.join(process.cwd(), 'package.json'));
appRequire('reflect-metadata');
const test = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');
const { Controller, Module, UseGuards, ForbiddenException } = appRequire('@nestjs/common');
const { NestFactory } = appRequire('@nestjs/core');
const { of } = appRequire('rxjs');
const durable = appRequire('nestjs-durable-sse');

const nestVersion = appRequire('@nestjs/core/package.json').version;
const major = nestVersion.split('.')[0];
const expectedMajor = /^durable-sse-nest(\d+)-/.exec(path.basename(process.cwd()))?.[1];

/** Every test runs on both of Nest's HTTP platforms. */
const PLATFORMS = ['express', 'fastify'];
function create(module, platform) {
  if (platform === 'express') return NestFactory.create(module, { logger: ['error'] });
  const { FastifyAdapter } = appRequire('@nestjs/platform-fastify');
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
    // retryJitterMs: 0 — the wire is asserted byte for byte below.
    durable.SseModule.forRoot({
      sse: { heartbeatMs: 60000, retryMs: 1000, retryJitterMs: 0, maxConnections: 1 },
    }),
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
const schema = `compat${major}_${process.pid}`;
Module({
  imports: [
    durable.SseModule.forRoot({
      sse: { heartbeatMs: 60000, retryJitterMs: 0 },
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
const { Post, Body } = appRequire('@nestjs/common');
Body()(PaymentsController.prototype, 'pay', 0);
decorateMethod(PaymentsController, 'pay', [Post('pay'), durable.Idempotent()]);
Controller()(PaymentsController);

class IdempotencyModule {}
Module({
  imports: [
    durable.SseModule.forRoot({
      redis: {
        url: process.env.REDIS_URL || 'redis://127.0.0.1:6379',
        keyPrefix: `compat${major}:${process.pid}:`,
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
      await app.close();
      const Redis = appRequire('ioredis');
      const redis = new Redis(process.env.REDIS_URL || 'redis://127.0.0.1:6379');
      const keys = await redis.keys(`compat${major}:${process.pid}:*`);
      if (keys.length) await redis.del(...keys);
      redis.disconnect();
    }
  });

for (const platform of PLATFORMS)
  test(`nestjs-durable-sse under NestJS ${nestVersion} on ${platform}`, async (t) => {
    assert.equal(major, expectedMajor);
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

test('the package surface: its entry points, and nothing else', async () => {
  const testing = appRequire('nestjs-durable-sse/testing');
  assert.equal(typeof testing.SseTestClient.connect, 'function');
  assert.equal(typeof testing.SseTestingModule.forRoot, 'function');
  assert.equal(typeof testing.describeIdempotencyStoreContract, 'function');
  const pglite = appRequire('nestjs-durable-sse/pglite');
  assert.equal(typeof pglite.pglitePostgres, 'function');
  // This app did not install the optional peer: the error says what to do.
  await assert.rejects(pglite.openPglite(), /npm install @electric-sql\/pglite/);
  // Internals stay inside: the exports map refuses deep imports.
  assert.throws(
    () => appRequire('nestjs-durable-sse/dist/sse/sse-streamer'),
    (error) => error.code === 'ERR_PACKAGE_PATH_NOT_EXPORTED',
  );
  assert.equal(durable.SseStreamer, undefined);
  assert.equal(durable.pglitePostgres, undefined);
});
