import { Injectable } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';

/**
 * Decides which "client" a stream belongs to for `sse.maxConnectionsPerClient`. Runs after the
 * route's guards, so `req.user` is available to resolvers that key by principal.
 */
export interface SseClientKeyResolver {
  resolve(request: IncomingMessage & Record<string, any>): string | Promise<string>;
}

/** Injection token for the client-key resolver. Default: {@link RemoteAddressClientKeyResolver}. */
export const SSE_CLIENT_KEY_RESOLVER = Symbol('SSE_CLIENT_KEY_RESOLVER');

/**
 * Keys by remote address. Uses Express' `req.ip`, which honours the app's `trust proxy` setting,
 * so behind a load balancer configure `app.set('trust proxy', …)` or every client shares the
 * balancer's address.
 */
@Injectable()
export class RemoteAddressClientKeyResolver implements SseClientKeyResolver {
  resolve(request: IncomingMessage & { ip?: string }): string {
    return request.ip ?? request.socket?.remoteAddress ?? 'unknown';
  }
}
