/**
 * The app the job-stream suites run (test/jobs/sse-jobs-*.spec.ts): a generation that emits
 * tokens (held on a gate when a test says, failing when asked), and two instances of it on Redis.
 */
import {
  BadRequestException,
  Body,
  CanActivate,
  Controller,
  ExecutionContext,
  Injectable,
  UseGuards,
} from '@nestjs/common';
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
  SseJob,
  SseJobSignal,
  SseModuleExtras,
  SseModuleOptions,
  SseRequest,
} from '../../../src';
import { Platform, startApp, TestApp } from '../../support/http';
import { deletePrefix, redisUrl, uniquePrefix } from '../../support/redis';
import { FetchedStream, WireEvent } from '../../support/sse-fetch';

export interface Generate {
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
export const openGate = (name: string) => gateOf(name).open();

/** Handler runs and the signals they were given, by test. */
export const runs: Array<{ body: Generate; signal: AbortSignal }> = [];
/** Values the `flood` source produced (reset by its test). */
export const counters = { flooded: 0 };

/** `x-user` is the principal (as a real auth guard would set req.user). */
@Injectable()
export class UserGuard implements CanActivate {
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
export class GenerateController {
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
      tap(() => counters.flooded++),
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
export const byHeader = {
  provide: SSE_CLIENT_KEY_RESOLVER,
  useValue: { resolve: (request: SseRequest) => String(request.headers['x-client'] ?? 'anon') },
};

export const tokensOf = (events: WireEvent[]) =>
  events.filter((e) => e.event === 'token').map((e) => e.data);

/** Two instances of the app on one Redis (a key prefix of their own), and stream helpers. */
export interface JobApps {
  readonly a: TestApp;
  readonly b: TestApp;
  /** Module options on the same Redis and prefix, for further instances. */
  options(
    jobs?: SseModuleOptions['jobs'],
    sse?: SseModuleOptions['sse'],
    providers?: SseModuleExtras['providers'],
  ): SseModuleOptions & SseModuleExtras;
  /** POSTs a job to `app` (cut after the test). */
  start(
    app: TestApp,
    body: Generate,
    headers?: Record<string, string>,
    path?: string,
  ): FetchedStream;
  /** GETs a job's stream (cut after the test). */
  resume(url: string, headers?: Record<string, string>): FetchedStream;
  /** The absolute URL of a Content-Location on `app`. */
  at(app: TestApp, contentLocation: string | null): string;
}

/** Starts {@link JobApps} on `platform` before the enclosing describe's tests, stops them after. */
export function useJobApps(platform: Platform): JobApps {
  const prefix = uniquePrefix('jobs');
  const streams: FetchedStream[] = [];
  const env = {
    options: (
      jobs: SseModuleOptions['jobs'] = {},
      sse: SseModuleOptions['sse'] = {},
      providers: SseModuleExtras['providers'] = [],
    ): SseModuleOptions & SseModuleExtras => ({
      providers,
      sse: { heartbeatMs: 60_000, ...sse },
      redis: { url: redisUrl(), keyPrefix: prefix },
      jobs: { followIntervalMs: 20, ...jobs },
      shutdown: { drainMs: 0, graceMs: 1_000 },
    }),
    start: (
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
    },
    resume: (url: string, headers: Record<string, string> = {}) => {
      const stream = new FetchedStream(url, { headers });
      streams.push(stream);
      return stream;
    },
    at: (app: TestApp, contentLocation: string | null) => `${app.url}${contentLocation}`,
  } as JobApps & { a: TestApp; b: TestApp };

  beforeAll(async () => {
    env.a = await startApp([GenerateController], env.options(), {
      platform,
      providers: [UserGuard],
    });
    env.b = await startApp([GenerateController], env.options(), {
      platform,
      providers: [UserGuard],
    });
  });
  beforeEach(() => (runs.length = 0));
  afterEach(() => streams.splice(0).forEach((s) => s.cut()));
  afterAll(async () => {
    await env.a?.close();
    await env.b?.close();
    await deletePrefix(redisUrl(), prefix);
  });
  return env;
}
