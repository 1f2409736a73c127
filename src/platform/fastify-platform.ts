import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerText } from './http-platform';
import type {
  CaptureListener,
  HttpPlatform,
  OutgoingResponse,
  PlatformRequest,
  PlatformResponse,
} from './http-platform';

type OnSendDone = (error: Error | null, payload?: unknown) => void;

/**
 * `@nestjs/platform-fastify`: handlers get Fastify's request and reply, which wrap Node's
 * (`.raw`). Only types are imported from `fastify`: the package does not require it.
 */
export class FastifyPlatform implements HttpPlatform {
  readonly name = 'fastify';
  /** Replies being captured, by reply; read by this app's `onSend` hook. */
  private readonly captures = new WeakMap<FastifyReply, CaptureListener>();
  private hooked = false;

  constructor(private readonly instance: FastifyInstance) {}

  rawRequest(request: PlatformRequest): IncomingMessage {
    return (request as FastifyRequest).raw;
  }

  takeOver(response: PlatformResponse): ServerResponse {
    const reply = response as FastifyReply;
    // Fastify forgets the reply: no send() after the handler, no onSend/onResponse hooks.
    reply.hijack();
    // Headers set on the reply so far (CORS from app.enableCors(), a hook's, a guard's) live on
    // the reply until Fastify sends it, which it now never does: carry them to Node's response.
    const raw = reply.raw;
    const headers = reply.getHeaders();
    for (const name in headers) {
      const value = headers[name];
      if (value !== undefined && !raw.headersSent) raw.setHeader(name, value);
    }
    return raw;
  }

  release(): void {
    // Fastify's request keeps nothing beyond the request itself alive.
  }

  setHeader(response: PlatformResponse, name: string, value: string): void {
    const reply = response as FastifyReply;
    if (!reply.sent) reply.header(name, value);
  }

  send(
    response: PlatformResponse,
    status: number,
    headers: Record<string, string>,
    body: string | Buffer,
    extra?: Record<string, string>,
  ): void {
    const reply = response as FastifyReply;
    if (reply.sent || reply.raw.headersSent) {
      if (!reply.raw.writableEnded) reply.raw.end();
      return;
    }
    // A Buffer is sent as it is whatever its content type (a string typed as JSON would be too,
    // but a Buffer also keeps non-UTF-8 bodies intact).
    reply.code(status).headers(headers);
    if (extra) reply.headers(extra);
    void reply.send(typeof body === 'string' ? Buffer.from(body) : body);
  }

  /**
   * Fastify sends a reply in one piece after its `onSend` hooks, which see the serialized
   * payload and may hold it: one hook per application reads the replies registered here.
   */
  capture(_request: PlatformRequest, response: PlatformResponse, listener: CaptureListener): void {
    const reply = response as FastifyReply;
    if (!this.hooked) throw new Error('FastifyPlatform.capture() before enableCapture()');
    this.captures.set(reply, listener);
    reply.raw.once('close', () => {
      if (!this.captures.has(reply)) return;
      // Written around reply.send() (hijacked, or straight to reply.raw)...
      if (reply.raw.writableFinished) {
        this.captures.delete(reply);
        listener.closed(true);
        return;
      }
      // ...or the client left: a reply the handler still sends is captured all the same.
      listener.closed(false);
    });
  }

  /** Adds the `onSend` hook, once, while the application starts (Fastify refuses hooks later). */
  enableCapture(): void {
    if (this.hooked) return;
    this.hooked = true;
    this.instance.addHook(
      'onSend',
      (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: OnSendDone) => {
        const listener = this.captures.get(reply);
        if (!listener) return done(null, payload);
        this.captures.delete(reply);
        void listener.sending(outgoing(reply, payload)).finally(() => done(null, payload));
      },
    );
  }
}

function outgoing(reply: FastifyReply, payload: unknown): OutgoingResponse {
  let body: string | Buffer | undefined;
  let reason: string | undefined;
  if (reply.getHeader('content-encoding') !== undefined) {
    reason = 'content-encoded before it was captured (a compression hook ran first)';
  } else if (payload === undefined || payload === null) {
    body = '';
  } else if (typeof payload === 'string') {
    body = payload;
  } else if (payload instanceof Uint8Array) {
    body = Buffer.from(payload.buffer, payload.byteOffset, payload.length);
  } else {
    reason = 'streamed';
  }
  return {
    status: reply.statusCode,
    header: (name) => headerText(reply.getHeader(name)),
    body,
    reason,
  };
}
