import { PLATFORMS } from '../support/http';
import { singleRedis, useIdempotencyApps } from './http/idempotency-app';
import { scopeTests } from './http/scope.tests';

// @Idempotent() over HTTP, scope: two instances on one Redis, on each platform
// (idempotency-cluster.spec.ts runs the same tests on a Redis Cluster).
describe.each(PLATFORMS)('@Idempotent() scope over HTTP on %s, single Redis', (platform) => {
  scopeTests(useIdempotencyApps(platform, singleRedis));
});
