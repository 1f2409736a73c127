/**
 * `npm start`: the orders example on real PostgreSQL and Redis when they are there, on an
 * embedded PostgreSQL and the in-memory idempotency store when not (see backends.ts).
 */
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createOrdersApp } from './app';
import { resolveBackends } from './backends';

async function main() {
  const backends = await resolveBackends({
    embeddedDataDir: process.env.PGLITE_DATA_DIR ?? join(process.cwd(), '.tmp', 'orders-pglite'),
  });
  const platform = parsePlatform(process.env.PLATFORM);
  const { app, close } = await createOrdersApp(backends, {
    schema: process.env.ORDERS_SCHEMA,
    redisKeyPrefix: process.env.ORDERS_REDIS_PREFIX,
    platform,
    // Behind a proxy (docker/nginx.conf), the platform must trust X-Forwarded-For, or every client
    // has the proxy's address and the per-client stream limit counts them all as one.
    trustProxy: process.env.TRUST_PROXY ? parseTrustProxy(process.env.TRUST_PROXY) : undefined,
    fanout: parseFanout(process.env.OUTBOX_FANOUT),
  });
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port, process.env.HOST ?? '0.0.0.0');
  const logger = new Logger('OrdersExample');
  const { port: listening } = app.getHttpServer().address() as AddressInfo;
  logger.log(`Open http://localhost:${listening} (on ${platform}; Ctrl+C to stop)`);
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

/** PLATFORM=express (default) or fastify. */
function parsePlatform(value: string | undefined): 'express' | 'fastify' {
  if (value === undefined || value === '' || value === 'express') return 'express';
  if (value === 'fastify') return 'fastify';
  throw new Error(`PLATFORM must be express or fastify, not ${JSON.stringify(value)}`);
}

/** OUTBOX_FANOUT=postgres (default) or redis (one relay leader, a Redis Stream to every instance). */
function parseFanout(value: string | undefined): 'postgres' | 'redis' {
  if (value === undefined || value === '' || value === 'postgres') return 'postgres';
  if (value === 'redis') return 'redis';
  throw new Error(`OUTBOX_FANOUT must be postgres or redis, not ${JSON.stringify(value)}`);
}

/** The platform's trust-proxy setting: a hop count, true/false, or addresses/subnet names. */
function parseTrustProxy(value: string): number | boolean | string {
  if (/^\d+$/.test(value)) return Number(value);
  if (value === 'true' || value === 'false') return value === 'true';
  return value;
}

main().catch((error) => {
  new Logger('OrdersExample').error(error instanceof Error ? error.stack : error);
  process.exit(1);
});
