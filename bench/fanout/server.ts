/**
 * Fan-out benchmark server (child process, driven over IPC by ./main). Modes:
 * - `durable`: this package's @Sse topic + SseHub (NestJS, Express);
 * - `durable-outbox`: the same stream, its events published through the outbox (PostgreSQL);
 * - `nest`: Nest's built-in @Sse with one shared Subject, the usual way to broadcast with it;
 * - `durable-fastify`, `nest-fastify`: the same two apps on Nest's Fastify adapter;
 * - `better-sse`: better-sse sessions in one channel on plain node:http, its usual setting;
 * - `bare`: plain node:http writing one pre-encoded chunk to every response — the physical limit;
 * - `bare-express`: the same loop as an Express 5 route, to tell Express's own cost per stream
 *   (it re-parents every request and response) from this package's.
 */
import { writeHeapSnapshot } from 'node:v8';
import 'reflect-metadata';
import { Controller, MessageEvent, Module, Sse as NestSse } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { AddressInfo } from 'node:net';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { Observable, Subject } from 'rxjs';
import * as http from 'node:http';
import express from 'express';
import { OutboxService, Sse, SseHub, SseModule } from '../../src';
import { toolRequire } from '../shared/tools';
import { registerTracing } from '../shared/tracing';

type Mode =
  | 'durable'
  | 'durable-outbox'
  | 'nest'
  | 'durable-fastify'
  | 'nest-fastify'
  | 'better-sse'
  | 'bare'
  | 'bare-express';
const mode = process.argv[2] as Mode;
const outbox = mode === 'durable-outbox';
// BENCH_OTEL=sampling-off: an OpenTelemetry SDK registered, its sampler saying no to everything.
if (process.env.BENCH_OTEL) registerTracing(process.env.BENCH_OTEL);
const fastify = mode.endsWith('-fastify');
const durable = mode.startsWith('durable');
const subject = new Subject<MessageEvent>();

@Controller()
class DurableController {
  @Sse('stream', { topic: 'bench' })
  stream() {}
}

/** `durable-outbox`: the events go through the outbox (one transaction per batch) and the relay. */
const outboxOptions = outbox
  ? {
      postgres: {
        connectionString: process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test',
        schema: `bench_fanout_${process.pid}`,
      },
    }
  : {};

@Controller()
class NestController {
  @NestSse('stream')
  stream(): Observable<MessageEvent> {
    return subject.asObservable();
  }
}

@Module({
  imports: [
    SseModule.forRoot({
      sse: {
        heartbeatMs: 3_600_000,
        maxConnections: 100_000,
        maxConnectionsPerClient: 100_000,
        maxBufferedBytes: 8 << 20,
      },
      ...outboxOptions,
    }),
  ],
  controllers: [durable ? DurableController : NestController],
})
class BenchModule {}

const now = () => performance.timeOrigin + performance.now();
const send = (message: unknown) => process.send!(message);

/** Starts the server of `mode`; returns its port, a publish function and a close function. */
async function start(): Promise<{
  port: number;
  publish: (seq: number) => void;
  /** Publishes a batch in one transaction (durable-outbox); the burst awaits it. */
  publishBatch?: (seqs: number[]) => Promise<void>;
  close: () => Promise<void>;
  /** Open TCP connections, as the HTTP server counts them. */
  connections: () => Promise<number>;
}> {
  const event = (seq: number) => ({ id: String(seq), data: { seq, t: now() } });
  if (durable || mode.startsWith('nest')) {
    const app = fastify
      ? await NestFactory.create(BenchModule, new FastifyAdapter(), { logger: ['error'] })
      : await NestFactory.create(BenchModule, { logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    const hub = durable ? app.get(SseHub) : undefined;
    const service = outbox ? app.get(OutboxService) : undefined;
    return {
      port: (app.getHttpServer().address() as AddressInfo).port,
      publish: (seq) => (hub ? hub.publish('bench', event(seq)) : subject.next(event(seq))),
      publishBatch: service
        ? async (seqs) => {
            await service.transaction((tx) =>
              service.publish(
                tx,
                seqs.map((seq) => ({ topic: 'bench', data: event(seq).data })),
              ),
            );
          }
        : undefined,
      close: async () => {
        await service?.transaction((tx) =>
          tx.query(`DROP SCHEMA ${outboxOptions.postgres!.schema} CASCADE`),
        );
        await app.close();
      },
      connections: () => countConnections(app.getHttpServer()),
    };
  }
  let onRequest: http.RequestListener;
  let publish: (seq: number) => void;
  if (mode === 'bare' || mode === 'bare-express') {
    const responses = new Set<http.ServerResponse>();
    const stream: http.RequestListener = (_request, response) => {
      response.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      response.write('retry: 3000\n\n');
      responses.add(response);
      response.on('close', () => responses.delete(response));
    };
    if (mode === 'bare') onRequest = stream;
    else {
      const app = express();
      app.get('/stream', stream);
      onRequest = app;
    }
    publish = (seq) => {
      const { id, data } = event(seq);
      const chunk = Buffer.from(`id: ${id}\ndata: ${JSON.stringify(data)}\n\n`);
      for (const response of responses) response.write(chunk);
    };
  } else {
    const { createSession, createChannel } = toolRequire('better-sse');
    const channel = createChannel();
    onRequest = async (request, response) => {
      channel.register(await createSession(request, response));
    };
    publish = (seq) => {
      const { id, data } = event(seq);
      channel.broadcast(data, 'message', { eventId: id });
    };
  }
  const server = http.createServer(onRequest);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const connections = () => countConnections(server);
  return {
    port: (server.address() as AddressInfo).port,
    publish,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
    connections,
  };
}

const countConnections = (server: http.Server) =>
  new Promise<number>((resolve, reject) =>
    server.getConnections((error, count) => (error ? reject(error) : resolve(count))),
  );

const loopDelay = monitorEventLoopDelay({ resolution: 10 });

async function main() {
  const { port, publish, publishBatch, close, connections } = await start();
  loopDelay.enable();

  process.on('message', async (message: { cmd: string; events?: number; batch?: number }) => {
    if (message.cmd === 'memory') {
      for (let i = 0; i < 3; i++) global.gc?.();
      const { rss, heapUsed } = process.memoryUsage();
      send({ cmd: 'memory', rss, heapUsed });
    } else if (message.cmd === 'burst') {
      const total = message.events!;
      const batch = message.batch!;
      const started = now();
      for (let seq = 0; seq < total;) {
        if (publishBatch) {
          const seqs: number[] = [];
          for (let i = 0; i < batch && seq < total; i++) seqs.push(seq++);
          await publishBatch(seqs);
          continue;
        }
        for (let i = 0; i < batch && seq < total; i++) publish(seq++);
        // Let sockets drain between batches, as a real publisher's I/O would.
        await new Promise((resolve) => setImmediate(resolve));
      }
      send({ cmd: 'burst', publishMs: now() - started });
    } else if (message.cmd === 'loop-delay') {
      // Event-loop delay over the whole burst, including the writes still draining after it.
      send({
        cmd: 'loop-delay',
        p50Ms: loopDelay.percentile(50) / 1e6,
        p99Ms: loopDelay.percentile(99) / 1e6,
        maxMs: loopDelay.max / 1e6,
      });
    } else if (message.cmd === 'cpu') {
      const { user, system } = process.cpuUsage();
      send({ cmd: 'cpu', micros: user + system });
    } else if (message.cmd === 'connections') {
      send({ cmd: 'connections', count: await connections() });
    } else if (message.cmd === 'snapshot') {
      // For memory investigations: a heap snapshot of the server holding its idle streams.
      for (let i = 0; i < 3; i++) global.gc?.();
      send({ cmd: 'snapshot', file: writeHeapSnapshot((message as { file?: string }).file) });
    } else if (message.cmd === 'exit') {
      await close();
      process.exit(0);
    }
  });
  send({ cmd: 'ready', port });
}

void main();
