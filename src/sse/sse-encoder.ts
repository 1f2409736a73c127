import { SseEvent, SseEventError } from './sse-event';

/**
 * Wire encoding per WHATWG HTML § "Server-sent events". Pure functions: the hub encodes an event
 * once and writes the same bytes to every subscriber.
 */

// A CR, LF or NUL inside `id` or `event` would end the field early and let the rest of the value
// be parsed as new fields (frame injection); NUL also makes browsers ignore an `id` entirely.
const UNSAFE_FIELD = /[\r\n\0]/;
const LINE_BREAK = /\r\n|\r|\n/;

export const SSE_HEARTBEAT = ':\n\n';

export function assertSafeField(name: 'id' | 'type', value: unknown): asserts value is string {
  if (typeof value !== 'string') {
    throw new SseEventError(`SSE event ${name} must be a string, got ${typeof value}`);
  }
  if (UNSAFE_FIELD.test(value)) {
    throw new SseEventError(
      `SSE event ${name} must not contain CR, LF or NUL: ${JSON.stringify(value)}`,
    );
  }
}

export function assertRetry(value: unknown): asserts value is number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new SseEventError(`SSE event retry must be a non-negative integer, got ${String(value)}`);
  }
}

/**
 * Frames one event. `data` is the already-serialized payload: each of its lines becomes one
 * `data:` line, so the client reassembles it with `\n` joins.
 */
export function encodeEvent(event: {
  data: string;
  id?: string;
  type?: string;
  retry?: number;
}): string {
  let frame = '';
  if (event.id !== undefined) {
    assertSafeField('id', event.id);
    frame += `id: ${event.id}\n`;
  }
  if (event.type !== undefined) {
    assertSafeField('type', event.type);
    frame += `event: ${event.type}\n`;
  }
  if (event.retry !== undefined) {
    assertRetry(event.retry);
    frame += `retry: ${event.retry}\n`;
  }
  for (const line of event.data.split(LINE_BREAK)) {
    frame += `data: ${line}\n`;
  }
  return frame + '\n';
}

/** The `retry:` preamble sent once when a stream opens. */
export function encodeRetry(retryMs: number): string {
  assertRetry(retryMs);
  return `retry: ${retryMs}\n\n`;
}

/** A comment line; clients ignore it, proxies see traffic. */
export function encodeComment(text: string): string {
  return text
    .split(LINE_BREAK)
    .map((line) => `: ${line}\n`)
    .join('')
    .concat('\n');
}

/** Validates an event's fields without encoding it, so publishers fail fast on bad input. */
export function assertSseEvent(event: SseEvent): void {
  if (event === null || typeof event !== 'object') {
    throw new SseEventError('SSE event must be an object with a `data` field');
  }
  if (event.id !== undefined) assertSafeField('id', event.id);
  if (event.type !== undefined) assertSafeField('type', event.type);
  if (event.retry !== undefined) assertRetry(event.retry);
}

/** Tells a client it missed events that cannot be replayed: it must resync its state. */
export function resetFrame(reason: string, lastEventId: string): string {
  return encodeEvent({ type: 'reset', data: JSON.stringify({ reason, lastEventId }) });
}
