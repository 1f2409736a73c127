/**
 * The server of the `streams` and `storm` benchmarks (child process, IPC). Modes:
 * - `bare`: node:http writing one pre-encoded chunk to every response, and a `:` comment to all
 *   every 15 s (one timer): the floor a stream server can reach;
 * - `bare-express`: the same as an Express 5 route: what Express itself costs per stream (it
 *   re-parents every request and response, and V8 then gives each its own hidden class);
 * - `durable` / `durable-fastify`: this package's `@Sse` topic fed by the hub, default heartbeat;
 * - `durable-outbox` / `durable-outbox-fastify`: the same fed by the outbox (PostgreSQL schema
 *   from BENCH_SCHEMA), for the storm.
 * Commands: `publish` { seq } (one event, `"t"` its time), `stats` { gc } → heap, RSS,
 * connections; `eld-start` / `eld` → event-loop delay over the window; `exit`. It exits when its
 * parent goes.
 */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import express from 'express';
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { writeHeapSnapshot } from 'node:v8';
import { OutboxRelay, OutboxService, Sse, SseHub, SseModule } from '../../src';

type Mode =
  | 'bare'
  | 'bare-express'
  | 'durable'
  | 'durable-fastify'
  | 'durable-outbox'
  | 'durable-outbox-fastify';
const mode = process.argv[2] as Mode;
const fastify = mode.endsWith('-fastify');
const fedByOutbox = mode.startsWith('durable-outbox');
const now = () => performance.timeOrigin + performance.now();
const send = (message: object) => process.send?.(message);
process.on('disconnect', () => process.exit(0));

const eventOf = (seq: number) => ({ seq, t: now() });
const schema = process.env.BENCH_SCHEMA;

@Controller()
class StreamController {
  @Sse('stream', { topic: 'bench' })
  stream() {}
}

@Module({
  imports: [
    SseModule.forRoot({
      sse: {
        maxConnections: 100_000,
        maxConnectionsPerClient: 100_000,
        ...(process.env.BENCH_SSE ? JSON.parse(process.env.BENCH_SSE) : {}),
      },
      ...(fedByOutbox
        ? {
            postgres: {
              connectionString:
                process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
              schema,
            },
            outbox: { migrate: process.env.BENCH_MIGRATE !== '0' },
          }
        : {}),
      health: { path: 'health' },
      shutdown: { drainMs: 0 },
    }),
  ],
  controllers: [StreamController],
})
class BenchModule {}

interface Server {
  port: number;
  publish(seq: number): Promise<void> | void;
  server: http.Server;
  stats?: () => Record<string, number>;
}

async function start(): Promise<Server> {
  if (mode === 'bare' || mode === 'bare-express') {
    const responses = new Set<http.ServerResponse>();
    const app = express();
    const handler = (request: http.IncomingMessage, response: http.ServerResponse) => {
      if (request.url !== '/stream') return response.writeHead(404).end();
      response.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      response.write('retry: 3000\n\n');
      responses.add(response);
      response.on('close', () => responses.delete(response));
    };
    app.get('/stream', handler);
    const server = http.createServer(mode === 'bare' ? handler : app);
    // What a bare server does to keep proxies from closing idle streams: one timer for all.
    const heartbeat = Buffer.from(':\n\n');
    setInterval(() => {
      for (const response of responses) response.write(heartbeat);
    }, 15_000).unref();
    server.maxConnections = 100_000;
    const backlog = Number(process.env.BENCH_BACKLOG ?? 65_535);
    await new Promise<void>((resolve) =>
      server.listen({ port: 0, host: '127.0.0.1', backlog }, resolve),
    );
    return {
      server,
      port: (server.address() as AddressInfo).port,
      publish: (seq) => {
        const chunk = Buffer.from(`id: ${seq}\ndata: ${JSON.stringify(eventOf(seq))}\n\n`);
        for (const response of responses) response.write(chunk);
      },
    };
  }
  const app = fastify
    ? await NestFactory.create(BenchModule, new FastifyAdapter(), { logger: ['error'] })
    : await NestFactory.create(BenchModule, { logger: ['error'] });
  const backlog = Number(process.env.BENCH_BACKLOG ?? 65_535);
  if (fastify) {
    await (app as NestFastifyApplication).listen({ port: 0, host: '127.0.0.1', backlog });
  } else {
    // Node's default accept backlog is 511: a storm of thousands of reconnects overflows it, the
    // kernel drops their SYNs, and each comes back only after TCP's retransmission backoff (1, 3,
    // 7, 15 s…). BENCH_BACKLOG=511 shows that; the kernel caps it at net.core.somaxconn.
    await app.init();
    await new Promise<void>((resolve) =>
      app.getHttpServer().listen({ port: 0, host: '127.0.0.1', backlog }, resolve),
    );
  }
  const hub = app.get(SseHub);
  const outbox = fedByOutbox ? app.get(OutboxService) : undefined;
  const relay = app.get(OutboxRelay);
  return {
    server: app.getHttpServer(),
    port: (app.getHttpServer().address() as AddressInfo).port,
    publish: (seq) =>
      outbox
        ? outbox
            .transaction((tx) => outbox.publish(tx, { topic: 'bench', data: eventOf(seq) }))
            .then(() => undefined)
        : void hub.publish('bench', { id: String(seq), data: eventOf(seq) }),
    stats: () => ({ ...relay.stats }),
  };
}

async function main() {
  const server = await start();
  const delay = monitorEventLoopDelay({ resolution: 10 });
  process.on('message', async (message: { cmd: string; seq?: number; gc?: boolean }) => {
    if (message.cmd === 'publish') {
      await server.publish(message.seq!);
      send({ cmd: 'published' });
    }
    if (message.cmd === 'stats') {
      if (message.gc) for (let i = 0; i < 3; i++) global.gc?.();
      const memory = process.memoryUsage();
      const connections = await new Promise<number>((resolve) =>
        server.server.getConnections((_e, n) => resolve(n)),
      );
      send({
        cmd: 'stats',
        heap: memory.heapUsed,
        rss: memory.rss,
        connections,
        relay: server.stats?.(),
      });
    }
    if (message.cmd === 'eld-start') {
      delay.reset();
      delay.enable();
      send({ cmd: 'eld-started' });
    }
    if (message.cmd === 'eld') {
      delay.disable();
      // Beyond the 10 ms the monitor itself waits between samples.
      const ms = (ns: number) => Math.max(0, Math.round((ns / 1e6 - 10) * 10) / 10);
      send({
        cmd: 'eld',
        p50: ms(delay.percentile(50)),
        p99: ms(delay.percentile(99)),
        max: ms(delay.max),
      });
    }
    if (message.cmd === 'snapshot') {
      global.gc?.();
      send({ cmd: 'snapshot', file: writeHeapSnapshot() });
    }
    if (message.cmd === 'exit') process.exit(0);
  });
  send({ cmd: 'ready', port: server.port, pid: process.pid });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
