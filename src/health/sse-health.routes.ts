import { Inject, Injectable, OnModuleInit, ServiceUnavailableException } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { HealthCheckService } from '@nestjs/terminus';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SseHealthIndicators } from './sse-health.indicators';

/**
 * Serves `GET /<health.path>` (readiness: every dependency, Terminus JSON, 200 or 503) and
 * `GET /<health.path>/live` (liveness: the process answers; no dependency is checked). Mounted on
 * the HTTP adapter directly, because the path comes from options that may only be known at
 * runtime (`forRootAsync`); the app's global prefix does not apply.
 */
@Injectable()
export class SseHealthRoutes implements OnModuleInit {
  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly adapterHost: HttpAdapterHost,
    private readonly health: HealthCheckService,
    private readonly indicators: SseHealthIndicators,
  ) {}

  onModuleInit(): void {
    const adapter = this.adapterHost.httpAdapter;
    const path = this.options.health.path;
    if (!adapter || path === false) return;
    adapter.get(`/${path}/live`, (_request: unknown, response: unknown) =>
      this.reply(response, 200, { status: 'ok', info: {}, error: {}, details: {} }),
    );
    adapter.get(`/${path}`, async (_request: unknown, response: unknown) => {
      const [status, body] = await this.readiness();
      this.reply(response, status, body);
    });
  }

  /**
   * Runs every readiness indicator: `[200, result]` or `[503, result]`. Load balancers poll
   * every instance, often several of them at once: concurrent checks share one run, and an answer
   * is reused for `health.cacheMs`, so the database sees one check per instance per period.
   * Draining and shutdown are answered at once, never from the cache.
   */
  readiness(): Promise<[number, unknown]> {
    if (this.indicators.stopping) return this.check();
    const { cacheMs } = this.options.health;
    if (this.cached && Date.now() - this.cached.at < cacheMs) return this.cached.answer;
    const answer = this.check();
    this.cached = { at: Date.now(), answer };
    // A failed run is not reused beyond the requests that shared it.
    answer.catch(() => (this.cached = undefined));
    return answer;
  }

  private cached?: { at: number; answer: Promise<[number, unknown]> };

  private async check(): Promise<[number, unknown]> {
    try {
      return [200, await this.health.check(this.indicators.readiness())];
    } catch (error) {
      if (error instanceof ServiceUnavailableException) return [503, error.getResponse()];
      throw error;
    }
  }

  private reply(response: unknown, status: number, body: unknown): void {
    const adapter = this.adapterHost.httpAdapter;
    adapter.setHeader(response, 'Cache-Control', 'no-store');
    adapter.reply(response, body, status);
  }
}
