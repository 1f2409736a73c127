import { Controller, Inject, Injectable, RequestMethod, Res, Type } from '@nestjs/common';
import { METHOD_METADATA, PATH_METADATA } from '@nestjs/common/constants';
import { HttpAdapterHost } from '@nestjs/core';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import { SseMetrics } from '../metrics/sse-metrics';
import { SseReadiness } from './sse-readiness';

/** The controller class of one `SseModule.forRoot*()` call (see {@link createSseRoutesController}). */
export const SSE_ROUTES_CONTROLLER = Symbol('SSE_ROUTES_CONTROLLER');

interface SseRoutesHandlers {
  readiness(response: unknown): Promise<void>;
  liveness(response: unknown): void;
  metrics(response: unknown): Promise<void>;
}

/**
 * `/health`, `/health/live` and `/metrics` as Nest routes, so the app's global prefix, versioning,
 * global guards, interceptors and filters apply as to its own routes. The paths come from
 * options, which `forRootAsync` only knows once its factory ran: each `forRoot*()` call gets a
 * class of its own, and {@link SseRoutes} gives its handlers their paths (or none: no route)
 * before Nest registers routes at `app.init()`. Handlers write through `@Res()`, so interceptors
 * that reshape return values (envelopes, serializers) leave the Terminus JSON and the Prometheus
 * text as they are.
 */
export function createSseRoutesController(): Type<SseRoutesHandlers> {
  @Controller()
  class SseRoutesController implements SseRoutesHandlers {
    constructor(
      private readonly health: SseReadiness,
      private readonly metricsService: SseMetrics,
      private readonly adapterHost: HttpAdapterHost,
    ) {}

    async readiness(@Res() response: unknown): Promise<void> {
      const [status, body] = await this.health.readiness();
      this.reply(response, status, body, 'application/json; charset=utf-8');
    }

    liveness(@Res() response: unknown): void {
      this.reply(response, 200, { status: 'ok', info: {}, error: {}, details: {} });
    }

    async metrics(@Res() response: unknown): Promise<void> {
      const registry = this.metricsService.registry!;
      this.reply(response, 200, await registry.metrics(), registry.contentType);
    }

    private reply(response: unknown, status: number, body: unknown, type?: string): void {
      const adapter = this.adapterHost.httpAdapter;
      adapter.setHeader(response, 'Cache-Control', 'no-store');
      if (type) adapter.setHeader(response, 'Content-Type', type);
      adapter.reply(response, body, status);
    }
  }
  return SseRoutesController;
}

/** Gives the routes controller of this module its paths from the resolved options. */
@Injectable()
export class SseRoutes {
  constructor(
    @Inject(SSE_MODULE_OPTIONS) options: ResolvedSseModuleOptions,
    @Inject(SSE_ROUTES_CONTROLLER) controller: Type<SseRoutesHandlers>,
  ) {
    const { prototype } = controller;
    const route = (handler: (...args: never[]) => unknown, path: string) => {
      Reflect.defineMetadata(PATH_METADATA, path, handler);
      Reflect.defineMetadata(METHOD_METADATA, RequestMethod.GET, handler);
    };
    const health = options.health.path;
    if (health !== false) {
      route(prototype.liveness, `${health}/live`);
      route(prototype.readiness, health);
    }
    if (options.metrics.path !== false) route(prototype.metrics, options.metrics.path);
  }
}
