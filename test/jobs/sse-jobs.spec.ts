import {
  BadRequestException,
  Body,
  CanActivate,
  Controller,
  ExecutionContext,
  Injectable,
  UseGuards,
} from '@nestjs/common';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import * as net from 'node:net';
import * as path from 'node:path';
import {
  concat,
  defer,
  ignoreElements,
  interval,
  map,
  Observable,
  range,
  take,
  tap,
  throwError,
} from 'rxjs';
import {
  Idempotent,
  Sse,
  SSE_CLIENT_KEY_RESOLVER,
  SseConnectionRegistry,
  SseJob,
  SseJobs,
  SseJobSignal,
  SseModuleExtras,
  SseModuleOptions,
  SseRequest,
} from '../../src';
import { raceTimeout } from '../../src/common/timeout';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { eventually } from '../support/outbox';
import { deletePrefix, redisUrl, uniquePrefix } from '../support/redis';
import { FetchedStream, WireEvent } from '../support/sse-fetch';

interface Generate {
  tokens: number;
  everyMs?: number;
  /** Bytes of padding per token (big events). */
  pad?: number;
  fail?: 'http' | 'crash';
  /** Holds the job after `holdAt` tokens until the test opens this gate ({@link openGate}). */
  gate?: string;
  holdAt?: number;
}

/** Gates by name: a job held at one runs on only when its test says, however loaded the machine. */
const gates = new Map<string, { open: () => void; opened: Promise<void> }>();
function gateOf(name: string) {
  let gate = gates.get(name);
  if (!gate) {
    let open!: () => void;
    const opened = new Promise<void>((resolve) => (open = resolve));
    gates.set(name, (gate = { open, opened }));
  }
  return gate;
}
const openGate = (name: string) => gateOf(name).open();

/** Handler runs and the signals they were given, by test. */
const runs: Array<{ body: Generate; signal: AbortSignal }> = [];
let flooded = 0;

/** `x-user` is the principal (as a real auth guard would set req.user). */
@Injectable()
class UserGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    const user = request.headers['x-user'];
    if (user) request.user = { id: user };
    return true;
  }
}

function tokens(body: Generate): Observable<unknown> {
  const run = (first: number, count: number) =>
    interval(body.everyMs ?? 10).pipe(
      take(count),
      map((i) => ({
        type: 'token',
        data: `t${first + i}${body.pad ? ` ${'x'.repeat(body.pad)}` : ''}`,
      })),
    );
  const held = body.gate === undefined ? body.tokens : Math.min(body.holdAt ?? 0, body.tokens);
  const stream =
    body.gate === undefined
      ? run(0, body.tokens)
      : concat(
          run(0, held),
          defer(() => gateOf(body.gate!).opened).pipe(ignoreElements()),
          run(held, body.tokens - held),
        );
  if (!body.fail) return stream;
  const failure =
    body.fail === 'http'
      ? new BadRequestException('the prompt was refused')
      : new Error('secret connection string postgres://admin:hunter2@db');
  return concat(
    stream,
    throwError(() => failure),
  );
}

@Controller()
@UseGuards(UserGuard)
class GenerateController {
  @SseJob('generate')
  generate(@Body() body: Generate, @SseJobSignal() signal: AbortSignal) {
    runs.push({ body, signal });
    return tokens(body);
  }

  @Idempotent()
  @SseJob('generate-once')
  generateOnce(@Body() body: Generate, @SseJobSignal() signal: AbortSignal) {
    runs.push({ body, signal });
    return tokens(body);
  }

  /** The decorators the other way round: the same behaviour. */
  @SseJob('generate-once-too')
  @Idempotent()
  generateOnceToo(@Body() body: Generate, @SseJobSignal() signal: AbortSignal) {
    runs.push({ body, signal });
    return tokens(body);
  }

  /** A synchronous source far longer than the job's bounds (values produced are counted). */
  @SseJob('flood')
  flood() {
    return range(0, 1_000_000).pipe(
      tap(() => flooded++),
      map((i) => ({ type: 'token', data: `t${i}` })),
    );
  }

  /** Nest's @Sse parity: a plain stream started by a POST with a body. */
  @Sse('echo', { method: 'POST' })
  echo(@Body() body: { words: string[] }) {
    return new Observable((subscriber) => {
      for (const word of body.words) subscriber.next({ data: word });
      subscriber.complete();
    });
  }
}

/** The client key from `x-client`, so one test can be several clients. */
const byHeader = {
  provide: SSE_CLIENT_KEY_RESOLVER,
  useValue: { resolve: (request: SseRequest) => String(request.headers['x-client'] ?? 'anon') },
};

const tokensOf = (events: WireEvent[]) =>
  events.filter((e) => e.event === 'token').map((e) => e.data);

describe.each(PLATFORMS)('on %s: resumable job streams (real Redis)', (platform) => {
  const prefix = uniquePrefix('jobs');
  let a: TestApp;
  let b: TestApp;
  const options = (
    jobs: SseModuleOptions['jobs'] = {},
    sse: SseModuleOptions['sse'] = {},
    providers: SseModuleExtras['providers'] = [],
  ): SseModuleOptions & SseModuleExtras => ({
    providers,
    sse: { heartbeatMs: 60_000, ...sse },
    redis: { url: redisUrl(), keyPrefix: prefix },
    jobs: { followIntervalMs: 20, ...jobs },
    shutdown: { drainMs: 0, graceMs: 1_000 },
  });
  const streams: FetchedStream[] = [];
  const start = (
    app: TestApp,
    body: Generate,
    headers: Record<string, string> = {},
    path = 'generate',
  ) => {
    const stream = new FetchedStream(`${app.url}/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
    streams.push(stream);
    return stream;
  };
  const resume = (url: string, headers: Record<string, string> = {}) => {
    const stream = new FetchedStream(url, { headers });
    streams.push(stream);
    return stream;
  };
  const at = (app: TestApp, contentLocation: string | null) => `${app.url}${contentLocation}`;

  beforeAll(async () => {
    a = await startApp([GenerateController], options(), { platform, providers: [UserGuard] });
    b = await startApp([GenerateController], options(), { platform, providers: [UserGuard] });
  });
  beforeEach(() => (runs.length = 0));
  afterEach(() => streams.splice(0).forEach((s) => s.cut()));
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await deletePrefix(redisUrl(), prefix);
  });

  it('runs on when the client is cut; resumed on another instance, every token once, in order, then done; then 204', async () => {
    const first = start(a, { tokens: 30, everyMs: 15 });
    await first.opened;
    expect(first.status).toBe(200);
    const location = first.headers.get('content-location');
    expect(location).toMatch(/^\/generate\/[A-Za-z0-9_-]{22}$/);
    await first.received(5);
    first.cut();
    const seen = first.events.slice();
    const lastId = seen[seen.length - 1].id!;

    const rest = resume(at(b, location), { 'last-event-id': lastId });
    await rest.ended;
    expect(rest.status).toBe(200);
    const all = [...seen, ...rest.events];
    expect(tokensOf(all)).toEqual(Array.from({ length: 30 }, (_, i) => `t${i}`));
    expect(all.map((e) => e.id)).toEqual(Array.from({ length: 31 }, (_, i) => String(i + 1)));
    expect(all[all.length - 1]).toMatchObject({ event: 'done', id: '31' });
    expect(runs).toHaveLength(1);

    // EventSource reconnects after the end with the last id: 204 stops it.
    const after = await fetch(at(a, location), { headers: { 'last-event-id': '31' } });
    expect(after.status).toBe(204);
    // Without an id: the whole job again, from its log.
    const replay = resume(at(a, location));
    await replay.ended;
    expect(tokensOf(replay.events)).toHaveLength(30);
  });

  it('follows live from another instance while the job runs there', async () => {
    const gate = `${platform}:follow-live`;
    const first = start(a, { tokens: 20, everyMs: 5, gate, holdAt: 10 });
    await first.received(10);
    const follower = resume(at(b, first.headers.get('content-location')));
    // The job is held after 10 tokens: the follower has them, and no end, while it still runs.
    await follower.received(10);
    expect(follower.events.map((e) => e.event)).toEqual(Array(10).fill('token'));
    expect(runs[0].signal.aborted).toBe(false);
    openGate(gate);
    // What the job emits from now on reaches the follower live.
    await Promise.all([first.ended, follower.ended]);
    expect(tokensOf(follower.events)).toEqual(Array.from({ length: 20 }, (_, i) => `t${i}`));
    expect(tokensOf(follower.events)).toEqual(tokensOf(first.events));
    expect(follower.events[follower.events.length - 1].event).toBe('done');
  });

  it.each(['generate-once', 'generate-once-too'])(
    'with @Idempotent(), a retried POST attaches to the same job: the handler ran once (%s)',
    async (route) => {
      const headers = { 'idempotency-key': `job-${platform}-${route}` };
      const first = start(a, { tokens: 10, everyMs: 20 }, headers, route);
      await first.received(3);
      first.cut();
      const retry = start(
        b,
        { tokens: 10, everyMs: 20 },
        { ...headers, 'last-event-id': first.events[2].id! },
        route,
      );
      await retry.ended;
      expect(retry.status).toBe(200);
      expect(retry.headers.get('content-location')).toBe(first.headers.get('content-location'));
      expect(tokensOf([...first.events.slice(0, 3), ...retry.events])).toEqual(
        Array.from({ length: 10 }, (_, i) => `t${i}`),
      );
      expect(runs).toHaveLength(1);
      // Same key, another body: 422 as for any idempotent request.
      const other = await fetch(`${b.url}/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ tokens: 11 }),
      });
      expect(other.status).toBe(422);
    },
  );

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

  it('cuts a job client that stops reading (slow consumer); the job runs on and a resume gets it all', async () => {
    const c = await startApp(
      [GenerateController],
      options(
        { maxBytes: 128 * 1024 * 1024, maxEvents: 2000 },
        { maxBufferedBytes: 64 * 1024, slowConsumerMs: 200 },
      ),
      { platform, providers: [UserGuard] },
    );
    try {
      // A client that reads the response head, then nothing more.
      const { hostname, port } = new URL(c.url);
      // 31 MiB: loopback's socket buffers take several MiB before the backlog shows.
      const body = JSON.stringify({ tokens: 1000, everyMs: 1, pad: 32 * 1024 });
      const socket = net.connect({ host: hostname, port: Number(port) });
      socket.write(
        `POST /generate HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      );
      let head = '';
      await new Promise<void>((resolve) => {
        const onData = (chunk: Buffer) => {
          head += chunk.toString('latin1');
          if (!head.includes('retry:')) return;
          socket.off('data', onData);
          socket.pause();
          resolve();
        };
        socket.on('data', onData);
      });
      const location = /content-location: (\S+)/i.exec(head)![1];
      const registry = c.app.get(SseConnectionRegistry);
      await eventually(() => registry.stats.slowConsumers >= 1, 'the stalled client cut');
      // Its connection was closed by the server (seen once the client reads again).
      const closed = once(socket, 'close');
      socket.on('data', () => undefined);
      socket.resume();
      await raceTimeout(closed, 10_000, () => {
        throw new Error('the stalled client was never closed');
      });
      // From another instance: the log is shared, and this one's limits are for the stalled client.
      const rest = resume(at(a, location));
      await rest.ended;
      expect(tokensOf(rest.events).map((t) => t.split(' ')[0])).toEqual(
        Array.from({ length: 1000 }, (_, i) => `t${i}`),
      );
      expect(rest.events[rest.events.length - 1].event).toBe('done');
    } finally {
      await c.close();
    }
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
      flooded = 0;
      const flood = start(small, { tokens: 0 }, {}, 'flood');
      await flood.ended;
      expect(tokensOf(flood.events)).toHaveLength(5);
      expect(flooded).toBeLessThan(10); // the source was stopped, not drained
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

describe('@SseJob() without redis', () => {
  it('fails bootstrap naming the option', async () => {
    await expect(startApp([GenerateController], {}, { providers: [UserGuard] })).rejects.toThrow(
      /GenerateController.generate.*configure the redis option/,
    );
  });
});
