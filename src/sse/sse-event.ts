/**
 * One Server-Sent Event as handlers and publishers describe it. Structurally compatible with
 * Nest's `MessageEvent`, so existing handlers keep compiling.
 */
export interface SseEvent<T = unknown> {
  /** Payload. Strings are sent as-is; anything else goes through the `SSE_EVENT_SERIALIZER`. */
  data: T;
  /** Event id (`id:` field). Opaque to the client; becomes its `Last-Event-ID` on reconnect. */
  id?: string;
  /** Event type (`event:` field). Browsers dispatch it to `addEventListener(type)`. */
  type?: string;
  /** Reconnection time in ms (`retry:` field) the client should use from now on. */
  retry?: number;
}

/** Handlers emit Nest-style `MessageEvent`s; a bare value is taken as the event's data. */
export function toSseEvent(value: unknown): SseEvent {
  if (value !== null && typeof value === 'object' && 'data' in value) return value as SseEvent;
  return { data: value };
}

/** Raised when an event cannot be framed safely (CR, LF or NUL in `id`/`type`, bad `retry`). */
export class SseEventError extends TypeError {
  override readonly name = 'SseEventError';
}
