import { Injectable } from '@nestjs/common';
import type { IncomingMessage } from 'node:http';

/**
 * Whose key space a request's idempotency key lives in. Two principals using the same key never
 * see each other's responses. Runs after guards, so `req.user` is set.
 */
export interface IdempotencyScopeResolver {
  resolve(
    request: IncomingMessage & Record<string, any>,
  ): string | undefined | Promise<string | undefined>;
}

export const IDEMPOTENCY_SCOPE_RESOLVER = Symbol('IDEMPOTENCY_SCOPE_RESOLVER');

/** `req.user.id`, else `req.user.sub` (JWT subject); no user → no scope. */
@Injectable()
export class UserIdempotencyScopeResolver implements IdempotencyScopeResolver {
  resolve(
    request: IncomingMessage & { user?: { id?: unknown; sub?: unknown } },
  ): string | undefined {
    const id = request.user?.id ?? request.user?.sub;
    return id === undefined || id === null ? undefined : String(id);
  }
}
