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
