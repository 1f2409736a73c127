import { redisCluster, useIdempotencyApps } from './http/idempotency-app';
import { concurrencyTests } from './http/concurrency.tests';
import { keyTests } from './http/keys.tests';
import { replayTests } from './http/replay.tests';
import { scopeTests } from './http/scope.tests';

// Every @Idempotent() HTTP test on a private 3-master Redis Cluster: the scripts' keys share a
// hash tag, with and without the client's keyPrefix. The topology is the store's concern, not
// the platform's: one platform each.
describe.each([
  [undefined, 'express'],
  ['cluster:prefix:', 'fastify'],
] as const)(
  '@Idempotent() over HTTP on a 3-master Redis Cluster (keyPrefix %s) on %s',
  (keyPrefix, platform) => {
    const env = useIdempotencyApps(platform, () => redisCluster(keyPrefix));
    describe('replays', () => replayTests(env));
    describe('keys', () => keyTests(env));
    describe('concurrency', () => concurrencyTests(env));
    describe('scope', () => scopeTests(env));
  },
);
