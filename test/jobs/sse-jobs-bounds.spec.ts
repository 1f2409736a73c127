import { SseJobs } from '../../src';
import { eventually } from '../support/outbox';
import { FetchedStream } from '../support/sse-fetch';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import {
  GenerateController,
  UserGuard,
  byHeader,
  counters,
  openGate,
  runs,
  tokensOf,
  useJobApps,
} from './support/generate-app';

// What one job, one client and one instance may take: events, time, concurrency; and heartbeats.
describe.each(PLATFORMS)('on %s: job stream bounds (real Redis)', (platform) => {
  const env = useJobApps(platform);
  const { start, at, options } = env;

  describe('bounds', () => {
    let small: TestApp;
    /** Concurrency limits alone: its jobs run until their test lets them end. */
    let limited: TestApp;
    beforeAll(async () => {
      small = await startApp(
        [GenerateController],
        options({ maxEvents: 5, timeoutMs: 300, retentionMs: 1_000 }, { heartbeatMs: 20 }, [
          byHeader,
        ]),
        { platform, providers: [UserGuard] },
      );
      limited = await startApp(
        [GenerateController],
        options({ maxConcurrent: 3, maxConcurrentPerClient: 2 }, {}, [byHeader]),
        { platform, providers: [UserGuard] },
      );
    });
    afterAll(async () => {
      await small?.close();
      await limited?.close();
    });

    it('refuses a job past the per-client limit with 429 + Retry-After, past the instance limit with 503', async () => {
      // Held after their first token until the limits are checked.
      const gate = `${platform}:limits`;
      const job = { tokens: 2, everyMs: 5, gate, holdAt: 1 };
      const held = [
        start(limited, job, { 'x-client': 'a' }),
        start(limited, job, { 'x-client': 'a' }),
      ];
      await Promise.all(held.map((s) => s.opened));
      const post = (client: string) =>
        fetch(`${limited.url}/generate`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-client': client },
          body: JSON.stringify({ tokens: 1 }),
        });
      const third = await post('a');
      expect(third.status).toBe(429);
      expect(Number(third.headers.get('retry-after'))).toBeGreaterThan(0);
      held.push(start(limited, job, { 'x-client': 'b' }));
      await held[2].opened;
      expect(held[2].status).toBe(200);
      const fourth = await post('c'); // the instance runs maxConcurrent (3) jobs
      expect(fourth.status).toBe(503);
      expect(Number(fourth.headers.get('retry-after'))).toBeGreaterThan(0);
      openGate(gate);
      await Promise.all(held.map((s) => s.ended));
      for (const s of held)
        expect(s.events.map((e) => e.event)).toEqual(['token', 'token', 'done']);
      const jobs = limited.app.get(SseJobs);
      await eventually(
        () => jobs.stats.started === jobs.stats.done + jobs.stats.failed,
        'jobs ended',
      );
      // Once they ended, the limits let jobs in again.
      const after = start(limited, { tokens: 1 }, { 'x-client': 'a' });
      await after.ended;
      expect(after.status).toBe(200);
    });

    it('stops a synchronous source at maxEvents (too-large) instead of draining it', async () => {
      counters.flooded = 0;
      const flood = start(small, { tokens: 0 }, {}, 'flood');
      await flood.ended;
      expect(tokensOf(flood.events)).toHaveLength(5);
      expect(counters.flooded).toBeLessThan(10); // the source was stopped, not drained
      expect(JSON.parse(flood.events[flood.events.length - 1].data).type).toBe(
        'urn:nestjs-durable-sse:job:too-large',
      );
    });

    it('keeps the stream of a quiet job alive with heartbeats', async () => {
      const quiet = start(small, { tokens: 1, everyMs: 200 });
      await quiet.ended;
      expect(quiet.comments.length).toBeGreaterThan(0);
      expect(quiet.events.map((e) => e.event)).toEqual(['token', 'done']);
    });

    it('ends a job that emits past maxEvents with too-large, one past timeoutMs with timeout; logs expire', async () => {
      const big = start(small, { tokens: 10, everyMs: 5 });
      const slow = start(small, { tokens: 10, everyMs: 100 });
      await Promise.all([big.ended, slow.ended]);
      const reason = (s: FetchedStream) => JSON.parse(s.events[s.events.length - 1].data).type;
      expect(tokensOf(big.events)).toHaveLength(5);
      expect(reason(big)).toBe('urn:nestjs-durable-sse:job:too-large');
      expect(reason(slow)).toBe('urn:nestjs-durable-sse:job:timeout');
      expect(runs.find((r) => r.body.everyMs === 100)!.signal.reason).toBe('timeout');
      // retentionMs after the end, the job is gone.
      const url = at(small, big.headers.get('content-location'));
      expect((await fetch(url)).status).toBe(200);
      await eventually(async () => (await fetch(url)).status === 404, 'the log to expire', 5_000);
    });
  });
});
