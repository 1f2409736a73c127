import type { OutboxPosition } from './outbox-position';

/** An outbox row as the relay reads it (positions as text: xid8 and bigint exceed JS numbers). */
export interface OutboxRow {
  tx_id: string;
  id: string;
  topic: string;
  type: string | null;
  payload: unknown;
  /** The publisher's trace context (see observability/tracing.ts), when it had one. */
  trace_context?: string | null;
}

/** An event ready for delivery: framed once, by whichever instance read it from the table. */
export interface OutboxEvent {
  topic: string;
  position: OutboxPosition;
  /** The complete SSE message (`id:`, `event:`, `data:` lines and the blank line). */
  frame: string;
  /** The publisher's trace context, carried to the delivery span. */
  traceContext?: string;
}

/** A relay's next read: its events, and whether committed events after them are held back. */
export interface OutboxBatch {
  events: OutboxEvent[];
  /**
   * Committed events wait behind an older transaction still open (anywhere on the server). Its
   * end wakes nobody, so the reader reads again soon ({@link HeldBackRetry}).
   */
  heldBack: boolean;
}
