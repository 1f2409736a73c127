import { DynamicModule, Module, ValidationPipe } from '@nestjs/common';
import { APP_PIPE } from '@nestjs/core';
import { OutboxFanout, SseModule, SseModuleOptions } from '../../src';
import { pglitePostgres, PgliteLike } from '../../src/pglite';
import type { Backends } from './backends';
import { OrdersController } from './orders.controller';
import { ORDERS_SCHEMA, ORDERS_SCHEMA_NAME, OrdersRepository } from './orders.repository';

/** Module options for the chosen backends: the production path, or the embedded one. */
export function ordersSseOptions(
  backends: Backends,
  embedded?: PgliteLike,
  schema = ORDERS_SCHEMA,
  redisKeyPrefix = 'orders-demo:',
  fanout: OutboxFanout = 'postgres',
): SseModuleOptions {
  const postgres =
    backends.postgres.kind === 'server'
      ? { connectionString: backends.postgres.url, pool: { max: 10 } }
      : pglitePostgres(requireEmbedded(embedded));
  return {
    sse: {
      heartbeatMs: 15_000,
      retryMs: 1_000,
      maxConnections: 5_000,
      // Browsers' EventSource gives up for good on a 503; "retry" keeps them reconnecting
      // through restarts and full instances.
      rejectMode: 'retry',
    },
    postgres: { ...postgres, schema },
    outbox: { pollIntervalMs: 1_000, fanout },
    ...(backends.redis.kind === 'server'
      ? { redis: { url: backends.redis.url, keyPrefix: redisKeyPrefix } }
      : {}),
    idempotency: { ttlSeconds: 24 * 3600 },
    metrics: { path: 'metrics' },
  };
}

function requireEmbedded(embedded: PgliteLike | undefined): PgliteLike {
  if (!embedded) throw new Error('embedded PostgreSQL chosen but no PGlite instance given');
  return embedded;
}

@Module({})
export class OrdersModule {
  static register(options: SseModuleOptions): DynamicModule {
    const schema = options.postgres?.schema ?? ORDERS_SCHEMA;
    return {
      module: OrdersModule,
      imports: [SseModule.forRoot(options)],
      controllers: [OrdersController],
      providers: [
        OrdersRepository,
        { provide: ORDERS_SCHEMA_NAME, useValue: schema },
        {
          provide: APP_PIPE,
          useValue: new ValidationPipe({ whitelist: true, forbidNonWhitelisted: true }),
        },
      ],
    };
  }
}
