import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerText } from './http-platform';
import type {
  CaptureListener,
  HttpPlatform,
  OutgoingResponse,
  PlatformRequest,
  PlatformResponse,
} from './http-platform';

type EndArgs = [chunk?: unknown, encoding?: unknown, callback?: unknown];

/** `@nestjs/platform-express`: handlers get Node's own request and response, extended by Express. */
export class ExpressPlatform implements HttpPlatform {
  readonly name = 'express';

  rawRequest(request: PlatformRequest): IncomingMessage {
    return request as IncomingMessage;
  }

  takeOver(response: PlatformResponse): ServerResponse {
    return response as ServerResponse;
  }

  /**
   * The request object lives as long as its stream (the socket holds it). Express leaves the
   * router's per-request state on it — `req.next` keeps the router's closure chain and its
   * contexts alive — plus the parsed URL and the matched route; none of it is used once the
   * stream is open. Set to undefined rather than deleted, so the object keeps its shape.
   */
  release(request: PlatformRequest): void {
    for (const key of ['next', '_parsedUrl', '_parsedOriginalUrl', 'route']) {
      if (request[key] !== undefined) request[key] = undefined;
    }
  }

  setHeader(response: PlatformResponse, name: string, value: string): void {
    const res = response as ServerResponse;
    if (!res.headersSent) res.setHeader(name, value);
  }

  send(
    response: PlatformResponse,
    status: number,
    headers: Record<string, string>,
    body: string | Buffer,
    extra?: Record<string, string>,
  ): void {
    // Written on Node's response: Express' res.send() would add an ETag, and Nest's adapter
    // resets any non-JSON content type of an error body to application/json.
    const res = response as ServerResponse;
    if (res.headersSent) {
      res.end();
      return;
    }
    res.statusCode = status;
    for (const name in headers) res.setHeader(name, headers[name]);
    for (const name in extra) res.setHeader(name, extra[name]);
    // Node sets Content-Length for a body written in one end().
    res.end(body);
  }

  enableCapture(): void {
    // Nothing to prepare: each captured response is wrapped on its own.
  }

  /** Wraps this response's `end()`: whatever wrote the response, it ends through there. */
  capture(_request: PlatformRequest, response: PlatformResponse, listener: CaptureListener): void {
    const res = response as ServerResponse;
    const ownEnd = Object.prototype.hasOwnProperty.call(res, 'end');
    const end = res.end;
    const onClose = () => listener.closed(false);
    res.once('close', onClose);
    res.end = ((...args: EndArgs) => {
      if (ownEnd) res.end = end;
      else delete (res as Partial<ServerResponse>).end;
      res.removeListener('close', onClose);
      void listener
        .sending(outgoing(res, args))
        .finally(() => end.apply(res, args as Parameters<ServerResponse['end']>));
      return res;
    }) as ServerResponse['end'];
  }
}

function outgoing(res: ServerResponse, [chunk, encoding]: EndArgs): OutgoingResponse {
  const body = res.headersSent ? undefined : bodyOf(chunk, encoding);
  return {
    status: res.statusCode,
    header: (name) => headerText(res.getHeader(name)),
    body,
    reason: body === undefined ? 'written in parts (streamed, or headers sent first)' : undefined,
  };
}

/** The body passed to `end()`, as a string or bytes; `undefined` if it is not one we can store. */
function bodyOf(chunk: unknown, encoding: unknown): string | Buffer | undefined {
  if (chunk === undefined || chunk === null || typeof chunk === 'function') return '';
  if (typeof chunk === 'string') {
    return typeof encoding !== 'string' || /^utf-?8$/i.test(encoding)
      ? chunk
      : Buffer.from(chunk, encoding as BufferEncoding);
  }
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  return undefined;
}
