import { SseLogger } from '../observability/sse-logger';
import { Inject, Injectable } from '@nestjs/common';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { IDEMPOTENCY_FINGERPRINT_STRATEGY, FingerprintStrategy } from './fingerprint';
import { IDEMPOTENCY_SCOPE_RESOLVER, IdempotencyScopeResolver } from './idempotency-scope';
import { IDEMPOTENCY_STORE, IdempotencyStore } from './idempotency-store';
import { MemoryIdempotencyStore } from './memory-idempotency-store';
import { SSE_DIAGNOSTICS } from '../observability/diagnostics';
import { annotateActive, SSE_TRACE_ATTRIBUTES } from '../observability/tracing';

export type IdempotencyOutcome = 'first' | 'replay' | 'conflict' | 'mismatch' | 'error' | 'bypass';

/**
 * Everything the interceptor needs, in one module-internal service: the interceptor is
 * instantiated in each controller's module, and must not pick up user providers declared there.
 */
@Injectable()
export class IdempotencyService {
  readonly stats: Record<IdempotencyOutcome, number> = {
    first: 0,
    replay: 0,
    conflict: 0,
    mismatch: 0,
    error: 0,
    bypass: 0,
  };

  constructor(
    @Inject(SSE_MODULE_OPTIONS) readonly options: ResolvedSseModuleOptions,
    @Inject(IDEMPOTENCY_STORE) readonly store: IdempotencyStore,
    @Inject(IDEMPOTENCY_FINGERPRINT_STRATEGY) readonly fingerprints: FingerprintStrategy,
    @Inject(IDEMPOTENCY_SCOPE_RESOLVER) readonly scopes: IdempotencyScopeResolver,
    readonly logger: SseLogger,
  ) {}

  count(outcome: IdempotencyOutcome, route?: string): void {
    this.stats[outcome]++;
    // Inline rather than diagnose(): this runs for every idempotent request.
    const channel = SSE_DIAGNOSTICS.idempotency;
    if (channel.hasSubscribers) channel.publish({ outcome, route });
    annotateActive({ [SSE_TRACE_ATTRIBUTES.idempotencyOutcome]: outcome });
  }

  /**
   * Fails bootstrap when idempotent routes would run on the in-memory store in production: each
   * instance would keep its own records and retries hitting another instance would run twice.
   */
  assertUsable(): void {
    if (
      this.store instanceof MemoryIdempotencyStore &&
      process.env.NODE_ENV === 'production' &&
      !this.options.idempotency.allowMemoryStoreInProduction
    ) {
      throw new Error(
        'nestjs-durable-sse: @Idempotent() routes would use the in-memory store in production. ' +
          'Configure `redis` in SseModule.forRoot(), or set idempotency.allowMemoryStoreInProduction ' +
          'for a single-process deployment.',
      );
    }
    if (this.store instanceof MemoryIdempotencyStore && !this.options.redis) {
      // Outside production it runs, but a second replica in staging would quietly lose it.
      this.logger.report(
        'idempotency.memory-store',
        '@Idempotent() routes keep their records in this process (no `redis` option): ' +
          'processes and replicas do not share them, and a retry that reaches another one ' +
          'runs again. Set redis.url for more than one process.',
      );
    }
  }
}
