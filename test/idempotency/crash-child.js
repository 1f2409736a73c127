'use strict';
// An app in its own process, from the built package: an @Idempotent() POST that places an order
// and publishes its event in outbox.transaction(), then — when asked — dies by SIGKILL right
// after COMMIT, before its response (and so its Redis record) exists.
require('reflect-metadata');
const { Body, Controller, Module, Post } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const durable = require('../support/built-package').loadBuiltPackage();

const schema = process.env.SCHEMA;

class OrdersController {
  constructor(outbox) {
    this.outbox = outbox;
  }
  async place(body) {
    const placed = await this.outbox.transaction(async (tx) => {
      const { rows } = await tx.query(
        `INSERT INTO "${schema}".orders (item) VALUES ($1) RETURNING id`,
        [body.item],
      );
      const [eventId] = await this.outbox.publish(tx, {
        topic: 'orders',
        data: { id: rows[0].id },
      });
      return { id: rows[0].id, eventId };
    });
    if (body.crash) process.kill(process.pid, 'SIGKILL');
    return { ...placed, item: body.item };
  }
}
// As TypeScript applies them: parameter decorators first, then the method's (bottom up).
Body()(OrdersController.prototype, 'place', 0);
Object.defineProperty(
  OrdersController.prototype,
  'place',
  Reflect.decorate(
    [Post('orders'), durable.Idempotent()],
    OrdersController.prototype,
    'place',
    Object.getOwnPropertyDescriptor(OrdersController.prototype, 'place'),
  ),
);
Reflect.defineMetadata('design:paramtypes', [durable.OutboxService], OrdersController);
Controller()(OrdersController);

class AppModule {}
Module({
  imports: [
    durable.SseModule.forRoot({
      postgres: { connectionString: process.env.DATABASE_URL, schema },
      redis: { url: process.env.REDIS_URL, keyPrefix: process.env.KEY_PREFIX },
      outbox: { migrate: false },
      idempotency: { inFlightTtlSeconds: 1 },
    }),
  ],
  controllers: [OrdersController],
})(AppModule);

async function main() {
  const app = await NestFactory.create(AppModule, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  process.send({ cmd: 'ready', port: app.getHttpServer().address().port });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
