import { Inject, Injectable, ServiceUnavailableException } from '@nestjs/common';
import { HealthCheckService } from '@nestjs/terminus';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SseHealthIndicators } from './sse-health.indicators';

/**
 * Readiness as `/<health.path>` answers it (every dependency, Terminus JSON, 200 or 503), shared
 * and cached; the routes themselves are Nest routes (sse-routes.controller.ts).
 */
@Injectable()
export class SseReadiness {
  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly health: HealthCheckService,
    private readonly indicators: SseHealthIndicators,
  ) {}

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
}
