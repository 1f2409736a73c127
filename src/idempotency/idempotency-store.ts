/** A response as it went out the first time: stored, then replayed byte for byte. */
export interface StoredResponse {
  status: number;
  /** `Content-Type` and the allow-listed response headers, lower-case names. */
  headers: Record<string, string>;
  /** How `body` holds the bytes: as text (they were valid UTF-8) or as base64. */
  kind: 'utf8' | 'base64';
  body: string;
}

export type AcquireResult =
  | { state: 'acquired' }
  | { state: 'mismatch' }
  | { state: 'running'; retryAfterMs: number }
  | { state: 'done'; response: StoredResponse };

/**
 * Where idempotency records live. Every method is owner-checked where it changes a record, so a
 * request whose lease expired can never overwrite or delete the record of the one that took over.
 */
export interface IdempotencyStore {
  acquire(
    recordKey: string,
    fingerprint: string,
    owner: string,
    leaseMs: number,
  ): Promise<AcquireResult>;
  complete(
    recordKey: string,
    owner: string,
    response: StoredResponse,
    ttlMs: number,
  ): Promise<boolean>;
  release(recordKey: string, owner: string): Promise<boolean>;
  extend(recordKey: string, owner: string, leaseMs: number): Promise<boolean>;
}

/** Injection token of the store. Default: Redis when `redis` is configured, else in-memory. */
export const IDEMPOTENCY_STORE = Symbol('IDEMPOTENCY_STORE');

/** A store could not be reached or did not answer in time. */
export class IdempotencyStoreError extends Error {
  override readonly name = 'IdempotencyStoreError';
}
