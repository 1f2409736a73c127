import { INestApplication, LogLevel, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { PGlite } from '@electric-sql/pglite';
import type { OutboxFanout } from '../../src';
import type { Backends } from './backends';
import { OrdersModule, ordersSseOptions } from './orders.module';

export interface OrdersApp {
  app: INestApplication;
  /** Closes the app (streams end, relay stops, pools close), then the embedded database. */
  close(): Promise<void>;
}

export interface OrdersAppOptions {
  logger?: LogLevel[] | false;
  schema?: string;
  redisKeyPrefix?: string;
  /** Nest's HTTP platform (default Express). The module and the example work the same on both. */
  platform?: 'express' | 'fastify';
  /**
   * The platform's trust-proxy setting (Express' `trust proxy`, Fastify's `trustProxy`: a hop
   * count, true/false, or addresses/subnets), so clients behind a proxy keep their own address.
   */
  trustProxy?: number | boolean | string;
  /** `outbox.fanout` (needs Redis for `'redis'`). Default `'postgres'`. */
  fanout?: OutboxFanout;
}

/** Builds the example app on the chosen backends (not listening yet). */
export async function createOrdersApp(
  backends: Backends,
  options: OrdersAppOptions = {},
): Promise<OrdersApp> {
  let pglite: PGlite | undefined;
  if (backends.postgres.kind === 'embedded') {
    // Loaded only when chosen: the production path never touches PGlite.
    const { PGlite } = await import('@electric-sql/pglite');
    pglite = await PGlite.create(backends.postgres.dataDir);
  }
  try {
    const module = OrdersModule.register(
      ordersSseOptions(backends, pglite, options.schema, options.redisKeyPrefix, options.fanout),
    );
    const appOptions = { logger: options.logger ?? ['log', 'warn', 'error'] } as const;
    let app: INestApplication;
    if (options.platform === 'fastify') {
      const { FastifyAdapter } = await import('@nestjs/platform-fastify');
      app = await NestFactory.create(
        module,
        new FastifyAdapter({ trustProxy: options.trustProxy }),
        appOptions,
      );
    } else {
      app = await NestFactory.create(module, appOptions);
      if (options.trustProxy !== undefined)
        app.getHttpAdapter().getInstance().set('trust proxy', options.trustProxy);
    }
    new Logger('OrdersExample').log(backends.summary);
    let closing: Promise<void> | undefined;
    return {
      app,
      close: () =>
        (closing ??= (async () => {
          await app.close();
          await pglite?.close();
        })()),
    };
  } catch (error) {
    await pglite?.close();
    throw error;
  }
}
