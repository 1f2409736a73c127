import type { IncomingHttpHeaders } from 'node:http';
import type { SseRejectMode } from '../config/sse-module-options';

export type SseTopics = string | readonly string[];

/**
 * The request as the HTTP platform hands it to handlers: Express' `req` or Fastify's
 * `FastifyRequest`. Both have `headers`, `params`, `query`, `ip` and whatever guards set (`user`).
 */
export interface SseRequest {
  headers: IncomingHttpHeaders;
  /** Route parameters (`:id` → `params.id`). */
  params: Record<string, string>;
  query: Record<string, unknown>;
  /** Whatever the platform and your guards set: `ip`, `url`, `user`, … */
  [key: string]: any;
  [key: symbol]: unknown;
}

/** Options of `@Sse(path, options)`. */
export interface SseRouteOptions {
  /**
   * Serve this stream from the topic hub: a topic, a list, or a function of the request (it runs
   * after guards, so it can use `req.user` and `req.params`). Without `topic`, the handler must
   * return an `Observable` of events.
   */
  topic?: SseTopics | ((request: SseRequest) => SseTopics | Promise<SseTopics>);
  /** Overrides `sse.rejectMode` for this route. */
  rejectMode?: SseRejectMode;
  /**
   * The HTTP method of the route. Default `GET` (what `EventSource` sends); `POST` for streams
   * started with a body (read with `fetch`), as Nest's own `@Sse` allows.
   */
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH';
}

export const SSE_ROUTE_METADATA = 'nestjs-durable-sse:route';

/**
 * What an `@Sse` handler's return value is wrapped in on its way through the interceptor chain:
 * Nest flattens returned Observables into their emissions, and the stream must open as soon as
 * the handler has returned, before any event exists.
 */
export class SseHandlerResult {
  constructor(readonly value: unknown) {}

  /** Runs a stream handler and boxes its result (awaited when it is a promise). */
  static of(call: () => unknown): SseHandlerResult | Promise<SseHandlerResult> {
    const result = call();
    return result instanceof Promise
      ? result.then((value) => new SseHandlerResult(value))
      : new SseHandlerResult(result);
  }
}

/** `Last-Event-ID` header, or `?lastEventId=` for clients that cannot set headers. */
export function readLastEventId(request: SseRequest): string | undefined {
  const header = request.headers['last-event-id'];
  if (typeof header === 'string') return header;
  const fromQuery = request.query?.lastEventId;
  if (typeof fromQuery === 'string') return fromQuery;
  if (request.query === undefined && request.url) {
    const value = new URL(request.url, 'http://localhost').searchParams.get('lastEventId');
    if (value !== null) return value;
  }
  return undefined;
}
