import * as assert from 'node:assert/strict';
import type { IdempotencyStore, StoredResponse } from '../idempotency/idempotency-store';

/** A store under test, and the two things the contract cannot do through the interface. */
export interface IdempotencyStoreHarness {
  store: IdempotencyStore;
  /** Makes the record of `recordKey` vanish as if its lease had run out. */
  expire(recordKey: string): Promise<void>;
  /** Remaining life of the record of `recordKey` in ms; -2 when there is none. */
  ttl(recordKey: string): Promise<number>;
  /** Frees what `make` took (connections, keys). */
  close(): Promise<void>;
}

/** The test functions the contract registers its tests with: your runner's. */
export interface ContractTestApi {
  describe(name: string, fn: () => void): void;
  it(name: string, fn: () => Promise<void>, timeoutMs?: number): void;
  beforeAll(fn: () => Promise<void>): void;
  afterAll(fn: () => Promise<void>): void;
}

const response = (body: string): StoredResponse => ({
  status: 201,
  headers: { 'content-type': 'application/json' },
  kind: 'utf8',
  body,
});

/**
 * Registers the tests every `IDEMPOTENCY_STORE` must pass — the ones the built-in Redis and
 * in-memory stores pass — in a `describe` of your test runner:
 *
 * ```ts
 * describeIdempotencyStoreContract('DynamoDB store', async () => ({
 *   store: new DynamoIdempotencyStore(client, table),
 *   expire: (key) => deleteItem(key),
 *   ttl: (key) => remainingMs(key),
 *   close: async () => client.destroy(),
 * }));
 * ```
 *
 * Assertions use `node:assert`, so any runner works: Jest and Vitest (with globals) by default;
 * for others pass their functions as `api` (`node:test`: `{ describe, it, beforeAll: before,
 * afterAll: after }`).
 */
export function describeIdempotencyStoreContract(
  label: string,
  make: () => Promise<IdempotencyStoreHarness>,
  api: ContractTestApi = globalThis as unknown as ContractTestApi,
): void {
  const { describe, it, beforeAll, afterAll } = api;
  if (typeof describe !== 'function' || typeof it !== 'function') {
    throw new Error(
      'describeIdempotencyStoreContract(): no describe/it globals; pass your runner’s functions as the third argument',
    );
  }
  describe(`idempotency store contract — ${label}`, () => {
    let t: IdempotencyStoreHarness;
    let n = 0;
    // Shaped like the module's record keys (a hash tag, for stores on Redis Cluster).
    const key = () => `idem:{contract:k${++n}:${Date.now()}}`;
    beforeAll(async () => {
      t = await make();
    });
    afterAll(async () => {
      await t?.close();
    });

    it('acquires once, then reports mismatch, running, and the stored response', async () => {
      const k = key();
      assert.deepEqual(await t.store.acquire(k, 'fp', 'owner-a', 60_000), { state: 'acquired' });
      assert.deepEqual(await t.store.acquire(k, 'other-fp', 'owner-b', 60_000), {
        state: 'mismatch',
      });
      const running = await t.store.acquire(k, 'fp', 'owner-b', 60_000);
      assert.equal(running.state, 'running');
      assert.ok(
        running.state === 'running' && running.retryAfterMs > 0 && running.retryAfterMs <= 60_000,
        `retryAfterMs within the lease (got ${JSON.stringify(running)})`,
      );
      assert.equal(await t.store.complete(k, 'owner-a', response('{"ok":1}'), 3_600_000), true);
      assert.deepEqual(await t.store.acquire(k, 'fp', 'owner-c', 60_000), {
        state: 'done',
        response: response('{"ok":1}'),
      });
      assert.deepEqual(await t.store.acquire(k, 'other-fp', 'owner-c', 60_000), {
        state: 'mismatch',
      });
    });

    it('lets exactly one of many concurrent acquires win', async () => {
      const k = key();
      const results = await Promise.all(
        Array.from({ length: 20 }, (_, i) => t.store.acquire(k, 'fp', `owner-${i}`, 60_000)),
      );
      assert.equal(results.filter((r) => r.state === 'acquired').length, 1);
      assert.equal(results.filter((r) => r.state === 'running').length, 19);
    });

    it('stores a response byte for byte, binary bodies and headers included', async () => {
      const k = key();
      const stored: StoredResponse = {
        status: 200,
        headers: { 'content-type': 'application/octet-stream', location: '/orders/1' },
        kind: 'base64',
        body: Buffer.from([0, 255, 10, 13, 34]).toString('base64'),
      };
      await t.store.acquire(k, 'fp', 'owner', 60_000);
      assert.equal(await t.store.complete(k, 'owner', stored, 3_600_000), true);
      assert.deepEqual(await t.store.acquire(k, 'fp', 'next', 60_000), {
        state: 'done',
        response: stored,
      });
    });

    it('keeps a running record for the lease and a completed one for the TTL', async () => {
      const k = key();
      await t.store.acquire(k, 'fp', 'owner', 5_000);
      // Positive too: -1 (no expiry) and -2 (no record) would pass a bare upper bound.
      const lease = await t.ttl(k);
      assert.ok(lease > 0 && lease <= 5_000, `lease within 5000 ms (got ${lease})`);
      assert.equal(await t.store.extend(k, 'owner', 50_000), true);
      assert.ok((await t.ttl(k)) > 5_000, 'extend() lengthens the lease');
      await t.store.complete(k, 'owner', response('x'), 3_600_000);
      assert.ok((await t.ttl(k)) > 50_000, 'complete() keeps the record for the TTL');
    });

    it('rejects a stale owner: its complete, release and extend cannot touch the new owner record', async () => {
      const k = key();
      await t.store.acquire(k, 'fp', 'stale', 60_000);
      await t.expire(k);
      assert.deepEqual(await t.store.acquire(k, 'fp', 'fresh', 60_000), { state: 'acquired' });
      assert.equal(await t.store.complete(k, 'fresh', response('fresh'), 3_600_000), true);
      assert.equal(await t.store.complete(k, 'stale', response('stale'), 3_600_000), false);
      assert.equal(await t.store.release(k, 'stale'), false);
      assert.equal(await t.store.extend(k, 'stale', 60_000), false);
      assert.deepEqual(await t.store.acquire(k, 'fp', 'later', 60_000), {
        state: 'done',
        response: response('fresh'),
      });
    });

    it('releases only for the owner, after which the key is free', async () => {
      const k = key();
      await t.store.acquire(k, 'fp', 'owner', 60_000);
      assert.equal(await t.store.release(k, 'someone-else'), false);
      assert.equal(await t.store.release(k, 'owner'), true);
      assert.deepEqual(await t.store.acquire(k, 'another-fp', 'next', 60_000), {
        state: 'acquired',
      });
    });
  });
}
