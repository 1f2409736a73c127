import type { Cluster, Redis } from 'ioredis';
import type { OutboxEvent } from '../../outbox-event';
import { formatEventId, OutboxPosition, parseEventId } from '../../outbox-position';

/**
 * The Redis Stream every instance follows with `fanout: 'redis'`. One stream for all topics, so
 * instances see one order; the hash tag keeps it (and anything added next to it) on one slot of
 * a Redis Cluster. The client's `keyPrefix` (`redis.keyPrefix`) comes in front.
 */
export function outboxStreamKey(schema: string, table: string): string {
  return `outbox:{${schema}.${table}}:events`;
}

/**
 * Appends one batch read from the table, in order, if — and only if — the stream's last entry
 * is the position the batch follows (`ARGV[1]`), or the stream is empty or gone (a flushed or
 * restarted Redis). Otherwise nothing is written and the stream's last id is returned: an
 * instance that lost the lead without knowing it, or a new leader that read from an older place,
 * resynchronises from there instead of writing a duplicate or leaving a gap.
 *
 * Entry ids are event positions (`<tx_id>-<id>`, the SSE event ids); fields: `t` topic, `f` the
 * framed SSE message, `p` the id of the event before it in commit-safe order, and `c` the
 * publisher's trace context when it had one. A follower that sees `p` differ from the last event
 * it delivered knows what it missed is in the table only. Fields it does not know are ignored,
 * so instances of different versions can share a stream.
 *
 * ARGV: [1] previous position, [2] MAXLEN (approximate), then (id, topic, frame, trace context
 * or '') per event.
 */
export const APPEND_SCRIPT = `
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
if top then
  if top[1] ~= ARGV[1] then return top[1] end
elseif redis.call('EXISTS', KEYS[1]) == 1 then
  -- an empty stream remembers its last id and would refuse lower ones; it holds nothing to keep
  redis.call('DEL', KEYS[1])
end
local prev = ARGV[1]
for i = 3, #ARGV, 4 do
  if ARGV[i + 3] == '' then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[i], 't', ARGV[i + 1], 'f', ARGV[i + 2], 'p', prev)
  else
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], ARGV[i], 't', ARGV[i + 1], 'f', ARGV[i + 2], 'p', prev, 'c', ARGV[i + 3])
  end
  prev = ARGV[i]
end
return 1
`;

export type StreamClient = (Redis | Cluster) & {
  sseOutboxAppend(key: string, ...args: Array<string | number>): Promise<1 | string>;
};

/** Registers the append script on `client` (once per client). */
export function withAppendScript(client: Redis | Cluster): StreamClient {
  const scripts = client as StreamClient;
  if (typeof scripts.sseOutboxAppend !== 'function') {
    client.defineCommand('sseOutboxAppend', { numberOfKeys: 1, lua: APPEND_SCRIPT });
  }
  return scripts;
}

/** The script's arguments for `events`, which follow `after`. */
export function appendArguments(
  after: OutboxPosition,
  maxLength: number,
  events: OutboxEvent[],
): Array<string | number> {
  const args: Array<string | number> = [formatEventId(after), maxLength];
  for (const event of events)
    args.push(formatEventId(event.position), event.topic, event.frame, event.traceContext ?? '');
  return args;
}

/** One stream entry, as a follower reads it. */
export interface StreamEntry extends OutboxEvent {
  /** The event before this one in commit-safe order. */
  previous: OutboxPosition;
}

/** Parses `[id, [field, value, …]]` as XREAD and XRANGE return it; undefined if it is not ours. */
export function parseEntry([id, fields]: [string, string[]]): StreamEntry | undefined {
  const position = parseEventId(id);
  let topic: string | undefined;
  let frame: string | undefined;
  let previous: OutboxPosition | undefined;
  let traceContext: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const value = fields[i + 1];
    if (fields[i] === 't') topic = value;
    else if (fields[i] === 'f') frame = value;
    else if (fields[i] === 'p') previous = parseEventId(value);
    else if (fields[i] === 'c') traceContext = value;
  }
  if (!position || topic === undefined || frame === undefined || !previous) return undefined;
  const entry: StreamEntry = { position, topic, frame, previous };
  if (traceContext) entry.traceContext = traceContext;
  return entry;
}
