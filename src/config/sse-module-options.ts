import type { Provider } from '@nestjs/common';
import type { Client, Pool } from 'pg';
import type { Cluster, Redis } from 'ioredis';

/** How a stream that cannot be admitted (instance full, client over its limit, shutting down) is refused. */
export type SseRejectMode = 'status' | 'retry';

export interface SseStreamOptions {
  /** Write a comment line when a stream was idle this long (ms). Default 15000. */
  heartbeatMs?: number;
  /** `retry:` sent once at stream start: the client's reconnection delay (ms). Default 3000. */
  retryMs?: number;
  /** Open streams this instance accepts; beyond it new streams are refused. Default 10000. */
  maxConnections?: number;
  /** Open streams per client key (see `SSE_CLIENT_KEY_RESOLVER`). Default 100. */
  maxConnectionsPerClient?: number;
  /**
   * Unsent bytes a connection may hold without being suspected of not reading. Default 1 MiB.
   * A stream that stays above it for `slowConsumerMs` is cut as a slow consumer.
   */
  maxBufferedBytes?: number;
  /**
   * How long a stream may hold more than `maxBufferedBytes` unsent before it is cut (ms). A big
   * transaction or replay handed over at once is not a slow consumer: a client that reads drains
   * it within this time. Default 5000.
   */
  slowConsumerMs?: number;
  /**
   * `'status'` (default): `503`/`429` with `Retry-After`. `'retry'`: `200` with a jittered
   * `retry:` and an immediate close, because browsers' `EventSource` never reconnects after a
   * non-200 response.
   */
  rejectMode?: SseRejectMode;
  /** Base back-off for refused streams (ms); the client is told a value in [base, 2×base). Default 5000. */
  rejectRetryMs?: number;
  /**
   * Most events replayed to one resuming client; a client further behind gets `event: reset`
   * and continues live. Default 1000.
   */
  replayLimit?: number;
}

export interface PostgresPoolOptions {
  /** Most pooled connections. Default 10. */
  max?: number;
  /** Connections kept open when idle. Default 0. */
  min?: number;
  /** Close a pooled connection idle this long (ms). Default 10000. */
  idleTimeoutMs?: number;
  /** Fail a checkout that waits longer than this (ms) instead of hanging. Default 5000. */
  connectionTimeoutMs?: number;
}

export interface PostgresOptions {
  /** `postgres://user@host:port/db`. Either this or `existingPool`. */
  connectionString?: string;
  /** A `pg.Pool` you already have; the module uses it and never ends it. */
  existingPool?: Pool;
  /**
   * Creates the relay's dedicated LISTEN connection (not yet connected). Default: a new
   * `pg.Client` with the pool's connection settings. Give one when the pool's route cannot
   * LISTEN (PgBouncer in transaction mode: connect this one straight to PostgreSQL) or for
   * the embedded adapter ({@link pglitePostgres}).
   */
  listenerClientFactory?: () => Client;
  pool?: PostgresPoolOptions;
  /** `statement_timeout` for the module's pool (ms, 0 = none). Default 30000. */
  statementTimeoutMs?: number;
  /**
   * Client-side bound of every query the module runs itself (relay reads, replays, health,
   * metrics, BEGIN/COMMIT) (ms). A connection on a silently dead network path never answers, and
   * no server-side timeout can reach it: past this bound the query fails, its connection is
   * destroyed and the work is retried. The module's own pool also bounds every other query at
   * `statementTimeoutMs + queryTimeoutMs` (none when `statementTimeoutMs` is 0). Default 10000.
   */
  queryTimeoutMs?: number;
  /** Schema of the outbox table. Default `public`. */
  schema?: string;
}

export interface OutboxOptions {
  /** Outbox table name. Default `sse_outbox`. */
  table?: string;
  /** LISTEN/NOTIFY channel. Default `sse_outbox`. */
  channel?: string;
  /** Read the outbox this often even without a notification (ms). Default 1000. */
  pollIntervalMs?: number;
  /** Rows per relay read. Default 500. */
  batchSize?: number;
  /** Delete events older than this (ms). Default 7 days. */
  retentionMs?: number;
  /** How often retention runs (ms). Default 60000. */
  retentionIntervalMs?: number;
  /** Create the schema objects on start (idempotent). Default `true`. */
  migrate?: boolean;
  /** How often the LISTEN connection is checked for liveness (ms). Default 10000. */
  listenerCheckMs?: number;
  /** Memory for the most recent events, framed, to serve resumes without a query (bytes; 0 = off). Default 16 MiB. */
  replayCacheBytes?: number;
  /**
   * How events reach every instance. `'postgres'` (default): each instance follows the table.
   * `'redis'`: one elected instance appends them to a Redis Stream that every instance follows,
   * so PostgreSQL's work stays flat in the number of instances (needs `postgres` and `redis`).
   */
  fanout?: OutboxFanout;
  /** `fanout: 'redis'`: entries kept in the stream (approximate, `MAXLEN ~`). Default 100000. */
  streamMaxLength?: number;
  /**
   * `fanout: 'redis'`: the relay leader checks its lock session this often (ms); a session idle
   * for 5 × this is ended by PostgreSQL, which frees the lock for another instance. Default 1000.
   */
  leaderCheckMs?: number;
}

export type OutboxFanout = 'postgres' | 'redis';

export interface RedisOptions {
  /** `redis://[:password@]host:port[/db]`. Either this or `existingClient`. */
  url?: string;
  /** An ioredis `Redis` or `Cluster` you already have; the module never quits it. */
  existingClient?: Redis | Cluster;
  /** Give up connecting after this long (ms). Default 5000. */
  connectTimeoutMs?: number;
  /** Every idempotency store call is bounded by this (ms). Default 1000. */
  commandTimeoutMs?: number;
  /** ioredis `maxRetriesPerRequest`. Default 1. */
  maxRetriesPerRequest?: number;
  /** Prefix for every key the module writes (ioredis `keyPrefix`). Default `sse:`. */
  keyPrefix?: string;
}

export type IdempotencyFailMode = 'closed' | 'open';

export interface IdempotencyOptions {
  /** Request header carrying the key. Default `Idempotency-Key`. */
  header?: string;
  /** How long a completed response is kept for replay (s). Default 86400. */
  ttlSeconds?: number;
  /** Lease of a request in progress (s), renewed while it runs; a crashed one frees the key after it. Default 60. */
  inFlightTtlSeconds?: number;
  /** Answer 400 when the key is missing. Default `false` (no key: no idempotency). */
  required?: boolean;
  /** Longest accepted key. Default 255. */
  keyMaxLength?: number;
  /** Responses larger than this (bytes of JSON) are not stored; the key is released. Default 1 MiB. */
  maxResponseBytes?: number;
  /** Store unreachable: `'closed'` answers 503 (default), `'open'` runs the handler without idempotency. */
  failMode?: IdempotencyFailMode;
  /** Response headers stored and replayed (besides the defaults: location, content-location, etag, last-modified). */
  storedHeaders?: string[];
  /** `Retry-After` (s) sent with 409 and 503. Default 1. */
  retryAfterSeconds?: number;
  /** Allow the in-memory store when NODE_ENV is production (no `redis`). Default `false`. */
  allowMemoryStoreInProduction?: boolean;
}

export interface HealthOptions {
  /** Where readiness is served (`/<path>`; liveness at `/<path>/live`), or `false` for no routes. Default `health`. */
  path?: string | false;
  /** Each dependency check must answer within this (ms). Default 1000. */
  timeoutMs?: number;
  /** Outbox relay behind the committed head by more events than this → down. Default 10000. */
  maxOutboxLagEvents?: number;
  /** No successful relay read for this long → listener down (ms). Default 3 × pollIntervalMs, at least 5000. */
  maxReadAgeMs?: number;
  /**
   * Readiness answers are reused for this long, and concurrent checks share one run (ms; 0 =
   * every request checks). Load balancers polling every instance then cost the database one
   * check per instance per period. Shutdown is reported at once regardless. Default 1000.
   */
  cacheMs?: number;
  /**
   * Committed events held back longer than this by a transaction open elsewhere are logged once,
   * naming the blocking backend (ms). Readiness stays up: the cause is outside the instance.
   * Default 30000.
   */
  pendingWarnMs?: number;
}

export interface ShutdownOptions {
  /**
   * On a signal (SIGTERM with `enableShutdownHooks`), readiness reports 503 for this long before
   * anything is refused or closed, so load balancers stop sending first (ms). Default 5000.
   */
  drainMs?: number;
  /**
   * After open streams are ended, requests in flight get this long to finish (ms); then every
   * remaining socket (idle keep-alive, silent, half-sent requests) is closed. Default 10000.
   */
  graceMs?: number;
}

/** Resumable job streams (`@SseJob()`, docs/jobs.md); they need `redis`. */
export interface JobsOptions {
  /** Events kept in one job's log; a job that emits more ends with `event: error` (`too-large`). Default 10000. */
  maxEvents?: number;
  /** Bytes of framed events in one job's log, same rule. Default 4194304 (4 MiB). */
  maxBytes?: number;
  /** Jobs running at once on this instance; beyond, 503 + `Retry-After`. Default 100. */
  maxConcurrent?: number;
  /** Jobs running at once per client (the SSE client key); beyond, 429 + `Retry-After`. Default 5. */
  maxConcurrentPerClient?: number;
  /** A job still running after this long is aborted and ends with `event: error` (`timeout`) (ms). Default 900000. */
  timeoutMs?: number;
  /** How long a finished job stays resumable (ms). Default 3600000. */
  retentionMs?: number;
  /** How often a stream following a job that runs on another instance reads its log (ms). Default 50. */
  followIntervalMs?: number;
}

export interface MetricsOptions {
  /** Serve the module's Prometheus metrics at `/<path>` (needs `prom-client`). Default `false`. */
  path?: string | false;
  /** Prefix of every metric name. Default `sse_`. */
  prefix?: string;
}

/** Options of `SseModule.forRoot()` / the factory of `forRootAsync()`. */
export interface SseModuleOptions {
  sse?: SseStreamOptions;
  /** Enables the transactional outbox: topic streams are then fed from PostgreSQL. */
  postgres?: PostgresOptions;
  outbox?: OutboxOptions;
  /** Enables the Redis idempotency store. */
  redis?: RedisOptions;
  idempotency?: IdempotencyOptions;
  health?: HealthOptions;
  metrics?: MetricsOptions;
  shutdown?: ShutdownOptions;
  jobs?: JobsOptions;
}

/** Extras accepted next to the options by `forRoot` / `forRootAsync`. */
export interface SseModuleExtras {
  /** Register the module globally so `@Sse` works in every module. Default `true`. */
  isGlobal?: boolean;
  /** Providers that replace the module's defaults (by injection token), e.g. a custom serializer. */
  providers?: Provider[];
}

export interface ResolvedSseStreamOptions {
  heartbeatMs: number;
  retryMs: number;
  maxConnections: number;
  maxConnectionsPerClient: number;
  maxBufferedBytes: number;
  slowConsumerMs: number;
  rejectMode: SseRejectMode;
  rejectRetryMs: number;
  replayLimit: number;
}

export interface ResolvedPostgresOptions {
  connectionString?: string;
  existingPool?: Pool;
  listenerClientFactory?: () => Client;
  pool: Required<PostgresPoolOptions>;
  statementTimeoutMs: number;
  queryTimeoutMs: number;
  schema: string;
}

export type ResolvedOutboxOptions = Required<OutboxOptions>;

export interface ResolvedRedisOptions extends Required<
  Omit<RedisOptions, 'url' | 'existingClient'>
> {
  url?: string;
  existingClient?: Redis | Cluster;
}

export type ResolvedIdempotencyOptions = Required<IdempotencyOptions>;

export type ResolvedMetricsOptions = Required<MetricsOptions>;

export interface ResolvedHealthOptions {
  path: string | false;
  timeoutMs: number;
  maxOutboxLagEvents: number;
  maxReadAgeMs?: number;
  cacheMs: number;
  pendingWarnMs: number;
}

export type ResolvedShutdownOptions = Required<ShutdownOptions>;

export type ResolvedJobsOptions = Required<JobsOptions>;

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

export const SSE_STREAM_DEFAULTS: Readonly<ResolvedSseStreamOptions> = Object.freeze({
  heartbeatMs: 15_000,
  retryMs: 3_000,
  maxConnections: 10_000,
  maxConnectionsPerClient: 100,
  maxBufferedBytes: 1024 * 1024,
  slowConsumerMs: 5_000,
  rejectMode: 'status',
  rejectRetryMs: 5_000,
  replayLimit: 1_000,
});

export const POSTGRES_DEFAULTS = Object.freeze({
  pool: Object.freeze({ max: 10, min: 0, idleTimeoutMs: 10_000, connectionTimeoutMs: 5_000 }),
  statementTimeoutMs: 30_000,
  queryTimeoutMs: 10_000,
  schema: 'public',
});

export const OUTBOX_DEFAULTS: Readonly<ResolvedOutboxOptions> = Object.freeze({
  table: 'sse_outbox',
  channel: 'sse_outbox',
  pollIntervalMs: 1_000,
  batchSize: 500,
  retentionMs: 7 * 24 * 3_600_000,
  retentionIntervalMs: 60_000,
  migrate: true,
  listenerCheckMs: 10_000,
  replayCacheBytes: 16 * 1024 * 1024,
  fanout: 'postgres',
  streamMaxLength: 100_000,
  leaderCheckMs: 1_000,
});

export const REDIS_DEFAULTS = Object.freeze({
  connectTimeoutMs: 5_000,
  commandTimeoutMs: 1_000,
  maxRetriesPerRequest: 1,
  keyPrefix: 'sse:',
});

export const IDEMPOTENCY_DEFAULTS: Readonly<ResolvedIdempotencyOptions> = Object.freeze({
  header: 'Idempotency-Key',
  ttlSeconds: 86_400,
  inFlightTtlSeconds: 60,
  required: false,
  keyMaxLength: 255,
  maxResponseBytes: 1024 * 1024,
  failMode: 'closed',
  storedHeaders: [],
  retryAfterSeconds: 1,
  allowMemoryStoreInProduction: false,
});

export const HEALTH_DEFAULTS: Readonly<ResolvedHealthOptions> = Object.freeze({
  path: 'health',
  timeoutMs: 1_000,
  maxOutboxLagEvents: 10_000,
  cacheMs: 1_000,
  pendingWarnMs: 30_000,
});

export const SHUTDOWN_DEFAULTS: Readonly<ResolvedShutdownOptions> = Object.freeze({
  drainMs: 5_000,
  graceMs: 10_000,
});

export const JOBS_DEFAULTS: Readonly<ResolvedJobsOptions> = Object.freeze({
  maxEvents: 10_000,
  maxBytes: 4 * 1024 * 1024,
  maxConcurrent: 100,
  maxConcurrentPerClient: 5,
  timeoutMs: 15 * 60_000,
  retentionMs: 3_600_000,
  followIntervalMs: 50,
});

export const METRICS_DEFAULTS: Readonly<ResolvedMetricsOptions> = Object.freeze({
  path: false,
  prefix: 'sse_',
});
