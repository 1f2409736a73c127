import { Inject, Injectable, Logger, OnModuleInit } from '@nestjs/common';
import type { PoolClient } from 'pg';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { assertSafeField } from '../sse/sse-encoder';
import { SseEventError } from '../sse/sse-event';
import { assertTopic } from '../sse/sse-hub';
import { comparePositions, formatEventId, positionOf } from './outbox-position';
import { outboxSql, OutboxSql } from './outbox.sql';
import { PostgresConnection } from './postgres-connection';
import { IdempotencyProblem } from '../idempotency/idempotency-problem';
import { idempotentEffects, IdempotentEffects } from '../idempotency/idempotent-effects';

/** An event to store in the outbox. */
export interface OutboxEvent {
  topic: string;
  /** Event type (`event:` on the wire); omit for plain `message` events. */
  type?: string;
  /** JSON-serializable payload. */
  data: unknown;
  /** Deduplicates per topic: an event whose key was already stored for the topic is dropped. */
  key?: string;
}

/**
 * Anything that runs a parameterized query on the caller's open transaction: a `pg` client,
 * or an adapter around TypeORM's query runner, Prisma's `$queryRawUnsafe`, Kysely… (see
 * docs/outbox.md).
 */
export interface OutboxQueryable {
  query(text: string, values: unknown[]): Promise<{ rows: any[] }>;
}

const MAX_KEY_LENGTH = 512;

/** Writes events in the caller's transaction; the relay delivers them once committed. */
@Injectable()
export class OutboxService implements OnModuleInit {
  private readonly logger = new Logger('SseOutbox');
  readonly sql: OutboxSql;
  readonly stats = {
    /** Transactions of @Idempotent() requests not run again: their committed result was returned. */
    recordedOutcomesReturned: 0,
  };

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
  ) {
    this.sql = outboxSql({
      schema: options.postgres?.schema ?? 'public',
      table: options.outbox.table,
      channel: options.outbox.channel,
    });
  }

  async onModuleInit(): Promise<void> {
    if (this.postgres.enabled && this.options.outbox.migrate) await this.migrate();
  }

  /** Creates the outbox schema objects if missing. Idempotent and safe to run concurrently. */
  async migrate(): Promise<void> {
    await this.transaction(async (client) => {
      await client.query(
        this.postgres.bounded(this.sql.migrationLock, [
          `nestjs-durable-sse:${this.options.outbox.table}`,
        ]),
      );
      for (const statement of this.sql.migrate)
        await client.query(this.postgres.bounded(statement));
    });
    this.logger.log(`Outbox ready: ${this.options.postgres?.schema}.${this.options.outbox.table}`);
  }

  /**
   * Runs `fn` inside BEGIN … COMMIT on a pooled connection; rolls back (and rethrows) if it
   * throws. Publish with the client it receives so events commit with your data.
   *
   * The connection may die at any moment (terminated by an admin, by
   * `idle_in_transaction_session_timeout`, by a failover, or a silent network): the call then
   * rejects, the connection is discarded, and nothing crashes. A COMMIT that fails that way has
   * an unknown outcome, as with any database; an `Idempotency-Key` or an event `key` makes the
   * retry safe.
   */
  async transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const effects = idempotentEffects.getStore();
    return effects ? this.exactlyOnce(effects, fn) : this.run(fn);
  }

  private async run<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.postgres.connect();
    let broken: Error | undefined;
    try {
      await client.query(this.postgres.bounded('BEGIN'));
      const result = await fn(client);
      await client.query(this.postgres.bounded('COMMIT'));
      return result;
    } catch (error) {
      try {
        await client.query(this.postgres.bounded('ROLLBACK'));
      } catch (rollbackError) {
        // A connection that cannot roll back must not go back to the pool.
        broken = rollbackError as Error;
      }
      throw error;
    } finally {
      client.release(broken);
    }
  }

  /**
   * Inside an `@Idempotent()` request: the transaction first claims its row (scope, key, n-th
   * transaction of the request) and commits `fn`'s result with it. A row already committed means
   * this request ran before and its effects are in: `fn` does not run again, the transaction is
   * rolled back and the recorded result returned. A concurrent execution's claim makes this one
   * wait on the row's unique index until that one ends, so two can never both commit. The result
   * goes through JSON both times, so the handler sees the same value on a retry as the first time.
   */
  private async exactlyOnce<T>(
    effects: IdempotentEffects,
    fn: (client: PoolClient) => Promise<T>,
  ): Promise<T> {
    const seq = effects.transactions++;
    const id = [effects.scope, effects.key, seq];
    const sql = this.sql;
    try {
      return await this.run(async (client) => {
        const q = (text: string, values: unknown[]) =>
          client.query(this.postgres.bounded(text, values));
        const claimed = await q(sql.effectsClaim, [...id, effects.fingerprint, effects.ttlMs]);
        if (claimed.rowCount === 0) {
          const { rows } = await q(sql.effectsFind, id);
          throw new RecordedOutcome(rows[0]);
        }
        const result = await fn(client);
        const json = resultJson(result);
        await q(sql.effectsRecord, [...id, json]);
        return (JSON.parse(json) as { v: T }).v;
      });
    } catch (error) {
      if ((error as { code?: string }).code === '42P01') {
        // undefined_table: migrations run by the team (outbox.migrate: false) predate it.
        throw new Error(
          `nestjs-durable-sse: ${(error as Error).message}. Inside @Idempotent() requests ` +
            "outbox.transaction() records its result in the outbox's _effects table: apply " +
            'docs/outbox-schema.sql (or let the module migrate).',
        );
      }
      if (!(error instanceof RecordedOutcome)) throw error;
      const row = error.row;
      if (!row) throw new Error('the recorded outcome of this request vanished; retry it');
      if (row.fingerprint !== effects.fingerprint) {
        throw new IdempotencyProblem(
          'key-reused',
          'This idempotency key was already used for a different request (method, URL or body).',
        );
      }
      this.stats.recordedOutcomesReturned++;
      return (JSON.parse(row.result) as { v: T }).v;
    }
  }

  /**
   * Stores events in the transaction `client` is in (one multi-row INSERT). Returns the event
   * ids of the events stored; an event whose `key` was already stored for its topic is dropped
   * and has no id. Throws `SseEventError` for an invalid event, before writing anything.
   */
  async publish(
    client: OutboxQueryable,
    events: OutboxEvent | readonly OutboxEvent[],
  ): Promise<string[]> {
    const list: readonly OutboxEvent[] = Array.isArray(events) ? events : [events as OutboxEvent];
    if (list.length === 0) return [];
    const columns = {
      topics: [] as string[],
      types: [] as (string | null)[],
      payloads: [] as string[],
      keys: [] as (string | null)[],
    };
    for (const event of list) {
      validate(event);
      const payload = JSON.stringify(event.data);
      if (payload === undefined) {
        throw new SseEventError(
          'outbox event data must be JSON-serializable (got undefined or a function)',
        );
      }
      columns.topics.push(event.topic);
      columns.types.push(event.type ?? null);
      columns.payloads.push(payload);
      columns.keys.push(event.key ?? null);
    }
    const result = await client.query(this.sql.insert, [
      columns.topics,
      columns.types,
      columns.payloads,
      columns.keys,
    ]);
    // RETURNING promises no order; ids are reported in delivery order.
    return result.rows.map(positionOf).sort(comparePositions).map(formatEventId);
  }
}

function validate(event: OutboxEvent): void {
  if (event === null || typeof event !== 'object')
    throw new SseEventError('outbox event must be an object');
  assertTopic(event.topic);
  if (event.type !== undefined) assertSafeField('type', event.type);
  if (
    event.key !== undefined &&
    (typeof event.key !== 'string' || event.key.length === 0 || event.key.length > MAX_KEY_LENGTH)
  ) {
    throw new SseEventError(`outbox event key must be a string of 1..${MAX_KEY_LENGTH} characters`);
  }
}

/** Thrown inside the transaction to roll it back when the request's outcome is already committed. */
class RecordedOutcome {
  constructor(readonly row: { fingerprint: string; result: string } | undefined) {}
}

function resultJson(result: unknown): string {
  try {
    return JSON.stringify({ v: result });
  } catch (error) {
    throw new TypeError(
      'outbox.transaction() inside an @Idempotent() request must return a JSON-serializable ' +
        `result: it is committed with the effects and returned to a retry (${(error as Error).message})`,
    );
  }
}
