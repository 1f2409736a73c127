import { Injectable } from '@nestjs/common';
import type { SseRequest } from './sse-route-options';

/**
 * Decides which "client" a stream belongs to for `sse.maxConnectionsPerClient`. Runs after the
 * route's guards, so `req.user` is available to resolvers that key by principal.
 */
export interface SseClientKeyResolver {
  resolve(request: SseRequest): string | Promise<string>;
}

/** Injection token for the client-key resolver. Default: {@link RemoteAddressClientKeyResolver}. */
export const SSE_CLIENT_KEY_RESOLVER = Symbol('SSE_CLIENT_KEY_RESOLVER');

/**
 * Keys by remote address: the platform's `request.ip`, which honours its own trust-proxy setting
 * (Express: `app.set('trust proxy', …)`; Fastify: `new FastifyAdapter({ trustProxy: … })`).
 * Behind a load balancer, configure it or every client shares the balancer's address.
 */
@Injectable()
export class RemoteAddressClientKeyResolver implements SseClientKeyResolver {
  resolve(request: SseRequest): string {
    return request.ip ?? request.socket?.remoteAddress ?? 'unknown';
  }
}
