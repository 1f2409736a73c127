import { Controller } from '@nestjs/common';
import { of } from 'rxjs';
import { SSE_JOB_OWNER_RESOLVER, SseJob } from '../../src';
import { deletePrefix, redisUrl, uniquePrefix } from '../support/redis';
import { FetchedStream } from '../support/sse-fetch';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import {
  GenerateController,
  UserGuard,
  openGate,
  runs,
  tokensOf,
  useJobApps,
} from './support/generate-app';

// Who may reach a job (its principal only), POST-started plain streams, and what the routes need.
describe.each(PLATFORMS)('on %s: job routes (real Redis)', (platform) => {
  const env = useJobApps(platform);
  const { start, resume, at } = env;
  let a: TestApp;
  let b: TestApp;
  beforeAll(() => ({ a, b } = env));

  it('lets only its principal resume or cancel a job: anyone else gets 404, as for an unknown id', async () => {
    const gate = `${platform}:principal`;
    const mine = start(a, { tokens: 3, everyMs: 5, gate, holdAt: 1 }, { 'x-user': 'alice' });
    await mine.received(1);
    const url = at(b, mine.headers.get('content-location'));
    expect((await fetch(url, { headers: { 'x-user': 'mallory' } })).status).toBe(404);
    expect((await fetch(url)).status).toBe(404);
    expect((await fetch(url, { method: 'DELETE', headers: { 'x-user': 'mallory' } })).status).toBe(
      404,
    );
    expect((await fetch(`${b.url}/generate/AAAAAAAAAAAAAAAAAAAAAA`)).status).toBe(404);
    expect((await fetch(`${b.url}/generate/not-an-id`)).status).toBe(404);
    // Mallory's cancel did nothing: the job runs on to its end.
    expect(runs[0].signal.aborted).toBe(false);
    const alice = resume(url, { 'x-user': 'alice', 'last-event-id': '1' });
    await alice.opened;
    expect(alice.status).toBe(200);
    openGate(gate);
    await Promise.all([mine.ended, alice.ended]);
    expect(tokensOf(mine.events)).toEqual(['t0', 't1', 't2']);
    expect(mine.events[mine.events.length - 1].event).toBe('done');
    expect(tokensOf(alice.events)).toEqual(['t1', 't2']);
    expect(runs[0].signal.aborted).toBe(false);
  });

  it('POST-started plain streams: @Sse({ method: "POST" })', async () => {
    const echo = new FetchedStream(`${a.url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ words: ['one', 'two'] }),
    });
    await echo.ended;
    expect(echo.events.map((e) => e.data)).toEqual(['one', 'two']);
  });
});

describe('@SseJob() with an owner rule of its own (SSE_JOB_OWNER_RESOLVER)', () => {
  it('lets every member of the owning team resume the job, and no one else', async () => {
    // Jobs belong to the team in `x-team`; idempotency scopes stay per user.
    const teams = {
      resolve: (request: { headers: Record<string, unknown> }) =>
        request.headers['x-team'] as string | undefined,
    };
    const prefix = uniquePrefix('jobowner');
    const app = await startApp(
      [GenerateController],
      {
        redis: { url: redisUrl(), keyPrefix: prefix },
        providers: [{ provide: SSE_JOB_OWNER_RESOLVER, useValue: teams }],
      },
      { providers: [UserGuard] },
    );
    try {
      const job = new FetchedStream(`${app.url}/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-user': 'alice', 'x-team': 'blue' },
        body: JSON.stringify({ tokens: 2 }),
      });
      await job.ended;
      const url = `${app.url}${job.headers.get('content-location')}`;
      const asBob = new FetchedStream(url, {
        headers: { 'x-user': 'bob', 'x-team': 'blue', 'last-event-id': '1' },
      });
      await asBob.ended;
      expect(asBob.status).toBe(200);
      expect(asBob.events.map((e) => e.id)).toEqual(['2', '3']);
      expect((await fetch(url, { headers: { 'x-user': 'alice', 'x-team': 'red' } })).status).toBe(
        404,
      );
    } finally {
      await app.close();
      await deletePrefix(redisUrl(), prefix);
    }
  });
});

/** A job route declared on a base class: a route of every controller that extends it. */
class JobsBase {
  @SseJob('generate')
  generate() {
    return of({ data: 'x' });
  }
}

@Controller('inherited')
class InheritedJobsController extends JobsBase {}

describe('@SseJob() without redis', () => {
  it('fails bootstrap naming the option', async () => {
    await expect(startApp([GenerateController], {}, { providers: [UserGuard] })).rejects.toThrow(
      /GenerateController.generate.*configure the redis option/,
    );
  });

  it('fails bootstrap for a job route declared on a base controller too', async () => {
    await expect(startApp([InheritedJobsController], {})).rejects.toThrow(
      /InheritedJobsController.generate.*configure the redis option/,
    );
  });
});
