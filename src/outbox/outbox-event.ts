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
