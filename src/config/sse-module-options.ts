import type { Provider } from '@nestjs/common';
import { defaultsOf, OPTION_DEFINITIONS, OptionsOf, ResolvedOptionsOf } from './option-definitions';

// The option types and defaults, derived from option-definitions.ts (where each option's rule,
// default and meaning are written, once).

type Definitions = typeof OPTION_DEFINITIONS;
type Group<K extends keyof Definitions> = Definitions[K]['group'];
type PoolGroup = Group<'postgres'>['pool']['group'];

/** Options of `SseModule.forRoot()` / the factory of `forRootAsync()`. */
export type SseModuleOptions = OptionsOf<Definitions>;
export type SseStreamOptions = OptionsOf<Group<'sse'>>;
export type PostgresOptions = OptionsOf<Group<'postgres'>>;
export type PostgresPoolOptions = OptionsOf<PoolGroup>;
export type OutboxOptions = OptionsOf<Group<'outbox'>>;
export type RedisOptions = OptionsOf<Group<'redis'>>;
export type IdempotencyOptions = OptionsOf<Group<'idempotency'>>;
export type HealthOptions = OptionsOf<Group<'health'>>;
export type MetricsOptions = OptionsOf<Group<'metrics'>>;
export type ShutdownOptions = OptionsOf<Group<'shutdown'>>;
/** Resumable job streams (`@SseJob()`, docs/jobs.md); they need `redis`. */
export type JobsOptions = OptionsOf<Group<'jobs'>>;

/** How a stream that cannot be admitted (instance full, client over its limit, shutting down) is refused. */
export type SseRejectMode = NonNullable<SseStreamOptions['rejectMode']>;
export type OutboxFanout = NonNullable<OutboxOptions['fanout']>;
export type IdempotencyFailMode = NonNullable<IdempotencyOptions['failMode']>;

/** Extras accepted next to the options by `forRoot` / `forRootAsync`. */
export interface SseModuleExtras {
  /** Register the module globally so `@Sse` works in every module. Default `true`. */
  isGlobal?: boolean;
  /** Providers that replace the module's defaults (by injection token), e.g. a custom serializer. */
  providers?: Provider[];
}

export type ResolvedSseStreamOptions = ResolvedOptionsOf<Group<'sse'>>;
export type ResolvedPostgresOptions = ResolvedOptionsOf<Group<'postgres'>>;
export type ResolvedOutboxOptions = ResolvedOptionsOf<Group<'outbox'>>;
export type ResolvedRedisOptions = ResolvedOptionsOf<Group<'redis'>>;
export type ResolvedIdempotencyOptions = ResolvedOptionsOf<Group<'idempotency'>>;
export type ResolvedHealthOptions = ResolvedOptionsOf<Group<'health'>>;
export type ResolvedMetricsOptions = ResolvedOptionsOf<Group<'metrics'>>;
export type ResolvedShutdownOptions = ResolvedOptionsOf<Group<'shutdown'>>;
export type ResolvedJobsOptions = ResolvedOptionsOf<Group<'jobs'>>;

/** The validated options with every default applied; injectable with `SSE_MODULE_OPTIONS`. */
export interface ResolvedSseModuleOptions {
  sse: ResolvedSseStreamOptions;
  /** Absent when no `postgres` option was given: topics are then served by the in-process hub only. */
  postgres?: ResolvedPostgresOptions;
  outbox: ResolvedOutboxOptions;
  /** Absent when no `redis` option was given: idempotency then uses the in-memory store. */
  redis?: ResolvedRedisOptions;
  idempotency: ResolvedIdempotencyOptions;
  health: ResolvedHealthOptions;
  metrics: ResolvedMetricsOptions;
  shutdown: ResolvedShutdownOptions;
  jobs: ResolvedJobsOptions;
}

const defaults = <K extends keyof Definitions>(group: K) =>
  defaultsOf(OPTION_DEFINITIONS[group].group);

export const SSE_STREAM_DEFAULTS = defaults('sse') as Readonly<ResolvedSseStreamOptions>;
export const POSTGRES_DEFAULTS = defaults('postgres') as Readonly<
  Omit<ResolvedPostgresOptions, 'connectionString' | 'existingPool' | 'listenerClientFactory'>
>;
export const OUTBOX_DEFAULTS = defaults('outbox') as Readonly<ResolvedOutboxOptions>;
export const REDIS_DEFAULTS = defaults('redis') as Readonly<
  Omit<ResolvedRedisOptions, 'url' | 'existingClient'>
>;
export const IDEMPOTENCY_DEFAULTS = defaults('idempotency') as Readonly<ResolvedIdempotencyOptions>;
export const HEALTH_DEFAULTS = defaults('health') as Readonly<ResolvedHealthOptions>;
export const SHUTDOWN_DEFAULTS = defaults('shutdown') as Readonly<ResolvedShutdownOptions>;
export const JOBS_DEFAULTS = defaults('jobs') as Readonly<ResolvedJobsOptions>;
export const METRICS_DEFAULTS = defaults('metrics') as Readonly<ResolvedMetricsOptions>;
