/** Outbox benchmark server (child process): @Sse topic `bench` fed by the outbox relay. Also used by bench/resume. */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AddressInfo } from 'node:net';
import { OutboxRelay, Sse, SseModule } from '../../src';

const [databaseUrl, schema, replayLimit = '1000'] = process.argv.slice(2);

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
      outbox: { pollIntervalMs: 1_000, batchSize: 1_000 },
    }),
  ],
  controllers: [BenchController],
})
class BenchModule {}

async function main() {
  const app = await NestFactory.create(BenchModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  const relay = app.get(OutboxRelay);
  process.on('message', async (message: { cmd: string }) => {
    if (message.cmd === 'stats') process.send!({ cmd: 'stats', stats: relay.stats });
    if (message.cmd === 'exit') {
      await app.close();
      process.exit(0);
    }
  });
  process.send!({ cmd: 'ready', port: (app.getHttpServer().address() as AddressInfo).port });
}

void main();
