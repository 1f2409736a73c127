import { PLATFORMS } from '../support/http';
import { singleRedis, useIdempotencyApps } from './http/idempotency-app';
import { replayTests } from './http/replay.tests';

// @Idempotent() over HTTP, replays: two instances on one Redis, on each platform
// (idempotency-cluster.spec.ts runs the same tests on a Redis Cluster).
describe.each(PLATFORMS)('@Idempotent() replays over HTTP on %s, single Redis', (platform) => {
  replayTests(useIdempotencyApps(platform, singleRedis));
});
