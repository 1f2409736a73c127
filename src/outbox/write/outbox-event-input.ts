import { assertSafeField } from '../../sse/sse-encoder';
import { SseEventError } from '../../sse/sse-event';
import { assertTopic } from '../../sse/sse-hub';

/** An event to store in the outbox. */
export interface OutboxEvent {
  topic: string;
  /** Event type (`event:` on the wire); omit for plain `message` events. */
  type?: string;
  /** JSON-serializable payload. */
  data: unknown;
  /** Deduplicates per topic: an event whose key was already stored for the topic is dropped. */
  key?: string;
}

const MAX_KEY_LENGTH = 512;

/** The events of one `publish()` as the columns of its one multi-row INSERT. */
export interface OutboxColumns {
  topics: string[];
  types: (string | null)[];
  payloads: string[];
  keys: (string | null)[];
}

/**
 * JSON.stringify writes U+0000 as `\u0000` and a lone surrogate as `\udXXX` (well-formed JSON),
 * escapes PostgreSQL's jsonb refuses — counted only where the backslash is not itself escaped.
 */
const REFUSED_BY_JSONB = /(?<!\\)(?:\\\\)*\\u(?:0000|d[89a-f][0-9a-f]{2})/i;
const NUL = /\0/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Checks every event and encodes them for the INSERT, so that what PostgreSQL would refuse (or
 * store other than given) fails here with an {@link SseEventError}, before anything is written
 * and before the caller's transaction is spoiled by a failed statement.
 */
export function outboxColumns(events: readonly OutboxEvent[]): OutboxColumns {
  const columns: OutboxColumns = { topics: [], types: [], payloads: [], keys: [] };
  for (const event of events) {
    validate(event);
    columns.topics.push(event.topic);
    columns.types.push(event.type ?? null);
    columns.payloads.push(payloadOf(event.data));
    columns.keys.push(event.key ?? null);
  }
  return columns;
}

function validate(event: OutboxEvent): void {
  if (event === null || typeof event !== 'object')
    throw new SseEventError('outbox event must be an object');
  assertTopic(event.topic);
  storable('topic', event.topic);
  if (event.type !== undefined) assertSafeField('type', event.type);
  if (
    event.key !== undefined &&
    (typeof event.key !== 'string' || event.key.length === 0 || event.key.length > MAX_KEY_LENGTH)
  ) {
    throw new SseEventError(`outbox event key must be a string of 1..${MAX_KEY_LENGTH} characters`);
  }
  if (event.key !== undefined) storable('key', event.key);
}

/**
 * Text columns refuse NUL, and a lone surrogate (half of a UTF-16 pair) reaches them as U+FFFD:
 * a topic stored so would never match the topic its subscribers asked for.
 */
function storable(field: 'topic' | 'key', value: string): void {
  if (NUL.test(value) || LONE_SURROGATE.test(value)) {
    throw new SseEventError(
      `outbox event ${field} must not contain NUL or a lone surrogate: ${JSON.stringify(value)}`,
    );
  }
}

function payloadOf(data: unknown): string {
  let payload: string | undefined;
  try {
    payload = JSON.stringify(data);
  } catch (error) {
    throw new SseEventError(
      `outbox event data must be JSON-serializable: ${(error as Error).message}`,
    );
  }
  if (payload === undefined) {
    throw new SseEventError(
      'outbox event data must be JSON-serializable (got undefined or a function)',
    );
  }
  if (REFUSED_BY_JSONB.test(payload)) {
    throw new SseEventError(
      'outbox event data must not contain U+0000 or a lone surrogate in any string: ' +
        'PostgreSQL jsonb cannot store them',
    );
  }
  return payload;
}
