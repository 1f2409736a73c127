'use strict';
// A whole app in its own process, from the built package: PostgreSQL outbox, Redis idempotency,
// topic streams. Closes on request and must then exit on its own (nothing left to keep it alive).
require('reflect-metadata');
const { Controller, Module, Post } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const durable = require('../support/built-package').loadBuiltPackage();

class AppController {
  stream() {}
  pay() {
    return { ok: true };
  }
  // A request in flight when SIGTERM arrives: it must still be answered.
  async slow() {
    await new Promise((resolve) => setTimeout(resolve, Number(process.env.SLOW_MS ?? 500)));
    return { slow: true };
  }
}
const decorate = (name, decorators) =>
  Object.defineProperty(
    AppController.prototype,
    name,
    Reflect.decorate(
      decorators,
      AppController.prototype,
      name,
      Object.getOwnPropertyDescriptor(AppController.prototype, name),
    ),
  );
decorate('stream', [durable.Sse('stream', { topic: 'shutdown' })]);
decorate('pay', [Post('pay'), durable.Idempotent()]);
decorate('slow', [Post('slow')]);
Controller()(AppController);

class AppModule {}
Module({
  imports: [
    durable.SseModule.forRoot({
      sse: { maxConnections: 5000, maxConnectionsPerClient: 5000, heartbeatMs: 1000 },
      postgres: { connectionString: process.env.DATABASE_URL, schema: process.env.SHUTDOWN_SCHEMA },
      redis: { url: process.env.REDIS_URL, keyPrefix: `${process.env.SHUTDOWN_SCHEMA}:` },
      outbox: {
        pollIntervalMs: 100,
        retentionIntervalMs: 1000,
        fanout: process.env.FANOUT || 'postgres',
      },
      shutdown: {
        drainMs: Number(process.env.DRAIN_MS ?? 0),
        graceMs: Number(process.env.GRACE_MS ?? 10000),
      },
    }),
  ],
  controllers: [AppController],
})(AppModule);

async function main() {
  const app =
    process.env.PLATFORM === 'fastify'
      ? await NestFactory.create(
          AppModule,
          new (require('@nestjs/platform-fastify').FastifyAdapter)(),
          { logger: ['error'] },
        )
      : await NestFactory.create(AppModule, { logger: ['error'] });
  app.enableShutdownHooks();
  await app.listen(0, '127.0.0.1');
  process.on('message', async (message) => {
    if (message.cmd !== 'close') return;
    const started = Date.now();
    await app.close();
    process.send({ cmd: 'closed', ms: Date.now() - started });
    process.disconnect(); // the IPC channel is the parent's, not a reason to stay
  });
  process.send({ cmd: 'ready', port: app.getHttpServer().address().port });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
