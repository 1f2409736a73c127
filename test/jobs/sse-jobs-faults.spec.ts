// Job logs under a Redis that goes silent (a dropped network path, no FIN, no RST): the job
// must not hang, its clients must learn it stopped, and the app must still close.
import { Controller } from '@nestjs/common';
import { interval, map } from 'rxjs';
import { SseJob, SseJobSignal } from '../../src';
import { raceTimeout } from '../../src/common/timeout';
import { FaultProxy } from '../support/fault-proxy';
import { startApp } from '../support/http';
import { FetchedStream } from '../support/sse-fetch';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivateRedis } = require('../support/services');

let signal: AbortSignal | undefined;

@Controller()
class GenerateController {
  @SseJob('generate')
  generate(@SseJobSignal() jobSignal: AbortSignal) {
    signal = jobSignal;
    return interval(20).pipe(map((i) => ({ type: 'token', data: `t${i}` })));
  }
}

describe('chaos: a job whose Redis goes silent (private server, freezing proxy)', () => {
  it('ends the job with event: error (log-unavailable) within the command bound, aborts its signal, and the app closes', async () => {
    const redis = await startPrivateRedis();
    const proxy = await FaultProxy.start(redis.url);
    const app = await startApp([GenerateController], {
      redis: { url: proxy.via(redis.url), commandTimeoutMs: 300 },
    });
    try {
      const job = new FetchedStream(`${app.url}/generate`, { method: 'POST' });
      await job.received(3);
      expect(proxy.freeze()).toBeGreaterThan(0);
      await raceTimeout(job.ended, 5_000, () => {
        throw new Error('the job stream hung on a silent Redis');
      });
      const last = job.events[job.events.length - 1];
      expect(last.event).toBe('error');
      expect(JSON.parse(last.data).type).toBe('urn:nestjs-durable-sse:job:log-unavailable');
      expect(signal?.aborted).toBe(true);
      // Ids grow by one, and only logged events carry one: the error, which no log holds, has
      // none (a follower elsewhere may have ended the job in the log at the next id).
      expect(last.id).toBeUndefined();
      const ids = job.events.slice(0, -1).map((e) => Number(e.id));
      expect(ids).toEqual(ids.map((_, i) => i + 1));
    } finally {
      await raceTimeout(app.close(), 5_000, () => {
        throw new Error('app.close() hung on a silent Redis');
      });
      await proxy.close();
      await redis.destroy();
    }
  }, 30_000);
});

describe('chaos: Redis restarted empty while a job runs (private server, no persistence)', () => {
  it('ends the stream of a client following from another instance with event: error (log-unavailable), never a silent cut', async () => {
    const redis = await startPrivateRedis();
    const options = { redis: { url: redis.url, commandTimeoutMs: 500 } };
    const a = await startApp([GenerateController], options);
    const b = await startApp([GenerateController], options);
    try {
      const job = new FetchedStream(`${a.url}/generate`, { method: 'POST' });
      await job.received(3);
      const follower = new FetchedStream(`${b.url}${job.headers.get('content-location')}`);
      await follower.received(3);
      await redis.stop();
      await redis.start(); // the same port, nothing kept: every job record is gone
      await raceTimeout(follower.ended, 15_000, () => {
        throw new Error('the follower was never told the log is gone');
      });
      const last = follower.events[follower.events.length - 1];
      expect(last.event).toBe('error');
      expect(JSON.parse(last.data).type).toBe('urn:nestjs-durable-sse:job:log-unavailable');
      // The ids it saw grow by one, and the error carries none (no log will ever hold it).
      const ids = follower.events.slice(0, -1).map((e) => Number(e.id));
      expect(ids).toEqual(ids.map((_, i) => ids[0] + i));
      expect(last.id).toBeUndefined();
    } finally {
      await raceTimeout(Promise.all([a.close(), b.close()]), 10_000, () => {
        throw new Error('app.close() hung after the Redis restart');
      });
      await redis.destroy();
    }
  }, 30_000);
});
