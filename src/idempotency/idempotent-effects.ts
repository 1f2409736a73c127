import { AsyncLocalStorage } from 'node:async_hooks';

/**
 * The `@Idempotent()` request a piece of code runs in, for `outbox.transaction()`: its
 * transactions also record their result under the request's key, in the same commit, so a retry
 * that finds no usable record in Redis (lost, evicted, never written because the process died)
 * finds the committed one and does not run the effects again.
 */
export interface IdempotentEffects {
  scope: string;
  key: string;
  fingerprint: string;
  ttlMs: number;
  /** Transactions begun so far in this request: the n-th is recorded as n (a request may run several). */
  transactions: number;
}

export const idempotentEffects = new AsyncLocalStorage<IdempotentEffects>();
