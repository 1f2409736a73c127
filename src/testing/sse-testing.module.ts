import type { DynamicModule } from '@nestjs/common';
import type { SseModuleExtras, SseModuleOptions } from '../config/sse-module-options';
import { SseModule } from '../sse.module';

/**
 * `SseModule` set up for a test of your app's code, with nothing outside the process: topic
 * streams fed by the in-process hub, idempotency on the in-memory store (allowed whatever
 * `NODE_ENV` says), heartbeats out of the way. Options given override these; give `postgres`
 * (and `redis`) to test against real servers instead.
 */
export class SseTestingModule {
  static forRoot(options: SseModuleOptions & SseModuleExtras = {}): DynamicModule {
    return SseModule.forRoot({
      ...options,
      sse: { heartbeatMs: 60_000, ...options.sse },
      idempotency: { allowMemoryStoreInProduction: true, ...options.idempotency },
    });
  }
}
