'use strict';
// An app in its own process, from the built package, running a long @SseJob(): the test
// SIGKILLs it mid-job, as an OOM kill or a lost node would, with no shutdown of any kind.
require('reflect-metadata');
const { Controller, Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { concat, interval, map, of } = require('rxjs');
const durable = require('../support/built-package').loadBuiltPackage();

/** A controller whose method `name` is a route made by `decorator` (decorators, in plain JS). */
function routeController(type, name, decorator) {
  const { prototype } = type;
  const descriptor = Object.getOwnPropertyDescriptor(prototype, name);
  Object.defineProperty(
    prototype,
    name,
    Reflect.decorate([decorator], prototype, name, descriptor),
  );
  Controller()(type);
}

class GenerateController {
  generate() {
    return interval(20).pipe(map((i) => ({ type: 'token', data: `t${i}` })));
  }
}
routeController(GenerateController, 'generate', durable.SseJob('generate'));

/** An endless AI SDK answer (UI message chunks), for the chat suite's runner-killed test. */
class ChatController {
  chat() {
    return concat(
      of({ type: 'start', messageId: 'm1' }, { type: 'text-start', id: 't' }),
      interval(20).pipe(map((i) => ({ type: 'text-delta', id: 't', delta: `w${i} ` }))),
    );
  }
}
routeController(ChatController, 'chat', durable.SseChat('api/chat'));

class AppModule {}
Module({
  imports: [
    durable.SseModule.forRoot({
      redis: { url: process.env.REDIS_URL, keyPrefix: process.env.KEY_PREFIX },
    }),
  ],
  controllers: [GenerateController, ChatController],
})(AppModule);

async function main() {
  const app = await NestFactory.create(AppModule, { logger: ['error'] });
  await app.listen(0, '127.0.0.1');
  process.send({ cmd: 'ready', port: app.getHttpServer().address().port });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
