import { Injectable } from '@nestjs/common';

/** Turns an event's `data` into the text that goes on the `data:` lines. */
export interface SseEventSerializer {
  serialize(data: unknown): string;
}

/** Injection token for the event serializer. Default: {@link JsonSseEventSerializer}. */
export const SSE_EVENT_SERIALIZER = Symbol('SSE_EVENT_SERIALIZER');

/** Strings pass through unchanged (as with Nest's built-in `@Sse`); everything else is JSON. */
@Injectable()
export class JsonSseEventSerializer implements SseEventSerializer {
  serialize(data: unknown): string {
    if (typeof data === 'string') return data;
    const json = JSON.stringify(data);
    // JSON.stringify(undefined) is undefined; a data line must still be present or the
    // browser drops the event.
    return json === undefined ? '' : json;
  }
}
