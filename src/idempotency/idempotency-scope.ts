import { Injectable } from '@nestjs/common';
import type { IdempotentRequest } from './idempotent.options';

/**
 * Whose key space a request's idempotency key lives in. Two principals using the same key never
 * see each other's responses. Runs after guards, so `req.user` is set.
 */
export interface IdempotencyScopeResolver {
  resolve(request: IdempotentRequest): string | undefined | Promise<string | undefined>;
}

export const IDEMPOTENCY_SCOPE_RESOLVER = Symbol('IDEMPOTENCY_SCOPE_RESOLVER');

/**
 * A request carries a principal (`req.user`) that the scope resolver cannot identify. Falling back
 * to the shared scope would let one principal replay another's stored response, so the request
 * fails instead (500, logged), with the fix named.
 */
export class IdempotencyScopeError extends Error {
  override readonly name = 'IdempotencyScopeError';
}

/**
 * `req.user.id`, else `req.user.sub` (JWT subject); no `req.user` at all → no scope. A
 * `req.user` with neither (say `{ userId }`, the shape of NestJS's JWT example) throws
 * {@link IdempotencyScopeError}: it is a principal, and it must not share a key space.
 */
@Injectable()
export class UserIdempotencyScopeResolver implements IdempotencyScopeResolver {
  resolve(request: IdempotentRequest): string | undefined {
    const user = request.user as { id?: unknown; sub?: unknown } | null | undefined;
    if (user === undefined || user === null) return undefined;
    const id = typeof user === 'object' ? (user.id ?? user.sub) : undefined;
    if (id === undefined || id === null || id === '') {
      const shape = typeof user === 'object' ? `{ ${Object.keys(user).join(', ')} }` : typeof user;
      throw new IdempotencyScopeError(
        `req.user (${shape}) has no id or sub, so idempotency keys cannot be scoped to it, and ` +
          "sharing one key space would let one principal replay another's response. Give the " +
          'route @Idempotent({ scope: (req) => req.user.userId }), provide ' +
          'IDEMPOTENCY_SCOPE_RESOLVER for the module, or set scope: false to share keys on purpose.',
      );
    }
    return String(id);
  }
}
