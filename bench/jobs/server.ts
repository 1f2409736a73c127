/**
 * Job-streams benchmark server (child process). Mode `job`: `@SseJob()` (every event logged in
 * Redis, resumable); `plain`: the same Observable from `@Sse({ method: 'POST' })`, no log — the
 * cost of durability is the difference.
 */
import 'reflect-metadata';
import { Body, Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AddressInfo } from 'node:net';
import { interval, map, take } from 'rxjs';
import { Sse, SseJob, SseModule } from '../../src';

const [mode, redisUrl, keyPrefix] = process.argv.slice(2);

interface Work {
  events: number;
  everyMs: number;
}

/** `events` tokens of ~20 bytes, `everyMs` apart (a model's pace). */
const tokens = (work: Work) =>
  interval(work.everyMs).pipe(
    take(work.events),
    map((i) => ({ type: 'token', data: `token-${String(i).padStart(6, '0')}-abcdef` })),
  );

@Controller()
class JobController {
  @SseJob('generate')
  generate(@Body() work: Work) {
    return tokens(work);
  }
}

@Controller()
class PlainController {
  @Sse('generate', { method: 'POST' })
  generate(@Body() work: Work) {
    return tokens(work);
  }
}

async function main() {
  @Module({
    imports: [
      SseModule.forRoot({
        sse: { maxConnections: 20_000, maxConnectionsPerClient: 20_000, heartbeatMs: 15_000 },
        redis: { url: redisUrl, keyPrefix },
        jobs: { maxConcurrent: 20_000, maxConcurrentPerClient: 20_000, retentionMs: 60_000 },
      }),
    ],
    controllers: [mode === 'job' ? JobController : PlainController],
  })
  class BenchModule {}
  const app = await NestFactory.create(BenchModule, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  process.on('message', async (message: { cmd: string }) => {
    if (message.cmd === 'cpu') process.send!({ cmd: 'cpu', usage: process.cpuUsage() });
    if (message.cmd === 'exit') {
      await app.close();
      process.exit(0);
    }
  });
  process.send!({ cmd: 'ready', port: (app.getHttpServer().address() as AddressInfo).port });
}

void main();
