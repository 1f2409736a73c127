import { Controller } from '@nestjs/common';
import { of } from 'rxjs';
import { SseJob } from '../../src';
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
