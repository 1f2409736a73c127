import { PLATFORMS } from '../support/http';
import { singleRedis, useIdempotencyApps } from './http/idempotency-app';
import { concurrencyTests } from './http/concurrency.tests';

// @Idempotent() over HTTP, concurrency: two instances on one Redis, on each platform
// (idempotency-cluster.spec.ts runs the same tests on a Redis Cluster).
describe.each(PLATFORMS)('@Idempotent() concurrency over HTTP on %s, single Redis', (platform) => {
  concurrencyTests(useIdempotencyApps(platform, singleRedis));
});
