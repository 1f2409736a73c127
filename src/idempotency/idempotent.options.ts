import type { IncomingHttpHeaders } from 'node:http';

/**
 * The request as the HTTP platform hands it to handlers: Express' `req` or Fastify's
 * `FastifyRequest` (both have `method`, `url`, `headers`, `body`, and what guards set: `user`).
 */
export type IdempotentRequest = Record<string, any> & { headers: IncomingHttpHeaders };

/** Per-route options of `@Idempotent()`; unset ones come from the module's `idempotency` options. */
export interface IdempotentOptions {
  /** Answer 400 when the key is missing. */
  required?: boolean;
  /** Retention of the stored response (s). */
  ttlSeconds?: number;
  /** Lease while the handler runs (s). */
  inFlightTtlSeconds?: number;
  /** More response headers to store and replay. */
  storedHeaders?: string[];
  /** Which outcomes to store; others release the key. Default: every status below 500. */
  storeIf?: (status: number, error?: unknown) => boolean;
  /** The part of the body that identifies the request (drop volatile fields such as timestamps). */
  fingerprint?: (body: unknown, request: IdempotentRequest) => unknown;
  /** Scope of keys: a function of the request, or `false` to share keys across principals on purpose. */
  scope?:
    false | ((request: IdempotentRequest) => string | undefined | Promise<string | undefined>);
}

export const IDEMPOTENT_METADATA = 'nestjs-durable-sse:idempotent';
