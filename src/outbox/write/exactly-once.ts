import { escapeLiteral } from 'pg';
import { IdempotencyProblem } from '../../idempotency/idempotency-problem';
import type { IdempotentEffects } from '../../idempotency/idempotent-effects';
import { annotateActive, SSE_TRACE_ATTRIBUTES } from '../../observability/tracing';
import type { OutboxSql } from '../store/outbox.sql';
import type { OutboxQueryable } from './orm-transactions';

/** One transaction of an `@Idempotent()` request: its scope, its key, its n-th transaction. */
export type RecordId = [scope: string, key: string, seq: number];

/** A record as the table holds it. */
export interface RecordedRow {
  fingerprint: string;
  result: string;
  /** Past the idempotency TTL: no longer an answer, a new execution may run. */
  expired?: boolean;
}

/**
 * The exactly-once record of `@Idempotent()` requests (DESIGN §11): each `outbox.transaction()`
 * of such a request commits its result in `<table>_effects`, with its effects, so a retry that
 * Redis no longer knows gets that result and does not run the work again.
 *
 * Cheap on purpose: one read before the work (sent with BEGIN on the module's own pool) and one
 * write, at commit (sent with COMMIT). No claim is written first: Redis's lease already keeps a
 * request's executions apart, and where Redis lost it, two executions may both run, but at
 * commit the second meets the first's record (the primary key; it waits for that transaction to
 * end) and rolls back, answering with the first's result. So two can never both commit.
 */
export class ExactlyOnceRecords {
  constructor(
    private readonly sql: OutboxSql,
    /** The effects table's name as PostgreSQL reports it in errors (unquoted, no schema). */
    private readonly table: string,
    private readonly schema: string,
    private readonly stats: { recordedOutcomesReturned: number },
  ) {}

  /** The id of the request's next transaction. */
  next(effects: IdempotentEffects): RecordId {
    return [effects.scope, effects.key, effects.transactions++];
  }

  /** Before the work: the outcome already committed for `id`, when it still counts. */
  async lookup(q: OutboxQueryable, id: RecordId): Promise<RecordedRow | undefined> {
    const { rows } = await q.query(this.sql.effectsFind, id);
    return this.current(q, id, rows[0] as RecordedRow | undefined);
  }

  /** `found` (the lookup's row) when it still counts; an expired one is deleted in this transaction. */
  async current(
    q: OutboxQueryable,
    id: RecordId,
    found: RecordedRow | undefined,
  ): Promise<RecordedRow | undefined> {
    if (!found) return undefined;
    if (!found.expired) return found;
    await q.query(this.sql.effectsForget, id);
    return undefined;
  }

  /**
   * After the work, in its transaction: records `json` unless a concurrent execution of the
   * request committed its record first; then that record is returned, and this transaction must
   * roll back.
   */
  async record(
    q: OutboxQueryable,
    id: RecordId,
    effects: IdempotentEffects,
    json: string,
  ): Promise<RecordedRow | undefined> {
    const { rows } = await q.query(
      this.sql.effectsRecordUnlessTaken,
      this.recordValues(id, effects, json),
    );
    return rows.length > 0 ? undefined : this.find(q, id);
  }

  /** The lookup as one literal statement, to travel with BEGIN in one simple query. */
  lookupStatement(id: RecordId): string {
    return withLiterals(this.sql.effectsFind, id);
  }

  /** The record as one literal statement, to travel with COMMIT; fails when the record is taken. */
  recordStatement(id: RecordId, effects: IdempotentEffects, json: string): string {
    return withLiterals(this.sql.effectsRecord, this.recordValues(id, effects, json));
  }

  /** Whether `error` is the record meeting one a concurrent execution committed first. */
  isTaken(error: unknown): boolean {
    const { code, table, schema } = error as { code?: string; table?: string; schema?: string };
    return code === '23505' && table === this.table && (schema ?? this.schema) === this.schema;
  }

  /** The record of `id`, which is known to be committed. */
  async find(q: OutboxQueryable, id: RecordId): Promise<RecordedRow> {
    const { rows } = await q.query(this.sql.effectsFind, id);
    if (!rows[0]) throw new Error('the recorded outcome of this request vanished; retry it');
    return rows[0] as RecordedRow;
  }

  /** What the retry returns: the first execution's result (422 when it was another request's). */
  recorded<T>(row: RecordedRow, effects: IdempotentEffects): T {
    if (row.fingerprint !== effects.fingerprint) {
      throw new IdempotencyProblem(
        'key-reused',
        'This idempotency key was already used for a different request (method, URL or body).',
      );
    }
    this.stats.recordedOutcomesReturned++;
    annotateActive({ [SSE_TRACE_ATTRIBUTES.recordedResult]: true });
    return parseResult<T>(row.result);
  }

  private recordValues(id: RecordId, effects: IdempotentEffects, json: string): unknown[] {
    return [...id, effects.fingerprint, json, effects.ttlMs];
  }
}

/**
 * The transaction's result as it is recorded: through JSON, so the handler sees the same value
 * the first time as on a retry. Non-JSON results are refused at once.
 */
export function resultJson(result: unknown): string {
  try {
    return JSON.stringify({ v: result });
  } catch (error) {
    throw new TypeError(
      'outbox.transaction() inside an @Idempotent() request must return a JSON-serializable ' +
        `result: it is committed with the effects and returned to a retry (${(error as Error).message})`,
    );
  }
}

export function parseResult<T>(json: string): T {
  return (JSON.parse(json) as { v: T }).v;
}

/**
 * `text` with each `$n` replaced by `values[n-1]` as a literal: strings escaped by pg's own
 * `escapeLiteral` (quotes doubled, backslashes as E''), numbers only when finite. The simple
 * query protocol, which carries several statements in one round trip, takes no parameters.
 */
function withLiterals(text: string, values: readonly unknown[]): string {
  return text.replace(/\$(\d+)/g, (_, n: string) => {
    const value = values[Number(n) - 1];
    if (typeof value === 'number' && Number.isFinite(value)) return String(value);
    if (typeof value === 'string') return escapeLiteral(value);
    throw new TypeError(`cannot write ${typeof value} as a literal`);
  });
}
