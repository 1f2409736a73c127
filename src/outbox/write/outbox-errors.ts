import { explainSchemaError } from '../store/outbox.sql';

/**
 * A database error from a transaction or publish, said in the module's words where the cause is
 * a known mistake (a schema that predates a table or column, a client given without BEGIN);
 * any other error as it is. `library`: what the caller passed, when it was an open transaction.
 */
export function explainOutboxError(error: unknown, library?: string): unknown {
  const code = (error as { code?: string }).code;
  if (code === '42P01') {
    // undefined_table: migrations run by the team (outbox.migrate: false) predate it.
    return new Error(
      `nestjs-durable-sse: ${(error as Error).message}. Inside @Idempotent() requests ` +
        "outbox.transaction() records its result in the outbox's _effects table: apply " +
        'docs/outbox-schema.sql (or let the module migrate).',
    );
  }
  if (code === '42703' && /trace_context/.test((error as Error).message)) {
    // undefined_column: a table migrated by the team before the column was added.
    return new Error(`nestjs-durable-sse: ${explainSchemaError(error as Error)}`);
  }
  if (code === '25P01' && library) {
    // no_active_sql_transaction: a pg client without BEGIN.
    return new TypeError(
      `outbox.transaction(source, fn): the ${library} given is not in a transaction ` +
        '(run BEGIN first, or pass what begins one: a Pool, a DataSource, a database…).',
    );
  }
  return error;
}
