/**
 * Where an event sits in the outbox's commit-safe order: the writing transaction's
 * `pg_current_xact_id()` first, then the row's identity id. Every instance and every replay sees
 * the events of a topic in this order, and it is what event ids encode.
 */
export interface OutboxPosition {
  txId: bigint;
  id: bigint;
}

const EVENT_ID = /^(\d{1,20})-(\d{1,20})$/;
/** `tx_id` is an xid8 (unsigned 64-bit); `id` a bigint (signed 64-bit). */
const MAX_TX_ID = (1n << 64n) - 1n;
const MAX_ID = (1n << 63n) - 1n;

/** The event id sent as `id:`: `<txId>-<id>` in decimal. Opaque to clients. */
export function formatEventId(position: OutboxPosition): string {
  return `${position.txId}-${position.id}`;
}

/**
 * Parses an event id; undefined for anything that is not one (a client's `Last-Event-ID`),
 * including numbers outside the columns' ranges, so client input never reaches a query it
 * would fail.
 */
export function parseEventId(value: string): OutboxPosition | undefined {
  const match = EVENT_ID.exec(value);
  if (!match) return undefined;
  const txId = BigInt(match[1]);
  const id = BigInt(match[2]);
  if (txId > MAX_TX_ID || id > MAX_ID) return undefined;
  return { txId, id };
}

export function comparePositions(a: OutboxPosition, b: OutboxPosition): number {
  if (a.txId !== b.txId) return a.txId < b.txId ? -1 : 1;
  if (a.id !== b.id) return a.id < b.id ? -1 : 1;
  return 0;
}

/** From the text columns `tx_id::text, id::text` of a row. */
export function positionOf(row: { tx_id: string; id: string }): OutboxPosition {
  return { txId: BigInt(row.tx_id), id: BigInt(row.id) };
}

/**
 * A position taken from a PostgreSQL snapshot (`OutboxService.position()`): what a page's state
 * read in that snapshot already reflects. Not one point in the event order — transactions still
 * open when the snapshot was taken may commit later with lower ids than events it saw — so it is
 * a point (`after`: every event of a transaction that ended before the snapshot's xmin) and,
 * past it, the transactions the snapshot could not see (`xmax` and above, and those in `xip`).
 */
export interface SnapshotPosition {
  after: OutboxPosition;
  xmax: bigint;
  xip: ReadonlySet<bigint>;
}

/** PostgreSQL's `pg_snapshot` text, `xmin:xmax:xip,…`; a page may hold a few hundred in flight. */
const SNAPSHOT = /^(\d{1,20}):(\d{1,20}):((?:\d{1,20})(?:,\d{1,20}){0,1023})?$/;

/** Parses a snapshot position (a client's `Last-Event-ID`); undefined for anything else. */
export function parseSnapshotPosition(value: string): SnapshotPosition | undefined {
  const match = SNAPSHOT.exec(value);
  if (!match) return undefined;
  const xmin = BigInt(match[1]);
  const xmax = BigInt(match[2]);
  const xip = new Set((match[3] ? match[3].split(',') : []).map(BigInt));
  if (xmin < 1n || xmin > xmax || xmax > MAX_TX_ID) return undefined;
  for (const tx of xip) if (tx < xmin || tx >= xmax) return undefined;
  return { after: { txId: xmin - 1n, id: MAX_ID }, xmax, xip };
}

/** Whether an event after `snapshot.after` is one the snapshot did not see (so the page lacks it). */
export function unseenBySnapshot(snapshot: SnapshotPosition, position: OutboxPosition): boolean {
  return position.txId >= snapshot.xmax || snapshot.xip.has(position.txId);
}
