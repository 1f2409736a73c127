import type { OutboxQueryable } from './orm-transactions';
import type { OutboxSql } from '../store/outbox.sql';

/** Thrown by `OutboxService.position()` where the position would not be the state's. */
export class OutboxPositionError extends Error {
  override readonly name = 'OutboxPositionError';
}

/**
 * The position of the state a transaction reads: its snapshot, as an id a stream resumes from
 * (`?lastEventId=` or `Last-Event-ID`). Refused where it would not be the state's: under READ
 * COMMITTED every statement takes a snapshot of its own (the state's read and this one would
 * differ), and in a transaction that wrote (its own events are in its state but not in its
 * snapshot's past).
 */
export async function readSnapshotPosition(
  client: OutboxQueryable,
  sql: OutboxSql,
): Promise<string> {
  const { rows } = await client.query(sql.snapshot, []);
  const {
    snapshot,
    isolation,
    own_tx: ownTx,
  } = rows[0] as {
    snapshot: string;
    isolation: string;
    own_tx: string | null;
  };
  if (isolation !== 'repeatable read' && isolation !== 'serializable') {
    throw new OutboxPositionError(
      `outbox.position() needs a REPEATABLE READ (or SERIALIZABLE) transaction, so that the ` +
        `state read in it and the position share one snapshot; this one is ${isolation} ` +
        `(BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY, or use outbox.snapshot(fn))`,
    );
  }
  if (ownTx !== null) {
    throw new OutboxPositionError(
      'outbox.position() must run in a transaction that has written nothing: read the state ' +
        'and the position in a read-only transaction of their own',
    );
  }
  return snapshot;
}
