import { SseLogger } from '../observability/sse-logger';
import { Inject, Injectable, OnApplicationShutdown, Optional } from '@nestjs/common';
import {
  Client,
  ClientConfig,
  Pool,
  PoolClient,
  QueryConfig,
  QueryResult,
  QueryResultRow,
} from 'pg';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import { POSTGRES_DEFAULTS, ResolvedSseModuleOptions } from '../config/sse-module-options';
import { raceTimeout } from '../common/timeout';
import { redactUrl } from '../config/validate-options';

/** How long shutdown waits for the pool to end politely before destroying its sockets. */
const POOL_END_TIMEOUT_MS = 1_000;

/**
 * The module's PostgreSQL access: its pool (created from options, or the user's
 * `existingPool`, which it never ends) and the settings for the outbox's dedicated LISTEN
 * connection, which lives outside the pool.
 */
@Injectable()
export class PostgresConnection implements OnApplicationShutdown {
  private readonly ownedPool?: Pool;
  readonly pool?: Pool;
  private verified?: Promise<void>;

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    @Optional() private readonly logger: SseLogger = new SseLogger(),
  ) {
    const pg = options.postgres;
    if (!pg) return;
    if (pg.existingPool) {
      this.pool = pg.existingPool;
      return;
    }
    this.ownedPool = this.pool = new Pool({
      connectionString: pg.connectionString,
      max: pg.pool.max,
      min: pg.pool.min,
      idleTimeoutMillis: pg.pool.idleTimeoutMs,
      connectionTimeoutMillis: pg.pool.connectionTimeoutMs,
      statement_timeout: pg.statementTimeoutMs || undefined,
      // The client-side bound of every query on the pool, the user's own in outbox.transaction()
      // included: a silently dead path (no FIN, no RST) never answers, and the server's
      // statement_timeout cannot fire on a connection it no longer hears. It is set above
      // statement_timeout so that a slow query still fails with the server's clearer error.
      query_timeout: pg.statementTimeoutMs ? pg.statementTimeoutMs + pg.queryTimeoutMs : undefined,
      application_name: 'nestjs-durable-sse',
    });
    // An idle client's error (server restart, network) is emitted on the pool; unhandled it
    // would crash the process. The client is discarded and the next checkout reconnects.
    this.ownedPool.on('error', (error) =>
      this.logger.report(
        'postgres.idle-error',
        `Idle PostgreSQL connection failed: ${error.message}`,
      ),
    );
  }

  /**
   * One round trip at start-up, so that a wrong host, role, password or database fails bootstrap
   * with the option it came from (the driver's words alone, `role "x" does not exist`, do not say
   * which of an app's pools failed). Shared by whoever asks first.
   */
  verify(): Promise<void> {
    this.verified ??= this.query('SELECT 1').then(
      () => undefined,
      (error: Error) => {
        const pg = this.options.postgres!;
        const source = pg.connectionString
          ? `postgres.connectionString ${redactUrl(pg.connectionString)}`
          : 'postgres.existingPool';
        throw new Error(`SseModule could not use PostgreSQL (${source}): ${error.message}`, {
          cause: error,
        });
      },
    );
    return this.verified;
  }

  /** Client-side bound of the module's own queries (ms). */
  get queryTimeoutMs(): number {
    return this.options.postgres?.queryTimeoutMs ?? POSTGRES_DEFAULTS.queryTimeoutMs;
  }

  get enabled(): boolean {
    return this.pool !== undefined;
  }

  /** The pool's size, read from the pool itself (the module's, the user's or the embedded one). */
  get poolSize(): number {
    return (this.pool as (Pool & { options?: { max?: number } }) | undefined)?.options?.max ?? 1;
  }

  requirePool(): Pool {
    if (!this.pool) {
      throw new Error(
        'nestjs-durable-sse: the outbox needs the `postgres` option of SseModule.forRoot()',
      );
    }
    return this.pool;
  }

  /** A new, unpooled client with the pool's settings (for LISTEN), or the configured factory's. */
  createClient(): Client {
    const factory = this.options.postgres?.listenerClientFactory;
    if (factory) return factory();
    const options = (this.requirePool() as Pool & { options: ClientConfig }).options;
    const { connectionString, host, port, user, password, database, ssl } = options;
    return new Client({
      connectionString,
      host,
      port,
      user,
      password,
      database,
      ssl,
      connectionTimeoutMillis: this.options.postgres?.pool.connectionTimeoutMs,
      query_timeout: this.queryTimeoutMs,
      application_name: 'nestjs-durable-sse listener',
    });
  }

  /**
   * One of the module's own queries, on the pool, bounded on the client side by
   * `postgres.queryTimeoutMs` whatever pool it runs on (the user's `existingPool` too). A query
   * that times out has its connection destroyed by pg, so the next one gets a fresh connection.
   */
  query<R extends QueryResultRow = any>(text: string, values?: unknown[]): Promise<QueryResult<R>> {
    return this.requirePool().query<R>(this.bounded(text, values));
  }

  /** `text` as a query config that carries the module's client-side bound. */
  bounded(text: string, values?: unknown[]): QueryConfig {
    return { text, values, query_timeout: this.queryTimeoutMs } as QueryConfig;
  }

  /**
   * Checks a client out of the pool. A pool that stays exhausted past
   * `pool.connectionTimeoutMs` fails with a {@link PostgresPoolExhaustedError} that says so,
   * instead of pg's bare "timeout exceeded when trying to connect".
   */
  async connect(): Promise<PoolClient> {
    const pool = this.requirePool();
    try {
      return this.guard(await pool.connect());
    } catch (error) {
      if (/timeout exceeded when trying to connect/i.test((error as Error).message)) {
        throw new PostgresPoolExhaustedError(
          `No PostgreSQL connection became free within postgres.pool.connectionTimeoutMs ` +
            `(${this.options.postgres?.pool.connectionTimeoutMs} ms): all ${pool.totalCount} connections ` +
            `are in use and ${pool.waitingCount} requests are waiting. Raise postgres.pool.max or ` +
            'shorten transactions.',
        );
      }
      throw error;
    }
  }

  /**
   * pg-pool listens for errors only on idle clients. A checked-out client that the server ends
   * (pg_terminate_backend, idle_in_transaction_session_timeout, a failover) emits `error` with
   * no listener, and that crashes the process. Until it is released, this listener takes the
   * error instead (the query in flight rejects on its own), and the release then discards the
   * connection rather than pooling a dead one.
   */
  private guard(client: PoolClient): PoolClient {
    // The embedded adapter's clients have no socket to lose, and are no EventEmitters.
    if (typeof client.on !== 'function') return client;
    let lost: Error | undefined;
    const onError = (error: Error) => {
      lost ??= error;
      this.logger.report(
        'postgres.connection-lost',
        `A PostgreSQL connection in use was lost: ${error.message}`,
      );
    };
    client.on('error', onError);
    const release = client.release;
    client.release = (error?: Error | boolean) => {
      client.removeListener('error', onError);
      client.release = release;
      return release.call(client, error || lost);
    };
    return client;
  }

  /**
   * Runs `fn` inside BEGIN … COMMIT on a pooled connection, every statement of it bounded; rolls
   * back (and rethrows) when `fn` or the COMMIT throws. A connection that cannot roll back does
   * not go back to the pool.
   */
  async transaction<T>(fn: (client: PoolClient) => Promise<T>, begin = 'BEGIN'): Promise<T> {
    const client = await this.connect();
    let broken: Error | undefined;
    try {
      await client.query(this.bounded(begin));
      const result = await fn(client);
      await client.query(this.bounded('COMMIT'));
      return result;
    } catch (error) {
      try {
        await client.query(this.bounded('ROLLBACK'));
      } catch (rollbackError) {
        broken = rollbackError as Error;
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  async withClient<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect();
    try {
      return await fn(client);
    } finally {
      client.release();
    }
  }

  /**
   * Ends the module's own pool. pool.end() waits for every connection to say goodbye, which a
   * connection on a dead network path never does: after a bound, their sockets are destroyed.
   */
  async onApplicationShutdown(): Promise<void> {
    const pool = this.ownedPool;
    if (!pool) return;
    const ended = pool.end().catch(() => undefined);
    await raceTimeout(ended, POOL_END_TIMEOUT_MS, () => {
      this.logger.report(
        'postgres.close-timeout',
        'PostgreSQL connections did not close in time; destroying them',
      );
      destroyClients(pool);
    });
  }
}

/** Destroys the sockets of every client of a pool (pg-pool keeps no public list of them). */
function destroyClients(pool: Pool): void {
  const clients = (pool as unknown as { _clients?: Client[] })._clients ?? [];
  for (const client of clients) destroySocket(client);
}

/** Destroys a pg client's socket: for peers that will never answer a polite goodbye. */
export function destroySocket(client: Client): void {
  (
    client as unknown as { connection?: { stream?: { destroy(): void } } }
  ).connection?.stream?.destroy();
}

/** The pool had no free connection within `postgres.pool.connectionTimeoutMs`. */
export class PostgresPoolExhaustedError extends Error {
  override readonly name = 'PostgresPoolExhaustedError';
}
