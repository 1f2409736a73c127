/**
 * `npm start`: the orders example on real PostgreSQL and Redis when they are there, on an
 * embedded PostgreSQL and the in-memory idempotency store when not (see backends.ts).
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { join } from 'node:path';
import { createOrdersApp } from './app';
import { resolveBackends } from './backends';

async function main() {
  const backends = await resolveBackends({
    embeddedDataDir: process.env.PGLITE_DATA_DIR ?? join(process.cwd(), '.tmp', 'orders-pglite'),
  });
  const { app, close } = await createOrdersApp(backends);
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port, process.env.HOST ?? '0.0.0.0');
  const logger = new Logger('OrdersExample');
  logger.log(`Open http://localhost:${port} (Ctrl+C to stop)`);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      logger.log(`${signal}: closing streams and connections`);
      close().then(
        () => process.exit(0),
        (error) => {
          logger.error(error);
          process.exit(1);
        },
      );
    });
  }
}

main().catch((error) => {
  new Logger('OrdersExample').error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
