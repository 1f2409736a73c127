import { Injectable, OnModuleInit } from '@nestjs/common';
import { SSE_METADATA } from '@nestjs/common/constants';
import { ControllerMethods } from '../common/controller-methods';
import { SseLogger } from '../observability/sse-logger';
import { SSE_ROUTE_METADATA } from './sse-route-options';

/**
 * `@Sse` is also the name of Nest's own decorator, and `@Sse('ticks')` compiles with either
 * import: the wrong one gives a stream without heartbeats, ids, limits, resume or drain, and
 * nothing says so. (A topic route does not compile with Nest's: it takes no `topic`.) So each
 * route that carries Nest's marker and not this package's is named once at start-up; a team that
 * means it can keep it (it still works as Nest's).
 */
@Injectable()
export class NestSseRoutes implements OnModuleInit {
  constructor(
    private readonly controllers: ControllerMethods,
    private readonly logger: SseLogger,
  ) {}

  onModuleInit(): void {
    const routes = this.controllers.find(
      (method) =>
        Reflect.getMetadata(SSE_METADATA, method) === true &&
        Reflect.getMetadata(SSE_ROUTE_METADATA, method) === undefined,
    );
    for (const { type, name } of routes) {
      this.logger.report(
        'sse.nest-sse-route',
        `${type.name}.${name} uses @Sse from '@nestjs/common', not from 'nestjs-durable-sse': ` +
          'it gets no heartbeats, connection limits, resume or drain. Import Sse from ' +
          "'nestjs-durable-sse' (or keep Nest's if that is what you meant).",
        { key: `${type.name}.${name}` },
      );
    }
  }
}
