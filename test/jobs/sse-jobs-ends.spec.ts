import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as path from 'node:path';
import { redisUrl, deletePrefix, uniquePrefix } from '../support/redis';
import { FetchedStream } from '../support/sse-fetch';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { GenerateController, openGate, UserGuard, runs, useJobApps } from './support/generate-app';

// How a job ends, and that every follower sees the end: failure, cancel, shutdown, a killed process.
describe.each(PLATFORMS)('on %s: how job streams end (real Redis)', (platform) => {
  const env = useJobApps(platform);
  const { start, resume, at, options } = env;
  let a: TestApp;
  let b: TestApp;
  beforeAll(() => ({ a, b } = env));

  it('ends a failing job with event: error and a problem body, never the error message or stack', async () => {
    const refused = start(a, { tokens: 2, fail: 'http' });
    const crashed = start(a, { tokens: 2, fail: 'crash' });
    await Promise.all([refused.ended, crashed.ended]);
    const last = (s: FetchedStream) => s.events[s.events.length - 1];
    expect(last(refused)).toMatchObject({ event: 'error', id: '3' });
    expect(JSON.parse(last(refused).data)).toEqual({
      type: 'urn:nestjs-durable-sse:job:failed',
      title: 'the prompt was refused',
      status: 400,
    });
    expect(JSON.parse(last(crashed).data)).toEqual({
      type: 'urn:nestjs-durable-sse:job:failed',
      title: 'Internal Server Error',
      status: 500,
    });
    expect(last(crashed).data).not.toContain('hunter2');
    // A resume after the end replays the same end.
    const again = resume(at(b, crashed.headers.get('content-location')), { 'last-event-id': '2' });
    await again.ended;
    expect(again.events).toEqual([last(crashed)]);
  });

  it('cancels a job by DELETE on its resume URL, from any instance: the signal fires, the log ends with cancelled', async () => {
    const job = start(a, { tokens: 1_000, everyMs: 20 });
    await job.received(2);
    const url = job.headers.get('content-location');
    const cancel = await fetch(at(b, url), { method: 'DELETE' });
    expect(cancel.status).toBe(202);
    await job.ended;
    const last = job.events[job.events.length - 1];
    expect(last.event).toBe('error');
    expect(JSON.parse(last.data).type).toBe('urn:nestjs-durable-sse:job:cancelled');
    expect(runs[0].signal.aborted).toBe(true);
    expect(runs[0].signal.reason).toBe('cancelled');
    expect((await fetch(at(b, url), { method: 'DELETE' })).status).toBe(204);
  });

  it('answers a cancel racing the end truthfully: 202 only when the job ends cancelled, 204 when it ended done', async () => {
    // Each job emits its tokens, waits at a gate, then completes the moment the gate opens; the
    // DELETE leaves at a different point around that moment, to the running instance or another.
    const outcomes: Array<[number, string]> = [];
    for (let round = 0; round < 12; round++) {
      const gate = `race-${platform}-${round}`;
      const job = start(a, { tokens: 2, gate, holdAt: 2 });
      await job.received(2);
      const url = at(round % 2 === 0 ? a : b, job.headers.get('content-location'));
      const ticks = round % 6; // how many turns of the event loop the DELETE leaves after the gate
      if (round < 6) {
        const cancel = fetch(url, { method: 'DELETE' });
        for (let i = 0; i < ticks; i++) await new Promise((resolve) => setImmediate(resolve));
        openGate(gate);
        outcomes.push([(await cancel).status, '']);
      } else {
        openGate(gate);
        for (let i = 0; i < ticks; i++) await new Promise((resolve) => setImmediate(resolve));
        outcomes.push([(await fetch(url, { method: 'DELETE' })).status, '']);
      }
      await job.ended;
      const last = job.events[job.events.length - 1];
      const ended = last.event === 'done' ? 'done' : JSON.parse(last.data).type;
      outcomes[round][1] = ended;
      // What every instance's log says is what the stream said.
      const replay = resume(at(b, job.headers.get('content-location')), { 'last-event-id': '2' });
      await replay.ended;
      expect(replay.events).toEqual([last]);
    }
    for (const [status, ended] of outcomes) {
      if (status === 202) expect(ended).toBe('urn:nestjs-durable-sse:job:cancelled');
      else expect([status, ended]).toEqual([204, 'done']);
    }
  });

  it('on shutdown, a job that does not finish in the drain window ends with event: error (shutdown), seen from another instance', async () => {
    const c = await startApp([GenerateController], options(), { platform, providers: [UserGuard] });
    let closed = false;
    try {
      const job = start(c, { tokens: 1_000, everyMs: 20 });
      await job.received(2);
      const follower = resume(at(b, job.headers.get('content-location')));
      await follower.received(2);
      await c.close();
      closed = true;
      await follower.ended;
      const last = follower.events[follower.events.length - 1];
      expect(last.event).toBe('error');
      expect(JSON.parse(last.data).type).toBe('urn:nestjs-durable-sse:job:shutdown');
      expect(runs[0].signal.reason).toBe('shutdown');
    } finally {
      if (!closed) await c.close();
    }
  });
});

describe('a job whose process is killed outright', () => {
  const prefix = uniquePrefix('jobkill');
  afterAll(() => deletePrefix(redisUrl(), prefix));

  it('ends with event: error (abandoned) for a client following it on another instance, once', async () => {
    const child = fork(path.join(__dirname, 'job-child.js'), [], {
      env: { ...process.env, REDIS_URL: redisUrl(), KEY_PREFIX: prefix },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const exited = once(child, 'exit');
    const other = await startApp(
      [GenerateController],
      {
        redis: { url: redisUrl(), keyPrefix: prefix },
        jobs: { followIntervalMs: 20 },
      },
      { providers: [UserGuard] },
    );
    try {
      const [ready] = (await once(child, 'message')) as [{ port: number }];
      const job = new FetchedStream(`http://127.0.0.1:${ready.port}/generate`, { method: 'POST' });
      await job.received(3);
      const follower = new FetchedStream(`${other.url}${job.headers.get('content-location')}`);
      await follower.received(3);
      child.kill('SIGKILL');
      await exited;
      await follower.ended;
      const last = follower.events[follower.events.length - 1];
      expect(last.event).toBe('error');
      expect(JSON.parse(last.data).type).toBe('urn:nestjs-durable-sse:job:abandoned');
      // Ids still grow by one: nothing lost, nothing after the end.
      const ids = follower.events.map((e) => Number(e.id));
      expect(ids).toEqual(ids.map((_, i) => ids[0] + i));
      // The client of the killed instance saw only logged events: resuming from the last one it
      // saw, anywhere, it gets the rest and the end — never a 204 without having seen an end.
      await job.ended.catch(() => undefined); // its connection died with the process
      const seen = job.events[job.events.length - 1].id!;
      const again = new FetchedStream(`${other.url}${job.headers.get('content-location')}`, {
        headers: { 'last-event-id': seen },
      });
      await again.ended;
      expect(again.status).toBe(200);
      expect(again.events[again.events.length - 1]).toEqual(last);
      expect(Number(again.events[0].id)).toBe(Number(seen) + 1);
    } finally {
      child.kill('SIGKILL');
      await other.close();
    }
  });
});

describe('a job whose process stalls past the liveness bound (SIGSTOP, then SIGCONT)', () => {
  const prefix = uniquePrefix('jobstall');
  afterAll(() => deletePrefix(redisUrl(), prefix));

  it('never gives an id two meanings: its own client gets only logged events, then an error with no id, and the job stops', async () => {
    const child = fork(path.join(__dirname, 'job-child.js'), [], {
      env: { ...process.env, REDIS_URL: redisUrl(), KEY_PREFIX: prefix },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const other = await startApp(
      [GenerateController],
      { redis: { url: redisUrl(), keyPrefix: prefix }, jobs: { followIntervalMs: 20 } },
      { providers: [UserGuard] },
    );
    try {
      const [ready] = (await once(child, 'message')) as [{ port: number }];
      const job = new FetchedStream(`http://127.0.0.1:${ready.port}/generate`, { method: 'POST' });
      await job.received(3);
      const location = job.headers.get('content-location');
      const follower = new FetchedStream(`${other.url}${location}`);
      await follower.received(3);
      child.kill('SIGSTOP'); // longer than the 5 s liveness bound: the follower ends the job
      await follower.ended;
      const end = follower.events[follower.events.length - 1];
      expect(JSON.parse(end.data).type).toBe('urn:nestjs-durable-sse:job:abandoned');
      child.kill('SIGCONT');
      await job.ended;

      // What the log holds, from the start, read on the other instance.
      const log = new FetchedStream(`${other.url}${location}`, {
        headers: { 'last-event-id': '0' },
      });
      await log.ended;
      expect(log.events[log.events.length - 1]).toEqual(end);
      const logged = new Map(log.events.map((event) => [event.id, event]));
      // Every id the runner's own client saw means in the log what it meant to that client.
      const withIds = job.events.filter((event) => event.id !== undefined);
      for (const event of withIds) expect(logged.get(event.id)).toEqual(event);
      const last = job.events[job.events.length - 1];
      expect(last.event).toBe('error');
      expect(last.id).toBeUndefined();
      expect(JSON.parse(last.data).type).toBe('urn:nestjs-durable-sse:job:abandoned');
    } finally {
      child.kill('SIGKILL');
      await other.close();
    }
  }, 40_000);
});
