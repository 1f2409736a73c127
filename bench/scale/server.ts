/** Scale benchmark instance (child process): @Sse topic `bench`, fed with the given fan-out. */
import 'reflect-metadata';
import { Controller, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AddressInfo } from 'node:net';
import { OutboxFanout, OutboxRelay, Sse, SseModule } from '../../src';

const [databaseUrl, schema, fanout, redisUrl, keyPrefix, migrate] = process.argv.slice(2);

@Controller()
class BenchController {
  @Sse('stream', { topic: 'bench' })
  stream() {}
}

@Module({
  imports: [
    SseModule.forRoot({
      sse: { heartbeatMs: 3_600_000, maxConnections: 100_000, maxConnectionsPerClient: 100_000 },
      postgres: { connectionString: databaseUrl, schema, pool: { max: 4 } },
      // The publisher is a plain pg process (a writer the module does not know): the trigger wakes.
      outbox: { fanout: fanout as OutboxFanout, migrate: migrate === 'migrate', wakeup: 'trigger' },
      ...(fanout === 'redis' ? { redis: { url: redisUrl, keyPrefix } } : {}),
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
    if (message.cmd === 'state')
      process.send!({
        cmd: 'state',
        leading: relay.leader?.leading ?? false,
        stream: relay.stream?.stats,
        relay: relay.stats,
      });
    if (message.cmd === 'exit') {
      await app.close();
      process.exit(0);
    }
  });
  process.send!({ cmd: 'ready', port: (app.getHttpServer().address() as AddressInfo).port });
}

void main();
