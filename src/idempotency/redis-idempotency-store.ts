import type { Cluster, Redis } from 'ioredis';
import {
  AcquireResult,
  IdempotencyStore,
  IdempotencyStoreError,
  StoredResponse,
} from './idempotency-store';
import { ACQUIRE_SCRIPT, COMPLETE_SCRIPT, EXTEND_SCRIPT, RELEASE_SCRIPT } from './idempotency.lua';

type ScriptClient = (Redis | Cluster) & {
  sseIdemAcquire(
    key: string,
    fingerprint: string,
    owner: string,
    leaseMs: number,
  ): Promise<[string, unknown?]>;
  sseIdemComplete(key: string, owner: string, response: string, ttlMs: number): Promise<number>;
  sseIdemRelease(key: string, owner: string): Promise<number>;
  sseIdemExtend(key: string, owner: string, leaseMs: number): Promise<number>;
};

/**
 * The default store: each transition is one Lua script, registered with ioredis' defineCommand
 * so calls go out as EVALSHA and fall back to EVAL when the server lost its script cache
 * (SCRIPT FLUSH, restart, failover). Every call is bounded by `timeoutMs`: a hung Redis turns
 * into an IdempotencyStoreError, never a hung request.
 */
export class RedisIdempotencyStore implements IdempotencyStore {
  private readonly client: ScriptClient;

  constructor(
    client: Redis | Cluster,
    private readonly timeoutMs: number,
  ) {
    const scripts = client as ScriptClient;
    if (typeof scripts.sseIdemAcquire !== 'function') {
      client.defineCommand('sseIdemAcquire', { numberOfKeys: 1, lua: ACQUIRE_SCRIPT });
      client.defineCommand('sseIdemComplete', { numberOfKeys: 1, lua: COMPLETE_SCRIPT });
      client.defineCommand('sseIdemRelease', { numberOfKeys: 1, lua: RELEASE_SCRIPT });
      client.defineCommand('sseIdemExtend', { numberOfKeys: 1, lua: EXTEND_SCRIPT });
    }
    this.client = scripts;
  }

  async acquire(
    key: string,
    fingerprint: string,
    owner: string,
    leaseMs: number,
  ): Promise<AcquireResult> {
    const reply = await this.bounded(this.client.sseIdemAcquire(key, fingerprint, owner, leaseMs));
    switch (reply[0]) {
      case 'acquired':
        return { state: 'acquired' };
      case 'mismatch':
        return { state: 'mismatch' };
      case 'running':
        return { state: 'running', retryAfterMs: Math.max(0, Number(reply[1])) };
      case 'done':
        return { state: 'done', response: JSON.parse(String(reply[1])) as StoredResponse };
      default:
        throw new IdempotencyStoreError(
          `unexpected reply from the acquire script: ${JSON.stringify(reply)}`,
        );
    }
  }

  async complete(
    key: string,
    owner: string,
    response: StoredResponse,
    ttlMs: number,
  ): Promise<boolean> {
    return (
      (await this.bounded(
        this.client.sseIdemComplete(key, owner, JSON.stringify(response), ttlMs),
      )) === 1
    );
  }

  async release(key: string, owner: string): Promise<boolean> {
    return (await this.bounded(this.client.sseIdemRelease(key, owner))) === 1;
  }

  async extend(key: string, owner: string, leaseMs: number): Promise<boolean> {
    return (await this.bounded(this.client.sseIdemExtend(key, owner, leaseMs))) === 1;
  }

  /**
   * `call`, or an IdempotencyStoreError after `timeoutMs`. One promise and one timer per call
   * (this is on every idempotent request's path; a Promise.race would add two more promises).
   */
  private bounded<T>(call: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new IdempotencyStoreError(`Redis did not answer within ${this.timeoutMs} ms`)),
        this.timeoutMs,
      );
      call.then(
        (value) => {
          clearTimeout(timer);
          resolve(value);
        },
        (error: Error) => {
          clearTimeout(timer);
          reject(new IdempotencyStoreError(`Redis call failed: ${error.message}`));
        },
      );
    });
  }
}
