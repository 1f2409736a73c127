/**
 * Job-streams benchmark server (child process). Mode `job`: `@SseJob()` (every event logged in
 * Redis, resumable); `plain`: the same Observable from `@Sse({ method: 'POST' })`, no log — the
 * cost of durability is the difference. With the AI SDK's framing: `ai-chat`, `@SseChat()`
 * (UI message chunks, logged, resumable by chat); `ai-plain`, the same chunks piped by the `ai`
 * package itself (`pipeUIMessageStreamToResponse`, what `toUIMessageStreamResponse()` does on
 * Node's response), no log.
 */
import 'reflect-metadata';
import { Body, Controller, Module, Post, Res } from '@nestjs/common';
import { pipeUIMessageStreamToResponse, type UIMessageChunk } from 'ai';
import type { ServerResponse } from 'node:http';
import { NestFactory } from '@nestjs/core';
import { AddressInfo } from 'node:net';
import { concat, interval, map, Observable, of, take } from 'rxjs';
import { Sse, SseChat, SseJob, SseModule } from '../../src';

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

/** The same tokens as an AI SDK answer: start, text-start, one text-delta each, text-end, finish. */
const chunks = (work: Work): Observable<UIMessageChunk> =>
  concat(
    of<UIMessageChunk[]>({ type: 'start' }, { type: 'text-start', id: 't' }),
    tokens(work).pipe(
      map((token): UIMessageChunk => ({ type: 'text-delta', id: 't', delta: token.data })),
    ),
    of<UIMessageChunk[]>({ type: 'text-end', id: 't' }, { type: 'finish' }),
  );

@Controller()
class ChatController {
  @SseChat('generate')
  generate(@Body() work: Work) {
    return chunks(work);
  }
}

@Controller()
class PlainChatController {
  @Post('generate')
  generate(@Body() work: Work, @Res() response: ServerResponse) {
    const source = chunks(work);
    const stream = new ReadableStream<UIMessageChunk>({
      start(controller) {
        source.subscribe({
          next: (chunk) => controller.enqueue(chunk),
          complete: () => controller.close(),
          error: (error) => controller.error(error),
        });
      },
    });
    pipeUIMessageStreamToResponse({ response, stream });
  }
}

const CONTROLLERS = {
  job: () => JobController,
  plain: () => PlainController,
  'ai-chat': () => ChatController,
  'ai-plain': () => PlainChatController,
} as const;

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
    controllers: [CONTROLLERS[mode as keyof typeof CONTROLLERS]()],
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
