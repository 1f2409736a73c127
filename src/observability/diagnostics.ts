import { channel, Channel } from 'node:diagnostics_channel';

/**
 * `node:diagnostics_channel` events for the moments an on-call engineer asks about, each
 * documented in docs/observability.md with its payload. Nothing is built or sent while a
 * channel has no subscriber: hot paths test `hasSubscribers` inline, the others pass a payload
 * function to {@link diagnose}.
 *
 * ```ts
 * import { subscribe } from 'node:diagnostics_channel';
 * subscribe('nestjs-durable-sse:idempotency', (message) => log(message));
 * ```
 */
export const SSE_DIAGNOSTICS = Object.freeze({
  /** Events stored by `outbox.publish()`: `{ topics: string[], ids: string[] }`. */
  outboxPublish: channel('nestjs-durable-sse:outbox:publish'),
  /** A relay batch handed to this instance's streams: `{ events, topics: { [topic]: subscribers } }`. */
  outboxDeliver: channel('nestjs-durable-sse:outbox:deliver'),
  /** The outcome of an `@Idempotent()` request: `{ outcome, route }`. */
  idempotency: channel('nestjs-durable-sse:idempotency'),
  /** A stream opened: `{ clientKey }`. */
  streamOpen: channel('nestjs-durable-sse:stream:open'),
  /** A stream resumed from a `Last-Event-ID`: `{ lastEventId, events, from }`. */
  streamReplay: channel('nestjs-durable-sse:stream:replay'),
  /** A stream sent `event: reset`: `{ reason, lastEventId }`. */
  streamReset: channel('nestjs-durable-sse:stream:reset'),
  /** A stream closed: `{ clientKey, reason }` (`slow-consumer` for a cut client). */
  streamClose: channel('nestjs-durable-sse:stream:close'),
  /** A job started (`{ id }`) … */
  jobStart: channel('nestjs-durable-sse:job:start'),
  /** … and ended: `{ id, end: 'done' | 'error', reason?, events }`. */
  jobEnd: channel('nestjs-durable-sse:job:end'),
});

/** Publishes `payload()` on `target` when anyone listens (the payload is not built otherwise). */
export function diagnose(target: Channel, payload: () => object): void {
  if (target.hasSubscribers) target.publish(payload());
}
