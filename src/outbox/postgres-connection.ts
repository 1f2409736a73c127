import { Inject, Injectable, Logger, OnApplicationShutdown } from '@nestjs/common';
import { Client, ClientConfig, Pool, PoolClient } from 'pg';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';

/**
 * The module's PostgreSQL access: its pool (created from options, or the user's
 * `existingPool`, which it never ends) and the settings for the outbox's dedicated LISTEN
 * connection, which lives outside the pool.
 */
@Injectable()
export class PostgresConnection implements OnApplicationShutdown {
  private readonly logger = new Logger('SsePostgres');
  private readonly ownedPool?: Pool;
  readonly pool?: Pool;

  constructor(@Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions) {
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
      application_name: 'nestjs-durable-sse',
    });
    // An idle client's error (server restart, network) is emitted on the pool; unhandled it
    // would crash the process. The client is discarded and the next checkout reconnects.
    this.ownedPool.on('error', (error) =>
      this.logger.warn(`Idle PostgreSQL connection failed: ${error.message}`),
    );
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
      application_name: 'nestjs-durable-sse listener',
    });
  }

  /**
   * Checks a client out of the pool. A pool that stays exhausted past
   * `pool.connectionTimeoutMs` fails with a {@link PostgresPoolExhaustedError} that says so,
   * instead of pg's bare "timeout exceeded when trying to connect".
   */
  async connect(): Promise<PoolClient> {
    const pool = this.requirePool();
    try {
      return await pool.connect();
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

  async withClient<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.connect();
    try {
      return await fn(client);
    } finally {
      client.release();
    }
  }

  async onApplicationShutdown(): Promise<void> {
    await this.ownedPool?.end();
  }
}

/** The pool had no free connection within `postgres.pool.connectionTimeoutMs`. */
export class PostgresPoolExhaustedError extends Error {
  override readonly name = 'PostgresPoolExhaustedError';
}
