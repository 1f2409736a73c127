import { Injectable, Optional } from '@nestjs/common';
import type { PoolClient, QueryResult } from 'pg';
import { diagnose, SSE_DIAGNOSTICS } from '../../observability/diagnostics';
import { startPublish } from '../../observability/tracing';
import { comparePositions, formatEventId, positionOf } from '../outbox-position';
import type { OutboxSql } from '../store/outbox.sql';
import { explainOutboxError } from './outbox-errors';
import { OutboxStore } from '../store/outbox-store';
import { PostgresConnection } from '../../connections/postgres-connection';
import { OutboxWakeup } from './outbox-wakeup';
import { readSnapshotPosition } from './snapshot-position';
import { OutboxEvent, outboxColumns } from './outbox-event-input';
import { ExactlyOnceRecords, parseResult, RecordedRow, resultJson } from './exactly-once';
import { AsyncLocalStorage } from 'node:async_hooks';
import { idempotentEffects, IdempotentEffects } from '../../idempotency/idempotent-effects';
import {
  ormTransaction,
  type OrmTransaction,
  type OutboxQueryable,
  type TransactionOf,
} from './orm-transactions';

export type { OutboxEvent, OutboxQueryable, TransactionOf };

/**
 * A transaction the module runs (and so commits): what `publish()` may be given for it, and
 * whether it published. After its COMMIT, one wake-up; `publish()` into anything else is watched.
 */
interface OwnTransaction {
  handles: Set<unknown>;
  published: boolean;
}

/** Writes events in the caller's transaction; the relay delivers them once committed. */
@Injectable()
export class OutboxService {
  /** `schema.table`, as spans name it (`db.collection.name`). */
  private readonly collection: string;
  /** Savepoint names: unique in the process, so nested calls never release each other's. */
  private savepoints = 0;
  private readonly own = new AsyncLocalStorage<OwnTransaction>();
  private readonly records: ExactlyOnceRecords;
  readonly stats = {
    /** Transactions of @Idempotent() requests not run again: their committed result was returned. */
    recordedOutcomesReturned: 0,
  };

  constructor(
    private readonly postgres: PostgresConnection,
    private readonly store: OutboxStore,
    @Optional() private readonly wakeup?: OutboxWakeup,
  ) {
    this.collection = `${store.schema}.${store.table}`;
    this.records = new ExactlyOnceRecords(
      store.sql,
      `${store.table}_effects`,
      store.schema,
      this.stats,
    );
  }

  /** The outbox's SQL (outbox.sql.ts), named for this module's schema, table and channel. */
  get sql(): OutboxSql {
    return this.store.sql;
  }

  /**
   * Creates the outbox schema objects if missing (the module does this at start unless
   * `outbox.migrate` is false). Idempotent and safe to run concurrently.
   */
  migrate(): Promise<void> {
    return this.store.migrate();
  }

  /**
   * Runs `fn` inside BEGIN … COMMIT on a pooled connection; rolls back (and rethrows) if it
   * throws. Publish with the client it receives so events commit with your data.
   *
   * `transaction(source, fn)` runs `fn` in a transaction of your own library instead: a TypeORM
   * `DataSource`/`EntityManager`, a Kysely, Knex or Drizzle database, a MikroORM `EntityManager`,
   * a pg `Pool`, or `@nestjs-cls/transactional`'s `TransactionHost` begin one and hand `fn` the
   * library's transaction object; an open transaction (a pg client after BEGIN, a `QueryRunner`,
   * a Knex/Kysely/Drizzle transaction, an `EntityManager` inside one) is used as it is.
   *
   * Inside an `@Idempotent()` request the transaction also records `fn`'s result under the
   * request's key, in the same commit: a retry that Redis no longer knows gets that result back
   * and `fn` does not run again (docs/idempotency.md).
   *
   * The connection may die at any moment (terminated by an admin, by
   * `idle_in_transaction_session_timeout`, by a failover, or a silent network): the call then
   * rejects, the connection is discarded, and nothing crashes. A COMMIT that fails that way has
   * an unknown outcome, as with any database; an `Idempotency-Key` or an event `key` makes the
   * retry safe.
   */
  transaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T>;
  transaction<S extends object, T>(source: S, fn: (tx: TransactionOf<S>) => Promise<T>): Promise<T>;
  async transaction<T>(
    sourceOrFn: object | ((client: PoolClient) => Promise<T>),
    maybeFn?: (tx: any) => Promise<T>,
  ): Promise<T> {
    this.requirePostgres('transaction');
    const own = maybeFn === undefined;
    const fn = (own ? sourceOrFn : maybeFn) as (tx: any) => Promise<T>;
    if (typeof fn !== 'function') {
      throw new TypeError(
        'outbox.transaction(fn) / transaction(source, fn): fn must be a function',
      );
    }
    const effects = idempotentEffects.getStore();
    if (own) return effects ? this.exactlyOnceOwn(effects, fn) : this.run(fn);
    const tx = ormTransaction(sourceOrFn);
    if (tx.kind === 'open') return this.nested(tx, sourceOrFn, fn, effects);
    if (effects) return this.exactlyOnce(effects, tx, fn, sourceOrFn);
    const scope = this.ownScope(sourceOrFn);
    const result = await tx.begin((txObject: unknown) => {
      scope.handles.add(txObject);
      return this.own.run(scope, () => fn(txObject));
    });
    this.afterCommit(scope);
    return result;
  }

  /**
   * Where the state read in `tx` stands in the event order, as an id to open a stream with: a
   * page reads its state and this in one transaction, then streams from it
   * (`?lastEventId=<position>`) and gets exactly the events its state lacks — those committed
   * after the read, and those of transactions still open during it — none twice. `tx` is any
   * transaction `publish()` takes, at REPEATABLE READ or SERIALIZABLE, that wrote nothing
   * (docs/streams.md#load-the-state-then-stream-from-there).
   */
  async position(tx: OutboxQueryable | object): Promise<string> {
    this.requirePostgres('position');
    return readSnapshotPosition(ormTransaction(tx).queryable(), this.sql);
  }

  /**
   * Runs `fn` in a read-only REPEATABLE READ transaction on the module's pool and returns its
   * result with the position of what it read ({@link position}).
   */
  async snapshot<T>(
    fn: (client: PoolClient) => Promise<T>,
  ): Promise<{ result: T; lastEventId: string }> {
    this.requirePostgres('snapshot');
    return this.postgres.transaction(async (client) => {
      const result = await fn(client);
      return { result, lastEventId: await readSnapshotPosition(client, this.sql) };
    }, 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
  }

  /**
   * Without `postgres` no relay reads the outbox, and the caller's transaction would write the
   * events into whatever outbox table its own database has (another application's, on a shared
   * server), where nothing of this application ever reads them. Refused before anything is sent.
   */
  private requirePostgres(call: 'transaction' | 'publish' | 'position' | 'snapshot'): void {
    if (this.postgres.enabled) return;
    throw new Error(
      `nestjs-durable-sse: outbox.${call}() needs the \`postgres\` option of SseModule.forRoot() ` +
        "(the module's own connection to the database whose outbox its relays read): without " +
        "it, events would be written into whatever outbox table the caller's database has — " +
        "another application's, on a shared server — and never delivered by this one.",
    );
  }

  /** A transaction this module commits: `publish()` on any of `handles` is inside it. */
  private ownScope(...handles: unknown[]): OwnTransaction {
    return { handles: new Set(handles), published: false };
  }

  /** The module's COMMIT of `scope` returned: wake the relays if it published. */
  private afterCommit(scope: OwnTransaction): void {
    if (scope.published) this.wakeup?.committed();
  }

  private async run<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    let scope!: OwnTransaction;
    const result = await this.postgres.transaction((client) => {
      scope = this.ownScope(client);
      return this.own.run(scope, () => fn(client));
    });
    this.afterCommit(scope);
    return result;
  }

  /**
   * Inside an `@Idempotent()` request, in a transaction the module begins on the caller's
   * library: the recorded outcome is looked up first (`fn` does not run again when there is
   * one), and `fn`'s result recorded just before COMMIT (exactly-once.ts). Either way the
   * transaction of a request that ran before is rolled back and the recorded result returned.
   */
  private async exactlyOnce<T>(
    effects: IdempotentEffects,
    tx: OrmTransaction,
    fn: (tx: any) => Promise<T>,
    source: object,
  ): Promise<T> {
    const id = this.records.next(effects);
    const scope = this.ownScope(source);
    try {
      const value = await tx.begin(async (txObject) => {
        scope.handles.add(txObject);
        const q = ormTransaction(txObject).queryable();
        const recorded = await this.records.lookup(q, id);
        if (recorded) throw new RecordedOutcome(recorded);
        const json = resultJson(await this.own.run(scope, () => fn(txObject)));
        const first = await this.records.record(q, id, effects, json);
        if (first) throw new RecordedOutcome(first);
        return parseResult<T>(json);
      });
      this.afterCommit(scope);
      return value;
    } catch (error) {
      if (error instanceof RecordedOutcome) return this.records.recorded(error.row, effects);
      throw explainOutboxError(error);
    }
  }

  /**
   * `exactlyOnce` on the module's own pool, in as many round trips as the transaction without
   * the record: the lookup travels with BEGIN, the record with COMMIT (one simple query each).
   */
  private async exactlyOnceOwn<T>(
    effects: IdempotentEffects,
    fn: (client: PoolClient) => Promise<T>,
  ): Promise<T> {
    const id = this.records.next(effects);
    const client = await this.postgres.connect();
    const simple = async (...statements: string[]) => {
      const results = (await client.query(this.postgres.bounded(statements.join(';\n')))) as
        QueryResult | QueryResult[];
      // pg answers a multi-statement query with one result per statement (PGlite: the last).
      return Array.isArray(results) ? results[results.length - 1] : results;
    };
    const bounded = {
      query: (text: string, values?: unknown[]) =>
        client.query(this.postgres.bounded(text, values)),
    };
    let broken: Error | undefined;
    let open = false;
    try {
      open = true;
      const found = await simple('BEGIN', this.records.lookupStatement(id));
      const recorded = await this.records.current(bounded, id, found.rows[0]);
      if (recorded) return this.records.recorded(recorded, effects);
      const scope = this.ownScope(client);
      const json = resultJson(await this.own.run(scope, () => fn(client)));
      try {
        await simple(this.records.recordStatement(id, effects, json), 'COMMIT');
      } catch (error) {
        if (!this.records.isTaken(error)) throw error;
        // A concurrent execution of this request committed first: this one's work is undone.
        await client.query(this.postgres.bounded('ROLLBACK'));
        open = false;
        return this.records.recorded(await this.records.find(bounded, id), effects);
      }
      open = false;
      this.afterCommit(scope);
      return parseResult<T>(json);
    } catch (error) {
      throw explainOutboxError(error);
    } finally {
      if (open) {
        try {
          await client.query(this.postgres.bounded('ROLLBACK'));
        } catch (rollbackError) {
          // A connection that cannot roll back must not go back to the pool.
          broken = rollbackError as Error;
        }
      }
      client.release(broken);
    }
  }

  /**
   * In a transaction that is already open (its owner commits it), a savepoint stands for the
   * transaction: `fn`'s writes are undone when it throws, as they would be by ROLLBACK, whatever
   * the owner does next — and inside an `@Idempotent()` request, so is its record, so a retry
   * can run. Otherwise as `exactlyOnce`.
   */
  private async nested<T>(
    tx: OrmTransaction,
    txObject: unknown,
    fn: (tx: any) => Promise<T>,
    effects: IdempotentEffects | undefined,
  ): Promise<T> {
    const id = effects && this.records.next(effects);
    const q = tx.queryable();
    const savepoint = `nestjs_durable_sse_${this.savepoints++}`;
    try {
      await q.query(`SAVEPOINT ${savepoint}`, []);
    } catch (error) {
      throw explainOutboxError(error, tx.library);
    }
    try {
      let value: T;
      const recorded = id && (await this.records.lookup(q, id));
      if (recorded) value = this.records.recorded(recorded, effects!);
      else if (!id) value = await fn(txObject);
      else {
        const json = resultJson(await fn(txObject));
        const first = await this.records.record(q, id, effects!, json);
        if (first) throw new RecordedOutcome(first);
        value = parseResult<T>(json);
      }
      await q.query(`RELEASE SAVEPOINT ${savepoint}`, []);
      return value;
    } catch (error) {
      await q.query(`ROLLBACK TO SAVEPOINT ${savepoint}`, []).catch(() => undefined);
      if (error instanceof RecordedOutcome) {
        await q.query(`RELEASE SAVEPOINT ${savepoint}`, []);
        return this.records.recorded(error.row, effects!);
      }
      throw explainOutboxError(error);
    }
  }

  /**
   * Stores events in the transaction `client` is in (one multi-row INSERT). Returns the event
   * ids of the events stored; an event whose `key` was already stored for its topic is dropped
   * and has no id. Throws `SseEventError` for an invalid event, before writing anything.
   */
  async publish(
    tx: OutboxQueryable | object,
    events: OutboxEvent | readonly OutboxEvent[],
  ): Promise<string[]> {
    this.requirePostgres('publish');
    const client = ormTransaction(tx).queryable();
    const list: readonly OutboxEvent[] = Array.isArray(events) ? events : [events as OutboxEvent];
    if (list.length === 0) return [];
    const columns = outboxColumns(list);
    const trace = startPublish(columns.topics, list.length, this.collection);
    let ids: string[];
    try {
      const result = await client.query(this.sql.insert, [
        columns.topics,
        columns.types,
        columns.payloads,
        columns.keys,
        trace?.context ?? null,
      ]);
      // RETURNING promises no order; ids are reported in delivery order.
      ids = result.rows.map(positionOf).sort(comparePositions).map(formatEventId);
    } catch (error) {
      trace?.end(undefined, error);
      throw explainOutboxError(error);
    }
    trace?.end(ids);
    this.published(tx, ids);
    diagnose(SSE_DIAGNOSTICS.outboxPublish, () => ({ topics: [...new Set(columns.topics)], ids }));
    return ids;
  }

  /**
   * Events were stored through `tx`: in a transaction the module commits, it wakes the relays
   * after its COMMIT; in any other, the transaction is watched until it ends.
   */
  private published(tx: unknown, ids: string[]): void {
    if (ids.length === 0) return;
    const scope = this.own.getStore();
    if (scope?.handles.has(tx)) {
      scope.published = true;
      return;
    }
    // Event ids are `<tx_id>-<id>`: one transaction, unless the caller batched several.
    this.wakeup?.watch(new Set(ids.map((id) => id.slice(0, id.indexOf('-')))));
  }
}

/** Thrown inside the transaction to roll it back when the request's outcome is already committed. */
class RecordedOutcome {
  constructor(readonly row: RecordedRow) {}
}
