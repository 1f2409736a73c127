import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { DemoModule } from './demo.module';

async function main() {
  const app = await NestFactory.create(DemoModule);
  app.enableShutdownHooks();
  const port = Number(process.env.PORT ?? 3000);
  await app.listen(port);
  new Logger('Demo').log(`Open http://localhost:${port} (Ctrl+C to stop)`);
}

void main();
