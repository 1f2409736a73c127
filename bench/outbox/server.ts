/** Outbox benchmark server (child process): @Sse topic `bench` fed by the outbox relay. Also used by bench/resume. */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AddressInfo } from 'node:net';
import { OutboxRelay, Sse, SseHub, SseModule } from '../../src';
import { SseBatch } from '../../src/sse/sse-connection';
import { now, summarize } from '../shared/sse-client';

const [databaseUrl, schema, replayLimit = '1000', replayCacheBytes] = process.argv.slice(2);

@Controller()
class BenchController {
  @Sse('stream', { topic: 'bench' })
  stream() {}
}

@Module({
  imports: [
    SseModule.forRoot({
      sse: {
        heartbeatMs: 3_600_000,
        maxConnections: 100_000,
        maxConnectionsPerClient: 100_000,
        maxBufferedBytes: 64 << 20,
        replayLimit: Number(replayLimit),
      },
      postgres: { connectionString: databaseUrl, schema, pool: { max: 4 } },
      outbox: {
        // bench -- outbox's publisher is a plain pg process: phases 1 and 2 are woken by the
        // trigger (bench/outbox/main.ts creates it once this server has migrated), phase 3 by
        // the publisher's NOTIFY.
        pollIntervalMs: 1_000,
        batchSize: 1_000,
        ...(replayCacheBytes === undefined ? {} : { replayCacheBytes: Number(replayCacheBytes) }),
      },
    }),
  ],
  controllers: [BenchController],
})
class BenchModule {}

async function main() {
  const app = await NestFactory.create(BenchModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const relay = app.get(OutboxRelay);
  const hub = app.get(SseHub);
  // Server-side probes on the bench topic: `relay` subscribes before any stream, so the hub calls
  // it first (when the relay hands an event over); `written` subscribes after the streams (on
  // command), so it runs once every socket of the batch was written. Both read the publish time
  // from the payload; together with the clients' receipt they split where the time goes.
  const probes = { relay: [] as number[], written: [] as number[] };
  const probe = (into: number[]) => ({
    deliver(batch: SseBatch) {
      const at = now();
      for (const match of batch.bytes.toString().matchAll(/"t":([\d.]+)/g))
        into.push(at - Number(match[1]));
    },
  });
  hub.subscribe('bench', probe(probes.relay));
  let unsubscribeWritten: (() => void) | undefined;
  process.on('message', async (message: { cmd: string }) => {
    if (message.cmd === 'stats') process.send!({ cmd: 'stats', stats: relay.stats });
    if (message.cmd === 'probe-start') {
      probes.relay.length = probes.written.length = 0;
      unsubscribeWritten ??= hub.subscribe('bench', probe(probes.written));
      process.send!({ cmd: 'probe-started' });
    }
    if (message.cmd === 'probe-stop') {
      unsubscribeWritten?.();
      unsubscribeWritten = undefined;
      process.send!({
        cmd: 'probe',
        txStartToRelayMs: summarize(probes.relay),
        txStartToAllWrittenMs: summarize(probes.written),
      });
    }
    if (message.cmd === 'exit') {
      await app.close();
      process.exit(0);
    }
  });
  process.send!({ cmd: 'ready', port: (app.getHttpServer().address() as AddressInfo).port });
}

void main();
