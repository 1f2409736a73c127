/**
 * Idempotency benchmark server (child process). Mode `plain`: the route alone; `durable`: with
 * this package's @Idempotent() on Redis; `competitor`: with @node-idempotency/nestjs on Redis.
 * On Nest's Express adapter, or its Fastify adapter when the fourth argument says `fastify`.
 */
import 'reflect-metadata';
import { Body, Controller, DynamicModule, Module, Post } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { AddressInfo } from 'node:net';
import { Idempotent, SseModule } from '../../src';
import { toolRequire } from '../shared/tools';

const [mode, redisUrl, keyPrefix, platform] = process.argv.slice(2);

let next = 0;
const handle = (body: unknown) => ({ id: ++next, status: 'created', order: body });

function routeFor(): { controller: new () => unknown; imports: DynamicModule[] } {
  if (mode === 'plain') {
    @Controller()
    class Plain {
      @Post('orders')
      create(@Body() body: unknown) {
        return handle(body);
      }
    }
    return { controller: Plain, imports: [] };
  }
  if (mode === 'durable') {
    @Controller()
    class Durable {
      @Post('orders')
      @Idempotent()
      create(@Body() body: unknown) {
        return handle(body);
      }
    }
    return {
      controller: Durable,
      imports: [SseModule.forRoot({ redis: { url: redisUrl, keyPrefix } })],
    };
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
