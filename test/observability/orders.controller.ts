import { Body, Controller, Post } from '@nestjs/common';
import { Idempotent, OutboxService, Sse } from '../../src';

/**
 * The app the tracing and diagnostics tests observe: a topic stream, and an idempotent POST that publishes one
 * event in an outbox transaction and answers with its ids.
 */
@Controller()
export class OrdersController {
  constructor(private readonly outbox: OutboxService) {}

  @Sse('orders', { topic: 'orders' })
  orders() {}

  @Post('orders')
  @Idempotent()
  place(@Body() body: { item: string }) {
    return this.outbox.transaction(async (tx) => ({
      ids: await this.outbox.publish(tx, { topic: 'orders', data: body.item }),
    }));
  }
}
