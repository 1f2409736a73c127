import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { GenerateModule } from './generate.module';

async function main() {
  const app = await NestFactory.create(
    GenerateModule.forRoot({ redisUrl: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' }),
  );
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port);
  new Logger('Demo').log(`Open http://localhost:${port}, ask, reload mid-answer (Ctrl+C to stop)`);
}

void main();
