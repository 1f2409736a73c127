import { Inject, Injectable } from '@nestjs/common';
import {
  IDEMPOTENCY_SCOPE_RESOLVER,
  type IdempotencyScopeResolver,
} from '../idempotency/idempotency-scope';
import type { SseRequest } from '../sse/sse-route-options';

/**
 * Who a job belongs to: only requests resolving to the same owner may resume or cancel it
 * (anyone else gets the `404` of an unknown id). `undefined` is the anonymous owner.
 */
export interface SseJobOwnerResolver {
  resolve(request: SseRequest): string | undefined | Promise<string | undefined>;
}

export const SSE_JOB_OWNER_RESOLVER = Symbol('SSE_JOB_OWNER_RESOLVER');

/**
 * The default owner: the principal as idempotency keys are scoped (`req.user.id`, else
 * `req.user.sub`, through `IDEMPOTENCY_SCOPE_RESOLVER`), so a team that changed one changed both.
 * Provide `SSE_JOB_OWNER_RESOLVER` to decide it otherwise (a team, a tenant, a session).
 */
@Injectable()
export class ScopeJobOwnerResolver implements SseJobOwnerResolver {
  constructor(
    @Inject(IDEMPOTENCY_SCOPE_RESOLVER) private readonly scopes: IdempotencyScopeResolver,
  ) {}

  resolve(request: SseRequest): string | undefined | Promise<string | undefined> {
    return this.scopes.resolve(request);
  }
}
