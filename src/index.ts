import 'reflect-metadata';

export { SseModule } from './sse.module';
export { SSE_MODULE_OPTIONS } from './config/tokens';
export type {
  SseModuleOptions,
  SseModuleOptionsFactory,
  PostgresOptions,
  PostgresPoolOptions,
  OutboxFanout,
  OutboxOptions,
  RedisOptions,
  IdempotencyOptions,
  IdempotencyFailMode,
  HealthOptions,
  MetricsOptions,
  ShutdownOptions,
  JobsOptions,
  SseModuleExtras,
  SseStreamOptions,
  SseRejectMode,
  ResolvedSseModuleOptions,
} from './config/sse-module-options';
export { SseConfigError, resolveSseModuleOptions } from './config/validate-options';
export type { SseConfigIssue } from './config/validate-options';

export { Sse } from './sse/sse.decorator';
export type { SseRouteOptions, SseTopics, SseRequest } from './sse/sse-route-options';
export { readLastEventId } from './sse/sse-route-options';
export { SseEventError } from './sse/sse-event';
export type { SseEvent } from './sse/sse-event';
export { SseHub } from './sse/sse-hub';
export { SseConnectionRegistry } from './sse/sse-connection-registry';
export { SSE_EVENT_SERIALIZER, JsonSseEventSerializer } from './sse/sse-event-serializer';
export type { SseEventSerializer } from './sse/sse-event-serializer';
export {
  SSE_CLIENT_KEY_RESOLVER,
  RemoteAddressClientKeyResolver,
} from './sse/sse-client-key-resolver';
export type { SseClientKeyResolver } from './sse/sse-client-key-resolver';

export { OutboxService } from './outbox/write/outbox.service';
export { OutboxPositionError } from './outbox/write/snapshot-position';
export type { OutboxEvent, OutboxQueryable, TransactionOf } from './outbox/write/outbox.service';
export { OutboxRelay } from './outbox/read/outbox-relay';
export type { OutboxLag } from './outbox/read/outbox-relay';
export type { OutboxResetReason } from './outbox/read/outbox-feed';
export { PostgresConnection, PostgresPoolExhaustedError } from './connections/postgres-connection';

export { Idempotent } from './idempotency/idempotent.decorator';
export type { IdempotentOptions, IdempotentRequest } from './idempotency/idempotent.options';
export { IdempotentReplay } from './idempotency/idempotency-replay';
export { IdempotencyService } from './idempotency/idempotency.service';
export type { IdempotencyOutcome } from './idempotency/idempotency.service';
export { IDEMPOTENCY_STORE, IdempotencyStoreError } from './idempotency/idempotency-store';
export type {
  IdempotencyStore,
  AcquireResult,
  StoredResponse,
} from './idempotency/idempotency-store';
export { RedisIdempotencyStore } from './idempotency/redis-idempotency-store';
export { MemoryIdempotencyStore } from './idempotency/memory-idempotency-store';
export {
  IDEMPOTENCY_FINGERPRINT_STRATEGY,
  Sha256FingerprintStrategy,
} from './idempotency/fingerprint';
export type { FingerprintStrategy, FingerprintInput } from './idempotency/fingerprint';
export {
  IDEMPOTENCY_SCOPE_RESOLVER,
  UserIdempotencyScopeResolver,
  IdempotencyScopeError,
} from './idempotency/idempotency-scope';
export type { IdempotencyScopeResolver } from './idempotency/idempotency-scope';

export { SseJob, SseJobSignal } from './jobs/sse-job.decorator';
export type { SseJobRouteOptions } from './jobs/sse-job.decorator';
export { SseJobs } from './jobs/sse-jobs';
export { SseChat } from './jobs/chat/sse-chat.decorator';
export { sseChatTurn, SseChatTurn } from './jobs/chat/chat-turn';
export type { SseChatFinish, SseChatTurnOptions } from './jobs/chat/chat-turn';
export type { SseJobErrorReason } from './jobs/job-problem';
export { ScopeJobOwnerResolver, SSE_JOB_OWNER_RESOLVER } from './jobs/job-owner';
export type { SseJobOwnerResolver } from './jobs/job-owner';

export { SSE_DIAGNOSTICS } from './observability/diagnostics';
export { SSE_TRACE_ATTRIBUTES } from './observability/tracing';
export { SSE_LOGGER, SSE_LOG_THROTTLE_MS } from './observability/sse-logger';
export { SSE_LOG_MESSAGES } from './observability/log-messages';
export type { SseLogMessageId } from './observability/log-messages';

export { SseHealthIndicators } from './health/sse-health.indicators';
export { SseMetrics } from './metrics/sse-metrics';
export type { SseMetricsRegistry } from './metrics/sse-metrics';
