import type { Provider } from '@nestjs/common';
import { defaultsOf, OPTION_DEFINITIONS, OptionsOf, ResolvedOptionsOf } from './option-definitions';

// The option types and defaults, derived from option-definitions.ts (where each option's rule,
// default and meaning are written, once).

type Definitions = typeof OPTION_DEFINITIONS;
type Group<K extends keyof Definitions> = Definitions[K]['group'];
type PoolGroup = Group<'postgres'>['pool']['group'];

// Interfaces, not aliases, so that editors and compiler errors name them (`SseStreamOptions`)
// instead of spelling out the derived type; test/config/api.unit.spec.ts keeps each equal to
// the definitions it stands for.
/* eslint-disable @typescript-eslint/no-empty-object-type */
export interface SseStreamOptions extends OptionsOf<Group<'sse'>> {}
export interface PostgresPoolOptions extends OptionsOf<PoolGroup> {}
export interface PostgresOptions extends Omit<OptionsOf<Group<'postgres'>>, 'pool'> {
  pool?: PostgresPoolOptions;
}
export interface OutboxOptions extends OptionsOf<Group<'outbox'>> {}
export interface RedisOptions extends OptionsOf<Group<'redis'>> {}
export interface IdempotencyOptions extends OptionsOf<Group<'idempotency'>> {}
export interface HealthOptions extends OptionsOf<Group<'health'>> {}
export interface MetricsOptions extends OptionsOf<Group<'metrics'>> {}
export interface ShutdownOptions extends OptionsOf<Group<'shutdown'>> {}
/** Resumable job streams (`@SseJob()`, docs/jobs.md); they need `redis`. */
export interface JobsOptions extends OptionsOf<Group<'jobs'>> {}
/* eslint-enable @typescript-eslint/no-empty-object-type */

/** Options of `SseModule.forRoot()` / what the factory of `forRootAsync()` returns. */
export interface SseModuleOptions {
  sse?: SseStreamOptions;
  /** The transactional outbox; without it, topics are served by the in-process hub. */
  postgres?: PostgresOptions;
  outbox?: OutboxOptions;
  /** Shared idempotency records, job logs and the `redis` fan-out. */
  redis?: RedisOptions;
  idempotency?: IdempotencyOptions;
  health?: HealthOptions;
  metrics?: MetricsOptions;
  shutdown?: ShutdownOptions;
  jobs?: JobsOptions;
}

/**
 * What a class given to `SseModule.forRootAsync({ useClass })` (or `useExisting`) implements, as
 * `TypeOrmOptionsFactory` or `ThrottlerOptionsFactory` do for their modules.
 */
export interface SseModuleOptionsFactory {
  createSseModuleOptions(): SseModuleOptions | Promise<SseModuleOptions>;
}

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
