import { plainToInstance } from 'class-transformer';
import { ValidationError, validateSync } from 'class-validator';
import { SseModuleOptionsSchema } from './options.schema';
import { coerceConfigStrings } from './config-strings';
import type { Client, Pool } from 'pg';
import {
  HEALTH_DEFAULTS,
  METRICS_DEFAULTS,
  SHUTDOWN_DEFAULTS,
  JOBS_DEFAULTS,
  IDEMPOTENCY_DEFAULTS,
  REDIS_DEFAULTS,
  RedisOptions,
  ResolvedRedisOptions,
  OUTBOX_DEFAULTS,
  POSTGRES_DEFAULTS,
  PostgresOptions,
  ResolvedPostgresOptions,
  ResolvedSseModuleOptions,
  SSE_STREAM_DEFAULTS,
  SseModuleOptions,
} from './sse-module-options';

export interface SseConfigIssue {
  /** Dotted option path, e.g. `sse.heartbeatMs`. */
  path: string;
  message: string;
}

/** Thrown at bootstrap when options are invalid; lists every bad field at once. */
export class SseConfigError extends Error {
  override readonly name = 'SseConfigError';
  constructor(readonly issues: SseConfigIssue[]) {
    super(
      `Invalid SseModule options (${issues.length} problem${issues.length === 1 ? '' : 's'}):\n` +
        issues.map((i) => `  - ${i.path}: ${i.message}`).join('\n'),
    );
  }
}

function flatten(errors: ValidationError[], prefix = ''): SseConfigIssue[] {
  const issues: SseConfigIssue[] = [];
  for (const error of errors) {
    const path = prefix ? `${prefix}.${error.property}` : error.property;
    for (const message of Object.values(error.constraints ?? {})) {
      issues.push({ path, message: `${message} (got ${describe(error.value)})` });
    }
    issues.push(...flatten(error.children ?? [], path));
  }
  return issues;
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'object' && value !== null)
    return Array.isArray(value) ? 'an array' : 'an object';
  return String(value);
}

/** Validates raw options and applies defaults. Pure: throws {@link SseConfigError} or returns. */
export function resolveSseModuleOptions(
  given: SseModuleOptions | undefined,
): ResolvedSseModuleOptions {
  if (
    given !== undefined &&
    (given === null || typeof given !== 'object' || Array.isArray(given))
  ) {
    throw new SseConfigError([
      { path: '(root)', message: `options must be an object (got ${describe(given)})` },
    ]);
  }
  const stringIssues: SseConfigIssue[] = [];
  const raw = coerceConfigStrings(
    (given ?? {}) as Record<string, unknown>,
    stringIssues,
  ) as SseModuleOptions;
  // Client instances must reach the module untouched (class-transformer would copy them).
  const existingPool = raw?.postgres?.existingPool;
  const existingClient = raw?.redis?.existingClient;
  const plain: SseModuleOptions = { ...(raw ?? {}) };
  const listenerClientFactory = raw?.postgres?.listenerClientFactory;
  if (raw?.postgres && typeof raw.postgres === 'object') {
    plain.postgres = omit(raw.postgres, 'existingPool', 'listenerClientFactory');
  }
  if (raw?.redis && typeof raw.redis === 'object' && 'existingClient' in raw.redis) {
    plain.redis = omit(raw.redis, 'existingClient');
  }
  const schema = plainToInstance(SseModuleOptionsSchema, plain);
  // A string that spells no number has its one issue already; the validator's would repeat it.
  const stringPaths = new Set(stringIssues.map((issue) => issue.path));
  const issues = [
    ...stringIssues,
    ...flatten(
      validateSync(schema, {
        whitelist: true,
        forbidNonWhitelisted: true,
        forbidUnknownValues: true,
      }),
    ).filter((issue) => !stringPaths.has(issue.path)),
  ];

  const givenSse = stripUndefined(raw?.sse);
  const sse = { ...SSE_STREAM_DEFAULTS, ...givenSse };
  // A small instance limit must not trip over the per-client default.
  if (givenSse.maxConnectionsPerClient === undefined && typeof sse.maxConnections === 'number') {
    sse.maxConnectionsPerClient = Math.min(
      SSE_STREAM_DEFAULTS.maxConnectionsPerClient,
      sse.maxConnections,
    );
  }
  if (
    !issues.some((i) => i.path.startsWith('sse.maxConnections')) &&
    sse.maxConnectionsPerClient > sse.maxConnections
  ) {
    issues.push({
      path: 'sse.maxConnectionsPerClient',
      message: `must not exceed sse.maxConnections (${sse.maxConnectionsPerClient} > ${sse.maxConnections})`,
    });
  }
  const postgres = raw?.postgres
    ? resolvePostgres(raw.postgres, existingPool, listenerClientFactory, issues)
    : undefined;
  const outbox = { ...OUTBOX_DEFAULTS, ...stripUndefined(raw?.outbox) };
  const redis = raw?.redis ? resolveRedis(raw.redis, existingClient, issues) : undefined;
  if (outbox.fanout === 'redis' && (!raw?.postgres || !raw?.redis)) {
    issues.push({
      path: 'outbox.fanout',
      message: `'redis' needs both postgres (the outbox) and redis (the stream) configured (missing: ${[
        !raw?.postgres && 'postgres',
        !raw?.redis && 'redis',
      ]
        .filter(Boolean)
        .join(', ')})`,
    });
  }
  const idempotency = { ...IDEMPOTENCY_DEFAULTS, ...stripUndefined(raw?.idempotency) };
  const health = { ...HEALTH_DEFAULTS, ...stripUndefined(raw?.health) };
  const metrics = { ...METRICS_DEFAULTS, ...stripUndefined(raw?.metrics) };
  const shutdown = { ...SHUTDOWN_DEFAULTS, ...stripUndefined(raw?.shutdown) };
  const jobs = { ...JOBS_DEFAULTS, ...stripUndefined(raw?.jobs) };
  if (jobs.maxConcurrentPerClient > jobs.maxConcurrent) {
    issues.push({
      path: 'jobs.maxConcurrentPerClient',
      message: `must not exceed jobs.maxConcurrent (${jobs.maxConcurrentPerClient} > ${jobs.maxConcurrent})`,
    });
  }
  if (issues.length > 0) throw new SseConfigError(issues);
  return Object.freeze({
    sse: Object.freeze(sse),
    postgres,
    outbox: Object.freeze(outbox),
    redis,
    idempotency: Object.freeze(idempotency),
    health: Object.freeze(health),
    metrics: Object.freeze(metrics),
    shutdown: Object.freeze(shutdown),
    jobs: Object.freeze(jobs),
  });
}

function resolveRedis(
  given: RedisOptions,
  existingClient: RedisOptions['existingClient'],
  issues: SseConfigIssue[],
): ResolvedRedisOptions | undefined {
  if (typeof given !== 'object' || given === null) return undefined;
  if (
    existingClient !== undefined &&
    (typeof existingClient !== 'object' ||
      typeof (existingClient as { defineCommand?: unknown }).defineCommand !== 'function')
  ) {
    issues.push({
      path: 'redis.existingClient',
      message: 'must be an ioredis Redis or Cluster instance',
    });
  }
  if ((given.url === undefined) === (existingClient === undefined)) {
    issues.push({ path: 'redis', message: 'give exactly one of url or existingClient' });
  }
  const urlProblem = typeof given.url === 'string' ? redisUrlProblem(given.url) : undefined;
  if (urlProblem) issues.push({ path: 'redis.url', message: urlProblem });
  return Object.freeze({
    ...REDIS_DEFAULTS,
    ...stripUndefined(omit(given, 'existingClient')),
    existingClient,
  });
}

function resolvePostgres(
  given: PostgresOptions,
  existingPool: Pool | undefined,
  listenerClientFactory: (() => Client) | undefined,
  issues: SseConfigIssue[],
): ResolvedPostgresOptions | undefined {
  if (typeof given !== 'object' || given === null) return undefined;
  if (listenerClientFactory !== undefined && typeof listenerClientFactory !== 'function') {
    issues.push({
      path: 'postgres.listenerClientFactory',
      message: `must be a function returning a pg.Client (got ${describe(listenerClientFactory)})`,
    });
  }
  if (existingPool !== undefined && !isPool(existingPool)) {
    issues.push({
      path: 'postgres.existingPool',
      message: 'must be a pg.Pool (an object with connect() and query())',
    });
  }
  if ((given.connectionString === undefined) === (existingPool === undefined)) {
    issues.push({
      path: 'postgres',
      message: 'give exactly one of connectionString or existingPool',
    });
  }
  const pool = { ...POSTGRES_DEFAULTS.pool, ...stripUndefined(given.pool) };
  if (typeof pool.min === 'number' && typeof pool.max === 'number' && pool.min > pool.max) {
    issues.push({
      path: 'postgres.pool.min',
      message: `must not exceed postgres.pool.max (${pool.min} > ${pool.max})`,
    });
  }
  return Object.freeze({
    ...POSTGRES_DEFAULTS,
    ...stripUndefined(omit(given, 'existingPool', 'listenerClientFactory')),
    existingPool,
    listenerClientFactory,
    pool: Object.freeze(pool),
  });
}

/**
 * What ioredis would take badly in a `redis.url` the pattern lets through: a database path that
 * is not a number (`/banana` crashed the process after start-up) or a URL that does not parse.
 */
function redisUrlProblem(url: string): string | undefined {
  if (!/^rediss?:\/\//.test(url)) return undefined; // the pattern's own message says it
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return `is not a valid URL (got ${JSON.stringify(redactUrl(url))})`;
  }
  if (!/^\/?(\d{1,5})?\/?$/.test(parsed.pathname)) {
    return (
      `names the database by its number, as in redis://host:6379/2 (got the path ` +
      `${JSON.stringify(parsed.pathname)})`
    );
  }
  return undefined;
}

/** A connection URL with its password replaced, for messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*:)[^@/]*@/i, '$1***@');
}

function isPool(value: unknown): value is Pool {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as Pool).connect === 'function' &&
    typeof (value as Pool).query === 'function'
  );
}

function omit<T extends object, K extends keyof T>(value: T, ...keys: K[]): Omit<T, K> {
  const copy = { ...value };
  for (const key of keys) delete copy[key];
  return copy;
}

function stripUndefined<T extends object>(value: T | undefined): Partial<T> {
  if (!value || typeof value !== 'object') return {};
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
