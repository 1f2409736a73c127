import { AcquireResult, IdempotencyStore, StoredResponse } from './idempotency-store';

interface MemoryRecord {
  state: 'running' | 'done';
  fingerprint: string;
  owner?: string;
  response?: StoredResponse;
  expiresAt: number;
}

/**
 * The same contract as the Redis store, in this process only: for tests and single-process
 * apps. Several instances behind a load balancer would each have their own records.
 */
export class MemoryIdempotencyStore implements IdempotencyStore {
  private readonly records = new Map<string, MemoryRecord>();

  constructor(private readonly now: () => number = Date.now) {}

  private live(key: string): MemoryRecord | undefined {
    const record = this.records.get(key);
    if (record && record.expiresAt <= this.now()) {
      this.records.delete(key);
      return undefined;
    }
    return record;
  }

  async acquire(
    key: string,
    fingerprint: string,
    owner: string,
    leaseMs: number,
  ): Promise<AcquireResult> {
    this.sweep();
    const record = this.live(key);
    if (!record) {
      this.records.set(key, {
        state: 'running',
        fingerprint,
        owner,
        expiresAt: this.now() + leaseMs,
      });
      return { state: 'acquired' };
    }
    if (record.fingerprint !== fingerprint) return { state: 'mismatch' };
    if (record.state === 'running')
      return { state: 'running', retryAfterMs: record.expiresAt - this.now() };
    return { state: 'done', response: record.response! };
  }

  async complete(
    key: string,
    owner: string,
    response: StoredResponse,
    ttlMs: number,
  ): Promise<boolean> {
    const record = this.live(key);
    if (!record || record.owner !== owner) return false;
    Object.assign(record, {
      state: 'done',
      owner: undefined,
      response,
      expiresAt: this.now() + ttlMs,
    });
    return true;
  }

  async release(key: string, owner: string): Promise<boolean> {
    const record = this.live(key);
    if (!record || record.owner !== owner) return false;
    this.records.delete(key);
    return true;
  }

  async extend(key: string, owner: string, leaseMs: number): Promise<boolean> {
    const record = this.live(key);
    if (!record || record.owner !== owner) return false;
    record.expiresAt = this.now() + leaseMs;
    return true;
  }

  get size(): number {
    return this.records.size;
  }

  // Bounded work per call keeps expired records from piling up without a timer.
  private sweep(): void {
    let checked = 0;
    for (const [key, record] of this.records) {
      if (++checked > 16) break;
      if (record.expiresAt <= this.now()) this.records.delete(key);
    }
  }
}
