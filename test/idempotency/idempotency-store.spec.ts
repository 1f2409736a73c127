import Redis from 'ioredis';
import {
  IdempotencyStore,
  MemoryIdempotencyStore,
  RedisIdempotencyStore,
  StoredResponse,
} from '../../src';
import { redisUrl, uniquePrefix } from '../support/redis';

const response = (body: string): StoredResponse => ({
  status: 201,
  headers: {},
  kind: 'utf8',
  body,
});

interface StoreUnderTest {
  store: IdempotencyStore;
  /** Makes a record vanish as if its lease had run out. */
  expire(key: string): Promise<void>;
  /** Remaining life of a record in ms, -2 when absent. */
  ttl(key: string): Promise<number>;
  close(): Promise<void>;
}

function contract(label: string, make: () => Promise<StoreUnderTest>) {
  describe(`idempotency store contract — ${label}`, () => {
    let t: StoreUnderTest;
    let n = 0;
    const key = () => `idem:{:k${++n}}`;
    beforeAll(async () => {
      t = await make();
    });
    afterAll(() => t.close());

    it('acquires once, then reports mismatch, running, and the stored response', async () => {
      const k = key();
      expect(await t.store.acquire(k, 'fp', 'owner-a', 60_000)).toEqual({ state: 'acquired' });
      expect(await t.store.acquire(k, 'other-fp', 'owner-b', 60_000)).toEqual({
        state: 'mismatch',
      });
      const running = await t.store.acquire(k, 'fp', 'owner-b', 60_000);
      expect(running.state).toBe('running');
      expect(await t.store.complete(k, 'owner-a', response('{"ok":1}'), 3_600_000)).toBe(true);
      expect(await t.store.acquire(k, 'fp', 'owner-c', 60_000)).toEqual({
        state: 'done',
        response: response('{"ok":1}'),
      });
      expect(await t.store.acquire(k, 'other-fp', 'owner-c', 60_000)).toEqual({
        state: 'mismatch',
      });
    });

    it('keeps a running record for the lease and a completed one for the TTL', async () => {
      const k = key();
      await t.store.acquire(k, 'fp', 'owner', 5_000);
      // Positive too: -1 (no expiry) and -2 (no key) would pass a bare upper bound.
      const lease = await t.ttl(k);
      expect(lease).toBeGreaterThan(0);
      expect(lease).toBeLessThanOrEqual(5_000);
      expect(await t.store.extend(k, 'owner', 50_000)).toBe(true);
      expect(await t.ttl(k)).toBeGreaterThan(5_000);
      await t.store.complete(k, 'owner', response('x'), 3_600_000);
      expect(await t.ttl(k)).toBeGreaterThan(50_000);
    });

    it('rejects a stale owner: its complete, release and extend cannot touch the new owner record', async () => {
      const k = key();
      await t.store.acquire(k, 'fp', 'stale', 60_000);
      await t.expire(k); // the stale owner's lease ran out
      expect(await t.store.acquire(k, 'fp', 'fresh', 60_000)).toEqual({ state: 'acquired' });
      expect(await t.store.complete(k, 'fresh', response('fresh'), 3_600_000)).toBe(true);
      expect(await t.store.complete(k, 'stale', response('stale'), 3_600_000)).toBe(false);
      expect(await t.store.release(k, 'stale')).toBe(false);
      expect(await t.store.extend(k, 'stale', 60_000)).toBe(false);
      expect(await t.store.acquire(k, 'fp', 'later', 60_000)).toEqual({
        state: 'done',
        response: response('fresh'),
      });
    });

    it('releases only for the owner, after which the key is free', async () => {
      const k = key();
      await t.store.acquire(k, 'fp', 'owner', 60_000);
      expect(await t.store.release(k, 'someone-else')).toBe(false);
      expect(await t.store.release(k, 'owner')).toBe(true);
      expect(await t.store.acquire(k, 'another-fp', 'next', 60_000)).toEqual({ state: 'acquired' });
    });
  });
}

contract('Redis', async () => {
  const keyPrefix = uniquePrefix('store');
  const redis = new Redis(redisUrl(), { keyPrefix, maxRetriesPerRequest: 1 });
  return {
    store: new RedisIdempotencyStore(redis, 1_000),
    expire: async (key) => void (await redis.del(key)),
    ttl: (key) => redis.pttl(key),
    close: async () => {
      // SCAN/KEYS patterns are not prefixed by ioredis; DEL keys are.
      const keys = await redis.keys(`${keyPrefix}*`);
      if (keys.length) await redis.del(...keys.map((key) => key.slice(keyPrefix.length)));
      redis.disconnect();
    },
  };
});

contract('in-memory', async () => {
  let now = 1_000_000;
  const store = new MemoryIdempotencyStore(() => now);
  return {
    store,
    expire: async () => {
      now += 10 * 3_600_000;
    },
    ttl: async (key) => {
      // No contract method reads an expiry without changing it: peek at the record.
      const record = (
        store as unknown as { records: Map<string, { expiresAt: number }> }
      ).records.get(key);
      return record ? record.expiresAt - now : -2;
    },
    close: async () => undefined,
  };
});

describe('Redis store scripts', () => {
  it('survive SCRIPT FLUSH (EVALSHA falls back to EVAL)', async () => {
    const redis = new Redis(redisUrl(), {
      keyPrefix: uniquePrefix('flush'),
      maxRetriesPerRequest: 1,
    });
    try {
      const store = new RedisIdempotencyStore(redis, 1_000);
      expect(await store.acquire('idem:{:a}', 'fp', 'o', 60_000)).toEqual({ state: 'acquired' });
      await redis.script('FLUSH');
      expect(await store.acquire('idem:{:b}', 'fp', 'o', 60_000)).toEqual({ state: 'acquired' });
      expect(await store.complete('idem:{:b}', 'o', response('1'), 60_000)).toBe(true);
    } finally {
      await redis.del('idem:{:a}', 'idem:{:b}');
      redis.disconnect();
    }
  });
});
