/**
 * Idempotency benchmark server (child process). Mode `plain`: the route alone; `durable`: with
 * this package's @Idempotent() on Redis; `durable-no-row`: the same, its insert kept out of the
 * exactly-once record (what that record costs); `competitor`: with @node-idempotency/nestjs on
 * Redis. Route `constant` returns a constant-sized object; route `insert` first inserts an order
 * in a PostgreSQL transaction (`outbox.transaction()`). On Nest's Express adapter, or its Fastify
 * adapter when asked.
 */
import 'reflect-metadata';
import { Body, Controller, DynamicModule, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { AddressInfo } from 'node:net';
import { Idempotent, OutboxService, SseModule, SseModuleOptions } from '../../src';
import { idempotentEffects } from '../../src/idempotency/idempotent-effects';
import { toolRequire } from '../shared/tools';

const [mode, redisUrl, keyPrefix, platform, route, databaseUrl, schema] = process.argv.slice(2);
const ORDERS = `"${schema}".bench_orders`;

let next = 0;
let outbox: OutboxService | undefined;

/** The route's work: a constant, or one order inserted in a transaction. */
async function handle(body: unknown) {
  if (route !== 'insert') return { id: ++next, status: 'created', order: body };
  const insert = () =>
    outbox!.transaction(async (tx) => {
      const { rows } = await tx.query(`INSERT INTO ${ORDERS} (body) VALUES ($1) RETURNING id`, [
        JSON.stringify(body),
      ]);
      return { id: rows[0].id as string, status: 'created', order: body };
    });
  // durable-no-row: the transaction runs outside the request's exactly-once context.
  return mode === 'durable-no-row' ? idempotentEffects.exit(insert) : insert();
}

/** The module where the route needs it: Redis for @Idempotent(), PostgreSQL for the insert. */
function sseModule(): DynamicModule[] {
  const options: SseModuleOptions = {};
  if (mode.startsWith('durable')) options.redis = { url: redisUrl, keyPrefix };
  if (route === 'insert') {
    options.postgres = { connectionString: databaseUrl, schema, pool: { max: 10 } };
    options.outbox = { pollIntervalMs: 60_000 };
  }
  return Object.keys(options).length > 0 ? [SseModule.forRoot(options)] : [];
}

function routeFor(): { controller: new () => unknown; imports: DynamicModule[] } {
  if (mode === 'plain') {
    @Controller()
    class Plain {
      @Post('orders')
      create(@Body() body: unknown) {
        return handle(body);
      }
    }
    return { controller: Plain, imports: sseModule() };
  }
  if (mode.startsWith('durable')) {
    @Controller()
    class Durable {
      @Post('orders')
      @Idempotent()
      create(@Body() body: unknown) {
        return handle(body);
      }
    }
    return { controller: Durable, imports: sseModule() };
  }
  const competitor = toolRequire('@node-idempotency/nestjs');
  @Controller()
  class Competitor {
    @Post('orders')
    @competitor.Idempotent()
    create(@Body() body: unknown) {
      return handle(body);
    }
  }
  return {
    controller: Competitor,
    imports: [
      ...sseModule(),
      competitor.NodeIdempotencyModule.forRootAsync({
        storage: { adapter: 'redis', options: { url: redisUrl } },
        cacheTTLMS: 86_400_000,
      }),
    ],
  };
}

async function main() {
  const { controller, imports } = routeFor();
  @Module({ imports, controllers: [controller] })
  class BenchModule {}
  const app =
    platform === 'fastify'
      ? await NestFactory.create(BenchModule, new FastifyAdapter(), { logger: ['error'] })
      : await NestFactory.create(BenchModule, { logger: ['error'] });
  if (route === 'insert') outbox = app.get(OutboxService);
  await app.listen(0, '127.0.0.1');
  process.on('message', async (message: { cmd: string }) => {
    // CPU time (user + system) this process has used: the load generator samples it around a run.
    if (message.cmd === 'cpu') process.send!({ cmd: 'cpu', usage: process.cpuUsage() });
    if (message.cmd === 'exit') {
      await app.close();
      process.exit(0);
    }
  });
  process.send!({ cmd: 'ready', port: (app.getHttpServer().address() as AddressInfo).port });
}

void main();
