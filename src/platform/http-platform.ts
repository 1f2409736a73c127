import type { IncomingMessage, ServerResponse } from 'node:http';

/** The request object the platform hands to route handlers (Express `req`, Fastify `FastifyRequest`). */
export type PlatformRequest = Record<string, any>;
/** The response object the platform hands to route handlers (Express `res`, Fastify `FastifyReply`). */
export type PlatformResponse = object;

/** A response as it is about to leave, seen by {@link HttpPlatform.capture}. */
export interface OutgoingResponse {
  readonly status: number;
  /** A response header as it will be sent (multiple values joined with `, `). */
  header(name: string): string | undefined;
  /**
   * The whole body, or `undefined` when it cannot be kept as bytes: streamed, written in parts
   * (headers sent first), or already content-encoded. `reason` says which.
   */
  readonly body: string | Buffer | undefined;
  readonly reason?: string;
}

/** A header value as either platform holds it (a list for repeated headers), as one string. */
export function headerText(value: number | string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  return Array.isArray(value) ? value.join(', ') : String(value);
}

/** What {@link HttpPlatform.capture} reports. Neither method may throw. */
export interface CaptureListener {
  /** The response is complete and about to be sent; it leaves once the promise settles. */
  sending(response: OutgoingResponse): Promise<void>;
  /**
   * The connection closed and {@link sending} was never called: `written` if a response went
   * out anyway (around the platform's reply path), false if the client left first.
   */
  closed(written: boolean): void;
}

/**
 * Everything the module needs from the HTTP platform, in one place: the only code that knows
 * Express or Fastify is the two implementations of this interface.
 */
export interface HttpPlatform {
  readonly name: 'express' | 'fastify';
  /** Node's request under the platform's request. */
  rawRequest(request: PlatformRequest): IncomingMessage;
  /**
   * Takes the response over from the platform for the rest of its life (an event stream): the
   * platform will neither write nor end it. Returns Node's response to write to.
   */
  takeOver(response: PlatformResponse): ServerResponse;
  /**
   * Called once a taken-over request is streaming: drops what the platform left on it that the
   * stream would otherwise keep alive for hours.
   */
  release(request: PlatformRequest): void;
  /** Sets a header on a response that is still to be sent by the platform. */
  setHeader(response: PlatformResponse, name: string, value: string): void;
  /**
   * Sends a complete response as these exact bytes (no serializer, no content-type rewriting),
   * with `headers` and then `extra` (kept apart so that a caller adding a header to stored ones
   * need not copy them), or, if its headers already left, ends it.
   */
  send(
    response: PlatformResponse,
    status: number,
    headers: Record<string, string>,
    body: string | Buffer,
    extra?: Record<string, string>,
  ): void;
  /** Prepares {@link capture}; called while the application starts, before it listens. */
  enableCapture(): void;
  /**
   * Reports the response to `request` as it is sent (after every interceptor, serializer and
   * exception filter), and holds it until the listener is done with it.
   */
  capture(request: PlatformRequest, response: PlatformResponse, listener: CaptureListener): void;
}
