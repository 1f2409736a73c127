import { randomBytes } from 'node:crypto';
import Redis from 'ioredis';

export const redisUrl = (): string => {
  const url = process.env.REDIS_URL;
  if (!url) throw new Error('REDIS_URL is not set (the Jest global setup provides it)');
  return url;
};

/** A key prefix of its own per suite, so suites sharing one Redis never see each other's keys. */
export const uniquePrefix = (name = 't'): string =>
  `test:${name}:${randomBytes(4).toString('hex')}:`;

export async function withRedis<T>(url: string, fn: (redis: Redis) => Promise<T>): Promise<T> {
  const redis = new Redis(url, { maxRetriesPerRequest: 1 });
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

/** Deletes every key under `prefix` (what a suite's app wrote), so nothing waits out its TTL. */
export function deletePrefix(url: string, prefix: string): Promise<void> {
  return withRedis(url, async (redis) => {
    const keys: string[] = [];
    for await (const batch of redis.scanStream({ match: `${prefix}*`, count: 1000 }))
      keys.push(...(batch as string[]));
    for (let i = 0; i < keys.length; i += 500) await redis.del(...keys.slice(i, i + 500));
  });
}
