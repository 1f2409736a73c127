import { DynamicModule, Logger, MiddlewareConsumer, Module, NestModule } from '@nestjs/common';
import { SSE_LOGGER, SseLogger } from './observability/sse-logger';
import { TerminusModule } from '@nestjs/terminus';
import { SseHealthIndicators } from './health/sse-health.indicators';
import { SseReadiness } from './health/sse-readiness';
import { SseMetrics } from './metrics/sse-metrics';
import {
  ConfigurableSseModule,
  SSE_MODULE_ASYNC_OPTIONS_TYPE,
  SSE_MODULE_OPTIONS_TYPE,
  SSE_RAW_OPTIONS,
} from './config/module-definition';
import {
  createSseRoutesController,
  SSE_ROUTES_CONTROLLER,
  SseRoutes,
} from './health/sse-routes.controller';
import { SseRouteClashes } from './health/route-clash';
import { SSE_MODULE_OPTIONS } from './config/tokens';
import { resolveSseModuleOptions } from './config/validate-options';
import type { SseModuleOptions } from './config/sse-module-options';
import {
  RemoteAddressClientKeyResolver,
  SSE_CLIENT_KEY_RESOLVER,
} from './sse/sse-client-key-resolver';
import { SseConnectionRegistry } from './sse/sse-connection-registry';
import { JsonSseEventSerializer, SSE_EVENT_SERIALIZER } from './sse/sse-event-serializer';
import { SseHub } from './sse/sse-hub';
import { HubFeed, SSE_FEED } from './sse/sse-feed';
import { SseInterceptor } from './sse/sse.interceptor';
import { NestSseRoutes } from './sse/nest-sse-routes';
import { SseStreamer } from './sse/sse-streamer';
import { OutboxFeed } from './outbox/read/outbox-feed';
import { OutboxRelay } from './outbox/read/outbox-relay';
import { OutboxService } from './outbox/write/outbox.service';
import { OutboxStore } from './outbox/store/outbox-store';
import { OutboxWakeup } from './outbox/write/outbox-wakeup';
import { OutboxRetention } from './outbox/store/outbox-retention';
import { PostgresConnection } from './connections/postgres-connection';
import { SseShutdown } from './lifecycle/sse-shutdown';
import { SseJobs } from './jobs/sse-jobs';
import { SseJobInterceptor } from './jobs/sse-job.interceptor';
import { SseChatInterceptor } from './jobs/chat/sse-chat.interceptor';
import {
  IDEMPOTENCY_FINGERPRINT_STRATEGY,
  Sha256FingerprintStrategy,
} from './idempotency/fingerprint';
import {
  IDEMPOTENCY_SCOPE_RESOLVER,
  UserIdempotencyScopeResolver,
} from './idempotency/idempotency-scope';
import { IDEMPOTENCY_STORE } from './idempotency/idempotency-store';
import { IdempotencyService } from './idempotency/idempotency.service';
import { IdempotencyExecutor } from './idempotency/idempotency-executor';
import { IdempotentRoutes } from './idempotency/idempotent-routes';
import { ControllerMethods } from './common/controller-methods';
import { ScopeJobOwnerResolver, SSE_JOB_OWNER_RESOLVER } from './jobs/job-owner';
import { DiscoveryModule, ModulesContainer } from '@nestjs/core';
import { assertOneSseModule } from './config/one-module';
import { HttpPlatformHost } from './platform/http-platform.host';
import { MemoryIdempotencyStore } from './idempotency/memory-idempotency-store';
import { RedisConnection } from './connections/redis-connection';
import { RedisIdempotencyStore } from './idempotency/redis-idempotency-store';
import type { ResolvedSseModuleOptions } from './config/sse-module-options';

/**
 * `SseModule.forRoot(options)` / `SseModule.forRootAsync({ useFactory, inject, imports })`.
 * Options are validated when the module is instantiated, so a bad config fails bootstrap.
 */
@Module({
  // Terminus' own logging of failed checks is off: /health answers with the details.
  imports: [TerminusModule.forRoot({ logger: false }), DiscoveryModule],
  providers: [
    {
      provide: SSE_MODULE_OPTIONS,
      useFactory: (raw: SseModuleOptions) => resolveSseModuleOptions(raw),
      inject: [SSE_RAW_OPTIONS],
    },
    { provide: SSE_EVENT_SERIALIZER, useClass: JsonSseEventSerializer },
    { provide: SSE_CLIENT_KEY_RESOLVER, useClass: RemoteAddressClientKeyResolver },
    { provide: SSE_LOGGER, useFactory: () => new Logger() },
    SseLogger,
    HttpPlatformHost,
    SseConnectionRegistry,
    SseHub,
    SseStreamer,
    SseInterceptor,
    NestSseRoutes,
    PostgresConnection,
    OutboxStore,
    OutboxWakeup,
    OutboxService,
    OutboxRelay,
    OutboxRetention,
    HubFeed,
    OutboxFeed,
    {
      // Topic streams follow the outbox when PostgreSQL is configured, else the hub alone.
      provide: SSE_FEED,
      useFactory: (outbox: OutboxFeed, hub: HubFeed) => (outbox.enabled ? outbox : hub),
      inject: [OutboxFeed, HubFeed],
    },
    RedisConnection,
    {
      provide: IDEMPOTENCY_STORE,
      useFactory: (options: ResolvedSseModuleOptions, redis: RedisConnection) =>
        redis.client
          ? new RedisIdempotencyStore(redis.client, options.redis!.commandTimeoutMs)
          : new MemoryIdempotencyStore(),
      inject: [SSE_MODULE_OPTIONS, RedisConnection],
    },
    { provide: IDEMPOTENCY_FINGERPRINT_STRATEGY, useClass: Sha256FingerprintStrategy },
    { provide: IDEMPOTENCY_SCOPE_RESOLVER, useClass: UserIdempotencyScopeResolver },
    { provide: SSE_JOB_OWNER_RESOLVER, useClass: ScopeJobOwnerResolver },
    IdempotencyService,
    ControllerMethods,
    IdempotentRoutes,
    IdempotencyExecutor,
    SseHealthIndicators,
    SseReadiness,
    SseMetrics,
    SseShutdown,
    SseJobs,
    SseJobInterceptor,
    SseChatInterceptor,
  ],
  exports: [
    SseMetrics,
    SseHealthIndicators,
    RedisConnection,
    IDEMPOTENCY_STORE,
    IDEMPOTENCY_FINGERPRINT_STRATEGY,
    IDEMPOTENCY_SCOPE_RESOLVER,
    SSE_JOB_OWNER_RESOLVER,
    IdempotencyService,
    OutboxService,
    OutboxRelay,
    PostgresConnection,
    SSE_MODULE_OPTIONS,
    SSE_EVENT_SERIALIZER,
    SSE_CLIENT_KEY_RESOLVER,
    SSE_LOGGER,
    SseLogger,
    SseConnectionRegistry,
    SseHub,
    SseStreamer,
    SseInterceptor,
    SseJobs,
    SseJobInterceptor,
    SseChatInterceptor,
    // For the pipe and the filter @Idempotent() puts on routes: Nest creates them in the module
    // of each controller, and resolves their dependencies there.
    IdempotencyExecutor,
    HttpPlatformHost,
  ],
})
export class SseModule extends ConfigurableSseModule implements NestModule {
  constructor(
    private readonly idempotency: IdempotencyExecutor,
    private readonly routeClashes: SseRouteClashes,
    private readonly modules: ModulesContainer,
  ) {
    super();
  }

  static override forRoot(options: typeof SSE_MODULE_OPTIONS_TYPE = {}): DynamicModule {
    return withRoutes(super.forRoot(options));
  }

  static override forRootAsync(options: typeof SSE_MODULE_ASYNC_OPTIONS_TYPE): DynamicModule {
    return withRoutes(super.forRootAsync(options));
  }

  /** Runs before Nest builds this application's routes, so it can still ready theirs. */
  configure(_consumer: MiddlewareConsumer): void {
    assertOneSseModule(this.modules, SseModule);
    this.idempotency.prepareRoutes();
    this.routeClashes.watchRegistrations();
  }
}

/** Adds this call's own routes controller (its paths are options: see SseRoutes). */
function withRoutes(module: DynamicModule): DynamicModule {
  const controller = createSseRoutesController();
  return {
    ...module,
    controllers: [...(module.controllers ?? []), controller],
    providers: [
      ...(module.providers ?? []),
      { provide: SSE_ROUTES_CONTROLLER, useValue: controller },
      SseRoutes,
      SseRouteClashes,
    ],
  };
}
