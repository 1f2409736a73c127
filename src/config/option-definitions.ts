import type { Client, Pool } from 'pg';
import type { Cluster, Redis } from 'ioredis';

/**
 * Every option of `SseModule.forRoot()`, defined once: its rule (validation, and the value type
 * of the public option interfaces), its default (the `*_DEFAULTS` objects and the resolved
 * types), and its meaning — the JSDoc comment on each entry, which is what editors show on the
 * option and what docs/configuration.md's tables say (test/config/docs.unit.spec.ts derives the
 * tables from this file and keeps the page equal to them; after a change here,
 * `UPDATE_DOCS=1 npm run test:jest -- test/config/docs.unit.spec.ts` rewrites them).
 */

/** How an option is validated (class-validator decorators are derived from it: options.schema.ts). */
export type OptionRule =
  | { kind: 'int'; min?: number; max?: number }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'string'; pattern?: RegExp; message?: string; minLength?: number }
  | { kind: 'path-or-false' }
  | { kind: 'strings'; maxItems: number }
  /** An instance or a function: never copied or validated by class-validator (checked in validate-options.ts). */
  | { kind: 'value' };

/** One option. `V`: its value type; `D`: whether it has a default (then resolved options always hold it). */
export interface OptionDefinition<V = unknown, D extends boolean = boolean> {
  readonly rule: OptionRule;
  readonly default?: V;
  /** The docs' default column when the default is not a plain value (derived, or none). */
  readonly defaultText?: string;
  /** The docs' rule column when the rule's own wording is not enough. */
  readonly ruleText?: string;
  /** Type-level only. */
  readonly __value?: V;
  readonly __defaulted?: D;
}

/** A nested group of options (`postgres.pool`, and every top-level group). */
export interface OptionGroupDefinition<G extends OptionDefinitions = OptionDefinitions> {
  readonly group: G;
}

export type OptionDefinitions = {
  readonly [key: string]: OptionDefinition | OptionGroupDefinition;
};

interface Described<V> {
  default?: V;
  defaultText?: string;
  ruleText?: string;
}
type Definition<V, O> = OptionDefinition<V, O extends { default: unknown } ? true : false>;

const int = <const O extends Described<number> & { min?: number; max?: number }>(
  o: O,
): Definition<number, O> => ({
  rule: { kind: 'int', min: o.min, max: o.max },
  default: o.default,
  defaultText: o.defaultText,
  ruleText: o.ruleText,
});
const boolean = <const O extends Described<boolean>>(o: O): Definition<boolean, O> => ({
  rule: { kind: 'boolean' },
  ...o,
});
const oneOf = <const V extends string, const O extends Described<V>>(
  values: readonly V[],
  o: O,
): Definition<V, O> => ({ rule: { kind: 'enum', values }, ...o });
const string = <
  const O extends Described<string> & { pattern?: RegExp; message?: string; minLength?: number },
>(
  o: O,
): Definition<string, O> => ({
  rule: { kind: 'string', pattern: o.pattern, message: o.message, minLength: o.minLength },
  default: o.default,
  defaultText: o.defaultText,
  ruleText: o.ruleText,
});
const pathOrFalse = <const O extends Described<string | false>>(
  o: O,
): Definition<string | false, O> => ({ rule: { kind: 'path-or-false' }, ...o });
const strings = <const O extends Described<string[]> & { maxItems: number }>(
  o: O,
): Definition<string[], O> => ({
  rule: { kind: 'strings', maxItems: o.maxItems },
  default: o.default,
  defaultText: o.defaultText,
  ruleText: o.ruleText,
});
const value = <V>(o: Described<V> & { ruleText: string }): OptionDefinition<V, false> => ({
  rule: { kind: 'value' },
  ...o,
});
const group = <const G extends OptionDefinitions>(definitions: G): OptionGroupDefinition<G> => ({
  group: definitions,
});

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

/** Lower-case SQL identifiers only, so names never need quoting rules beyond double quotes. */
export const IDENTIFIER = /^[a-z_][a-z0-9_]{0,62}$/;
const identifier = <const D extends string>(defaultValue: D) =>
  string({
    default: defaultValue,
    pattern: IDENTIFIER,
    message:
      '$property must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 63 characters)',
    ruleText: 'lower-case SQL identifier',
  });

export const OPTION_DEFINITIONS = {
  sse: group({
    /**
     * Longest silence on a stream; a `:` comment is written when a stream was idle for
     * `heartbeatMs/2` … `heartbeatMs`. Keep it below your proxies' idle timeouts.
     */
    heartbeatMs: int({ default: 15_000, min: 10, max: HOUR_MS }),
    /** `retry:` sent when a stream opens: how long the client waits before reconnecting. */
    retryMs: int({ default: 3_000, min: 0, max: HOUR_MS }),
    /**
     * Each stream's `retry:` is `retryMs` plus up to this much, drawn per stream, so that the
     * clients of an instance that dies do not all come back to the others in the same moment.
     */
    retryJitterMs: int({ default: 2_000, min: 0, max: HOUR_MS }),
    /**
     * Streams resuming with `Last-Event-ID` taken back per second (a second's worth at once);
     * past it a resume is refused as `rejectMode` says, told when to come back so the refused
     * return at about this rate ([streams](streams.md#reconnect-storms)). `0`: no bound.
     */
    resumesPerSecond: int({ default: 2_500, min: 0 }),
    /** Streams this instance holds open (or is opening) at once. */
    maxConnections: int({ default: 10_000, min: 1 }),
    /** Streams one client key may hold. */
    maxConnectionsPerClient: int({
      default: 100,
      min: 1,
      defaultText: '`100`, or `maxConnections` if smaller',
      ruleText: 'integer ≥ 1, ≤ `maxConnections`',
    }),
    /**
     * Unsent bytes a connection may hold without being suspected of not reading; above it, the
     * stream is paced and watched ([streams](streams.md#slow-clients-backpressure)).
     */
    maxBufferedBytes: int({ default: 1024 * 1024, min: 1024, defaultText: '`1048576` (1 MiB)' }),
    /**
     * A stream whose unsent bytes stay above `maxBufferedBytes` this long is cut as a slow
     * consumer (it resumes by id). A big batch to a client that reads is not cut.
     */
    slowConsumerMs: int({ default: 5_000, min: 10, max: HOUR_MS }),
    /**
     * How refused streams are answered: `503`/`429` + `Retry-After`, or `200` with a jittered
     * `retry:` and a close (for browsers; see [streams](streams.md#limits)).
     */
    rejectMode: oneOf(['status', 'retry'], { default: 'status' }),
    /** Base back-off told to refused clients; the value sent is in [base, 2 × base). */
    rejectRetryMs: int({ default: 5_000, min: 1, max: HOUR_MS }),
    /**
     * Most events replayed to one resuming client; further behind, it gets one `event: reset`
     * and continues live ([outbox](outbox.md#resuming)).
     */
    replayLimit: int({ default: 1_000, min: 1, max: 1_000_000 }),
  }),

  /**
   * Enables the transactional outbox: topic streams are then fed from PostgreSQL. Exactly one of
   * `connectionString` and `existingPool`.
   */
  postgres: group({
    /** `postgres://user:password@host:5432/db`; the module creates and ends its pool. */
    connectionString: string({ minLength: 1, ruleText: 'non-empty string' }),
    /**
     * Your pool; the module uses it and never ends it. `pool.*` and `statementTimeoutMs` then do
     * not apply (set them on your pool).
     */
    existingPool: value<Pool>({ ruleText: 'a `pg.Pool` (has `connect` and `query`)' }),
    /**
     * The relay's LISTEN connection. Give one when the pool's route cannot LISTEN (PgBouncer in
     * transaction mode: connect straight to PostgreSQL) or for [embedded mode](embedded.md).
     */
    listenerClientFactory: value<() => Client>({
      defaultText: "a `pg.Client` with the pool's settings",
      ruleText: 'function returning an unconnected `pg.Client`',
    }),
    pool: group({
      /** Most pooled connections. */
      max: int({ default: 10, min: 1, max: 10_000, ruleText: 'integer 1 … 10,000, ≥ `pool.min`' }),
      /** Connections kept open while idle. */
      min: int({ default: 0, min: 0, max: 10_000, ruleText: 'integer 0 … 10,000, ≤ `pool.max`' }),
      /** A pooled connection idle this long is closed. */
      idleTimeoutMs: int({ default: 10_000, min: 0 }),
      /**
       * A checkout waiting longer fails with `PostgresPoolExhaustedError` (names this option, the
       * pool size and the queue) instead of hanging.
       */
      connectionTimeoutMs: int({ default: 5_000, min: 1 }),
    }),
    /** `statement_timeout` of the module's pool. */
    statementTimeoutMs: int({ default: 30_000, min: 0, ruleText: 'integer ≥ 0 (0 = none)' }),
    /**
     * Client-side bound of every query the module runs itself (relay reads, replays, health,
     * metrics, BEGIN/COMMIT/ROLLBACK), on any pool. A query past it fails and pg destroys its
     * connection: a silently dead network path (no FIN, no RST) is detected in seconds, not after
     * hours of TCP keepalive. The module's own pool also bounds every other query (yours inside
     * `outbox.transaction()`) at `statementTimeoutMs + queryTimeoutMs`, none when
     * `statementTimeoutMs` is 0. With `existingPool`, set `query_timeout` on your pool for your
     * own queries.
     */
    queryTimeoutMs: int({ default: 10_000, min: 100, max: HOUR_MS }),
    /** Schema of the outbox table, its meta table and trigger function. */
    schema: identifier('public'),
  }),

  outbox: group({
    /** Outbox table name. */
    table: identifier('sse_outbox'),
    /** LISTEN/NOTIFY channel. */
    channel: identifier('sse_outbox'),
    /**
     * The relay reads this often even without a notification (covers lost NOTIFYs and a
     * listener being replaced).
     */
    pollIntervalMs: int({ default: 1_000, min: 10, max: HOUR_MS }),
    /** Rows per relay read. */
    batchSize: int({ default: 500, min: 1, max: 100_000 }),
    /** Events older than this are deleted; a client resuming from before it gets `event: reset`. */
    retentionMs: int({
      default: 7 * DAY_MS,
      min: 1000,
      max: 3650 * DAY_MS,
      defaultText: '`604800000` (7 d)',
      ruleText: 'integer, 1000 … 3650 days',
    }),
    /** How often retention runs (bounded batches). */
    retentionIntervalMs: int({ default: 60_000, min: 100, max: DAY_MS }),
    /**
     * Create the schema objects on start (idempotent, under an advisory lock). `false`: run
     * [docs/outbox-schema.sql](outbox-schema.sql) yourself.
     */
    migrate: boolean({ default: true }),
    /**
     * The LISTEN connection is checked this often; a check that fails or takes longer replaces
     * the connection.
     */
    listenerCheckMs: int({ default: 10_000, min: 100, max: HOUR_MS }),
    /**
     * Memory for the most recent events of every topic, framed: a client resuming from an id they
     * cover is replayed from memory (no query, no pooled connection). `0`: every resume reads the
     * table.
     */
    replayCacheBytes: int({
      default: 16 * 1024 * 1024,
      min: 0,
      max: 1024 * 1024 * 1024,
      defaultText: '`16777216` (16 MiB)',
      ruleText: 'integer, 0 … 1 GiB',
    }),
    /**
     * How events reach every instance: each instance reads the table (`postgres`), or one
     * elected instance appends them to a Redis Stream the others follow (`redis`; needs `redis`
     * too). See [outbox](outbox.md#fan-out-past-one-postgresql-fanout-redis).
     */
    fanout: oneOf(['postgres', 'redis'], { default: 'postgres' }),
    /**
     * How relays learn of new events. `after-commit`: the module sends one NOTIFY, from outside
     * any transaction, after each commit it knows of (its own transactions, and the transactions
     * it published into, watched with `pg_xact_status()`); rows inserted by other tools are read
     * by the poll. `trigger`: a statement trigger on the table notifies inside every
     * transaction that inserts, foreign writers' too, at the price of commits that run one at a
     * time (PostgreSQL takes a database-wide lock at the commit of a transaction that notified).
     * See [outbox](outbox.md#waking-the-relays).
     */
    wakeup: oneOf(['after-commit', 'trigger'], { default: 'after-commit' }),
    /**
     * `fanout: 'redis'`: entries kept in the stream (`XADD MAXLEN ~`). Resumes from further back
     * read the table.
     */
    streamMaxLength: int({ default: 100_000, min: 100, max: 100_000_000 }),
    /**
     * `fanout: 'redis'`: the leader checks its lock session this often; PostgreSQL ends a session
     * silent for 5 × this (`idle_session_timeout`), which frees the lead for another instance.
     */
    leaderCheckMs: int({ default: 1_000, min: 100, max: 60_000 }),
  }),

  /** Enables the Redis idempotency store, and `outbox.fanout: 'redis'`. */
  redis: group({
    /** Exactly one of `url` and `existingClient`. */
    url: string({
      pattern: /^rediss?:\/\//,
      message: '$property must be a redis:// or rediss:// URL',
      ruleText: '`redis://` or `rediss://` URL',
    }),
    /**
     * Your client; the module never quits it (and does not add `keyPrefix`: set it on your
     * client).
     */
    existingClient: value<Redis | Cluster>({ ruleText: 'ioredis `Redis` or `Cluster`' }),
    /**
     * Connect timeout; the module waits this long at start for the first connection, then
     * starts anyway.
     */
    connectTimeoutMs: int({ default: 5_000, min: 1 }),
    /**
     * Bound of every idempotency store call. A connection that answers nothing for 2 × this long
     * is destroyed and replaced (ioredis `socketTimeout`): a silently dead path costs a few 503s,
     * not hours. With `existingClient`, set `socketTimeout` on your client.
     */
    commandTimeoutMs: int({ default: 1_000, min: 1, max: HOUR_MS }),
    /**
     * ioredis `maxRetriesPerRequest`. The offline queue is off, so calls fail fast while
     * disconnected.
     */
    maxRetriesPerRequest: int({ default: 1, min: 0, max: 100 }),
    /**
     * Prefix of every key the module writes (idempotency records, the outbox stream, job logs).
     */
    keyPrefix: string({
      default: 'sse:',
      pattern: /^[^\s{}]*$/,
      message: '$property must not contain whitespace or braces',
      ruleText: 'no whitespace or braces',
    }),
  }),

  idempotency: group({
    /** Request header carrying the key. */
    header: string({
      default: 'Idempotency-Key',
      pattern: /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/,
      message: '$property must be an HTTP header name',
      ruleText: 'HTTP header name',
    }),
    /** How long a stored response is replayed (s). */
    ttlSeconds: int({ default: 86_400, min: 1, max: 365 * 86_400 }),
    /** Lease of a running request, renewed while it runs (s). */
    inFlightTtlSeconds: int({ default: 60, min: 1, max: 86_400 }),
    /** Missing key → 400 (per route: `@Idempotent({ required })`). */
    required: boolean({ default: false }),
    /** Longer keys → 400. */
    keyMaxLength: int({ default: 255, min: 1, max: 8192 }),
    /** Larger responses are not stored (the key is released). */
    maxResponseBytes: int({ default: 1024 * 1024, min: 1 }),
    /** Store unreachable: 503, or run without idempotency. */
    failMode: oneOf(['closed', 'open'], { default: 'closed' }),
    /** Response headers replayed besides the defaults. */
    storedHeaders: strings({ default: [], maxItems: 100 }),
    /** `Retry-After` of 409 and 503 answers (s). */
    retryAfterSeconds: int({ default: 1, min: 0, max: 3600 }),
    /** Allow the in-memory store with `NODE_ENV=production`. */
    allowMemoryStoreInProduction: boolean({ default: false }),
  }),

  health: group({
    /** Readiness at `/<path>`, liveness at `/<path>/live`; `false` mounts neither. */
    path: pathOrFalse({ default: 'health' }),
    /** Bound of each dependency check. */
    timeoutMs: int({ default: 1_000, min: 1, max: HOUR_MS }),
    /** More committed events than this not yet relayed → `outbox_lag` down. */
    maxOutboxLagEvents: int({ default: 10_000, min: 1 }),
    /** No relay read for this long → `outbox_listener` down. */
    maxReadAgeMs: int({ min: 1, defaultText: '3 × `outbox.pollIntervalMs`, at least 5000' }),
    /**
     * A readiness answer is reused this long, and concurrent checks share one run (`0`: every
     * request checks). Shutdown and draining are reported at once regardless.
     */
    cacheMs: int({ default: 1_000, min: 0, max: 60_000 }),
    /**
     * Committed events held back longer than this by a transaction open elsewhere are logged
     * once, naming the blocking backend (pid, age, application). Readiness stays up
     * ([operations](operations.md#events-held-back)).
     */
    pendingWarnMs: int({ default: 30_000, min: 1, max: DAY_MS }),
  }),

  metrics: group({
    /** Serve Prometheus metrics at `/<path>` (needs `prom-client`). */
    path: pathOrFalse({ default: false }),
    /** Prefix of every metric name. */
    prefix: string({
      default: 'sse_',
      pattern: /^[a-zA-Z_:][a-zA-Z0-9_:]*$/,
      message: '$property must be a Prometheus metric name prefix',
      ruleText: 'Prometheus name prefix',
    }),
  }),

  shutdown: group({
    /**
     * On a signal (`enableShutdownHooks`), readiness answers `503` for this long before any stream
     * is refused or closed, so load balancers stop sending first. Not applied to a plain
     * `app.close()`.
     */
    drainMs: int({ default: 5_000, min: 0, max: HOUR_MS }),
    /**
     * After streams are ended, requests in flight get this long; then every remaining socket
     * (idle keep-alive, silent, half-sent requests) is closed, so `app.close()` never waits on a
     * client.
     */
    graceMs: int({ default: 10_000, min: 0, max: HOUR_MS }),
  }),

  /** Resumable job streams (`@SseJob()`, docs/jobs.md); they need `redis`. */
  jobs: group({
    /**
     * Events kept in one job's log. A job that emits more is aborted and ends with
     * `event: error` (`too-large`).
     */
    maxEvents: int({ default: 10_000, min: 1, max: 10_000_000 }),
    /** Bytes of framed events in one job's log, same rule. */
    maxBytes: int({
      default: 4 * 1024 * 1024,
      min: 1024,
      max: 1024 * 1024 * 1024,
      ruleText: 'integer 1024 … 1 GiB',
    }),
    /** Jobs running at once on this instance; a new one beyond it gets `503` + `Retry-After`. */
    maxConcurrent: int({ default: 100, min: 1, max: 1_000_000 }),
    /**
     * Jobs running at once on this instance per client (the `SSE_CLIENT_KEY_RESOLVER` key);
     * beyond it `429` + `Retry-After`.
     */
    maxConcurrentPerClient: int({
      default: 5,
      min: 1,
      max: 1_000_000,
      ruleText: 'integer, ≤ `maxConcurrent`',
    }),
    /**
     * A job still running after this long is aborted (its `AbortSignal` fires) and ends with
     * `event: error` (`timeout`).
     */
    timeoutMs: int({
      default: 15 * 60_000,
      min: 100,
      max: 7 * DAY_MS,
      ruleText: 'integer 100 … 7 days',
    }),
    /** How long a finished job's log stays resumable; then its resume URL answers `404`. */
    retentionMs: int({
      default: HOUR_MS,
      min: 1000,
      max: 30 * DAY_MS,
      ruleText: 'integer 1000 … 30 days',
    }),
    /**
     * How often a stream following a job that runs on another instance reads its log (one
     * `XRANGE` per stream when nothing new).
     */
    followIntervalMs: int({ default: 50, min: 5, max: 60_000 }),
  }),
} as const;

/** The value type of a definition. */
type ValueOf<D> =
  D extends OptionGroupDefinition<infer G>
    ? OptionsOf<G>
    : D extends OptionDefinition<infer V>
      ? V
      : never;
type ResolvedValueOf<D> =
  D extends OptionGroupDefinition<infer G>
    ? ResolvedOptionsOf<G>
    : D extends OptionDefinition<infer V>
      ? V
      : never;
type HasDefault<D> = D extends OptionGroupDefinition
  ? true
  : D extends OptionDefinition<unknown, true>
    ? true
    : false;

/** The options of a group as the user gives them: all optional. */
export type OptionsOf<G> = { -readonly [K in keyof G]?: ValueOf<G[K]> };

/** The options of a group once resolved: those with a default always present. */
export type ResolvedOptionsOf<G> = {
  -readonly [K in keyof G as HasDefault<G[K]> extends true ? K : never]: ResolvedValueOf<G[K]>;
} & {
  -readonly [K in keyof G as HasDefault<G[K]> extends true ? never : K]?: ResolvedValueOf<G[K]>;
};

/** The defaults of a group of definitions (nested groups included). */
export function defaultsOf<G extends OptionDefinitions>(
  definitions: G,
): Readonly<Record<string, unknown>> {
  const defaults: Record<string, unknown> = {};
  for (const [key, definition] of Object.entries(definitions)) {
    if ('group' in definition) defaults[key] = defaultsOf(definition.group);
    else if (definition.default !== undefined) {
      const value = definition.default;
      defaults[key] = Array.isArray(value) ? Object.freeze([...value]) : value;
    }
  }
  return Object.freeze(defaults);
}
