// Many clients following one job that runs on another instance share one reader of its log
// (issue 28, defect 9): Redis load does not grow with how many watch. A private Redis, so the
// commands counted are this test's own.
import { startApp, TestApp } from '../support/http';
import { FetchedStream } from '../support/sse-fetch';
import { withRedis } from '../support/redis';
import { GenerateController, openGate, UserGuard } from './support/generate-app';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedis } = require('../support/services');

/** Commands the server has processed so far (INFO stats), read on a connection of its own. */
const commandsOf = (url: string) =>
  withRedis(url, async (redis) => {
    const info = await redis.info('stats');
    return Number(/total_commands_processed:(\d+)/.exec(info)![1]);
  });

/** Commands processed while `window` runs, minus the INFO calls that measure it. */
async function commandsDuring(url: string, window: () => Promise<void>): Promise<number> {
  const before = await commandsOf(url);
  await window();
  return (await commandsOf(url)) - before - 1;
}

describe('followers of one remote job share one reader (private Redis)', () => {
  let redis: { url: string; destroy(): Promise<void> };
  let a: TestApp;
  let b: TestApp;
  const streams: FetchedStream[] = [];
  beforeAll(async () => {
    redis = await startPrivateRedis();
    const options = {
      redis: { url: redis.url },
      jobs: { followIntervalMs: 20 },
      sse: { heartbeatMs: 60_000 },
    };
    a = await startApp([GenerateController], options, { providers: [UserGuard] });
    b = await startApp([GenerateController], options, { providers: [UserGuard] });
  });
  afterAll(async () => {
    streams.forEach((stream) => stream.cut());
    await Promise.all([a?.close(), b?.close()]);
    await redis?.destroy();
  });

  it('reads the log as often for 50 clients as for one, and each gets every event once, in order', async () => {
    const job = new FetchedStream(`${a.url}/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tokens: 4, gate: 'followers', holdAt: 2 }),
    });
    streams.push(job);
    await job.received(2);
    const url = `${b.url}${job.headers.get('content-location')}`;
    const follow = () => {
      const stream = new FetchedStream(url);
      streams.push(stream);
      return stream;
    };
    // The job is held at its gate: the followers poll an idle log, the case that costs most.
    const window = () => new Promise<void>((resolve) => setTimeout(resolve, 600));
    const first = follow();
    await first.received(2);
    const one = await commandsDuring(redis.url, window);
    const more = Array.from({ length: 49 }, follow);
    await Promise.all(more.map((stream) => stream.received(2)));
    const fifty = await commandsDuring(redis.url, window);
    // One reader either way (plus the runner's heartbeats): not fifty.
    expect(fifty).toBeLessThan(one * 2 + 10);

    openGate('followers');
    const all = [first, ...more];
    await Promise.all(all.map((stream) => stream.ended));
    for (const stream of all) {
      expect(stream.events.map((e) => e.id)).toEqual(['1', '2', '3', '4', '5']);
      expect(stream.events[4].event).toBe('done');
    }
  });
});
