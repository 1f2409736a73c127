// Compiled by `npm run check` in this app with `skipLibCheck: false` (test/compat/run-compat.js):
// the packed declarations must compile in an app that has only the required peers (no
// prom-client, no @opentelemetry/api, no fastify) and must type what users write.
import { Controller, Injectable, Module } from '@nestjs/common';
import { Pool } from 'pg';
import {
  Idempotent,
  OutboxService,
  Sse,
  SseHealthIndicators,
  SseMetrics,
  SseModule,
  SseModuleOptions,
  SseModuleOptionsFactory,
} from 'nestjs-durable-sse';
import { SseTestClient, SseTestingModule } from 'nestjs-durable-sse/testing';

@Injectable()
class SseConfig implements SseModuleOptionsFactory {
  createSseModuleOptions(): SseModuleOptions {
    return { sse: { maxConnections: 500 }, health: { path: 'sse-health' } };
  }
}

@Controller('orders')
class OrdersController {
  constructor(
    private readonly outbox: OutboxService,
    readonly metrics: SseMetrics,
    readonly indicators: SseHealthIndicators,
  ) {}

  // `req.params.id` is a string, not any.
  @Sse(':id/stream', { topic: (req) => `orders:${req.params.id.toUpperCase()}` })
  one() {}

  @Idempotent()
  async create(): Promise<string> {
    const text: string | undefined = await this.metrics.registry?.metrics();
    await this.outbox.transaction(async (tx) => {
      await this.outbox.publish(tx, { topic: 'orders', type: 'order.created', data: { text } });
    });
    return 'ok';
  }
}

@Module({
  imports: [
    SseModule.forRootAsync({ useClass: SseConfig }),
    SseModule.forRoot({ postgres: { existingPool: new Pool() } }),
    SseTestingModule.forRoot(),
  ],
  controllers: [OrdersController],
})
export class AppModule {}

// @ts-expect-error existingPool is a pg Pool, not any
SseModule.forRoot({ postgres: { existingPool: 5 } });
// @ts-expect-error an unknown option is a compile error
SseModule.forRoot({ sse: { heartbeat: 5 } });
export const client: typeof SseTestClient = SseTestClient;
