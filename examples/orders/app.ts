import { INestApplication, LogLevel, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { PGlite } from '@electric-sql/pglite';
import type { Backends } from './backends';
import { OrdersModule, ordersSseOptions } from './orders.module';

export interface OrdersApp {
  app: INestApplication;
  /** Closes the app (streams end, relay stops, pools close), then the embedded database. */
  close(): Promise<void>;
}

/** Builds the example app on the chosen backends (not listening yet). */
export async function createOrdersApp(
  backends: Backends,
  options: { logger?: LogLevel[] | false; schema?: string; redisKeyPrefix?: string } = {},
): Promise<OrdersApp> {
  let pglite: PGlite | undefined;
  if (backends.postgres.kind === 'embedded') {
    // Loaded only when chosen: the production path never touches PGlite.
    const { PGlite } = await import('@electric-sql/pglite');
    pglite = await PGlite.create(backends.postgres.dataDir);
  }
  try {
    const app = await NestFactory.create(
      OrdersModule.register(
        ordersSseOptions(backends, pglite, options.schema, options.redisKeyPrefix),
      ),
      {
        logger: options.logger ?? ['log', 'warn', 'error'],
      },
    );
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
