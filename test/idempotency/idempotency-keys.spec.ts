import { PLATFORMS } from '../support/http';
import { singleRedis, useIdempotencyApps } from './http/idempotency-app';
import { keyTests } from './http/keys.tests';

// @Idempotent() over HTTP, keys: two instances on one Redis, on each platform
// (idempotency-cluster.spec.ts runs the same tests on a Redis Cluster).
describe.each(PLATFORMS)('@Idempotent() keys over HTTP on %s, single Redis', (platform) => {
  keyTests(useIdempotencyApps(platform, singleRedis));
});
