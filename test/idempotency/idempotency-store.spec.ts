import Redis from 'ioredis';
import { MemoryIdempotencyStore, RedisIdempotencyStore } from '../../src';
import { describeIdempotencyStoreContract } from '../../src/testing';
import type { StoredResponse } from '../../src';

const response = (body: string): StoredResponse => ({
  status: 201,
  headers: {},
  kind: 'utf8',
  body,
});
import { redisUrl, uniquePrefix } from '../support/redis';

// The contract users run for their own stores (nestjs-durable-sse/testing), on the built-in ones.
describeIdempotencyStoreContract('Redis', async () => {
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

describeIdempotencyStoreContract('in-memory', async () => {
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
