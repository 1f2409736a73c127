'use strict';
// An instance with fanout 'redis' in its own process, from the built package, so a test can
// SIGKILL it while it leads: its lock session dies with it, as in a crash.
require('reflect-metadata');
const { Controller, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const durable = require('../support/built-package').loadBuiltPackage();

class FeedController {
  feed() {}
}
Object.defineProperty(
  FeedController.prototype,
  'feed',
  Reflect.decorate(
    [durable.Sse('feed', { topic: 'feed' })],
    FeedController.prototype,
    'feed',
    Object.getOwnPropertyDescriptor(FeedController.prototype, 'feed'),
  ),
);
Controller()(FeedController);

class AppModule {}
Module({
  imports: [
    durable.SseModule.forRoot({
      postgres: { connectionString: process.env.DATABASE_URL, schema: process.env.SCHEMA },
      redis: { url: process.env.REDIS_URL, keyPrefix: process.env.KEY_PREFIX },
      outbox: { fanout: 'redis', pollIntervalMs: 5000, leaderCheckMs: 200 },
    }),
  ],
  controllers: [FeedController],
})(AppModule);

async function main() {
  const app = await NestFactory.create(AppModule, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  const relay = app.get(durable.OutboxRelay);
  const report = () =>
    process.send({
      cmd: 'state',
      port: app.getHttpServer().address().port,
      leading: relay.leader.leading,
      appended: relay.leader.stats.appended,
    });
  process.on('message', (message) => message.cmd === 'state' && report());
  report();
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
