import {
  ArgumentsHost,
  CallHandler,
  Catch,
  ClassSerializerInterceptor,
  ConflictException,
  Controller,
  ExceptionFilter,
  ExecutionContext,
  HttpException,
  Injectable,
  NestInterceptor,
  Param,
  Post,
  Res,
  Scope,
  UseFilters,
  UseInterceptors,
} from '@nestjs/common';
import { APP_INTERCEPTOR } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { once } from 'node:events';
import type { FastifyInstance } from 'fastify';
import type { ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Exclude } from 'class-transformer';
import { map, Observable, tap } from 'rxjs';
import {
  IDEMPOTENCY_STORE,
  Idempotent,
  IdempotencyStore,
  IdempotentReplay,
  SseModule,
} from '../../src';
import { IdempotencyExecutor } from '../../src/idempotency/idempotency-executor';
import { LeaseRenewer } from '../../src/idempotency/lease-renewer';
import { createNestApp, PLATFORMS, startApp, TestApp } from '../support/http';
import { deletePrefix, redisUrl, uniquePrefix } from '../support/redis';

// What is replayed is what went out the first time — after interceptors, serializers and exception
// filters — not the handler's value sent through them again.

const runs: Record<string, number> = {};
const ran = (name: string) => (runs[name] = (runs[name] ?? 0) + 1);
const seenErrors: unknown[] = [];
/** Told when a /silent request reaches its handler, with the close of its response. */
let onSilent: (server: { closed: Promise<unknown> }) => void = () => undefined;

class User {
  id!: number;
  name!: string;
  @Exclude() password!: string;
  constructor(fields: User) {
    Object.assign(this, fields);
  }
}

/** Wraps every result in an envelope, and records what errors pass through it. */
@Injectable()
class Envelope implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler): Observable<unknown> {
    return next.handle().pipe(
      map((data) => ({ data, servedBy: 'envelope' })),
      tap({ error: (error) => seenErrors.push(error) }),
    );
  }
}

/** What Express' res and Fastify's reply share, as these routes use it. */
interface Reply {
  status(code: number): Reply;
  type(contentType: string): Reply;
  send(body: unknown): void;
  raw?: ServerResponse;
}

/** Node's response under either platform's. */
const rawOf = (response: Reply) => response.raw ?? (response as unknown as ServerResponse);

@Catch(HttpException)
class HttpErrorFilter implements ExceptionFilter {
  catch(error: HttpException, host: ArgumentsHost): void {
    host
      .switchToHttp()
      .getResponse<Reply>()
      .status(error.getStatus())
      .send({ failed: error.message, by: 'HttpErrorFilter' });
  }
}

@Controller()
@UseInterceptors(Envelope)
class AccountsController {
  @Post('users')
  @Idempotent()
  create() {
    return new User({ id: ran('users'), name: 'ada', password: 'hunter2' });
  }

  // Declared above @Idempotent(): Nest would ask this filter first.
  @UseFilters(HttpErrorFilter)
  @Post('sold-out')
  @Idempotent()
  soldOut() {
    throw new ConflictException(`sold out #${ran('sold-out')}`);
  }

  @Post('binary')
  @Idempotent()
  binary(@Res() response: Reply) {
    response.type('application/octet-stream').send(Buffer.from([0xff, 0x00, 0xfe, ran('binary')]));
  }

  @Post('picky')
  @Idempotent({
    storeIf: () => {
      throw new Error('storeIf failed');
    },
  })
  picky() {
    return { picky: ran('picky') };
  }

  // Never answers: `late` returns only once the client has gone, `early` at once.
  @Post('silent/:mode')
  @Idempotent()
  async silent(@Param('mode') mode: string, @Res() response: Reply) {
    const closed = once(rawOf(response), 'close');
    onSilent({ closed });
    if (mode === 'late') await closed;
  }

  // Answers only once its client has gone.
  @Post('late-reply')
  @Idempotent()
  async lateReply(@Res({ passthrough: true }) response: Reply) {
    const closed = once(rawOf(response), 'close');
    onSilent({ closed });
    await closed;
    return { late: ran('late-reply') };
  }

  @Post('streamed')
  @Idempotent()
  streamed(@Res() reply: Reply) {
    const response = rawOf(reply);
    response.write(`part ${ran('streamed')};`);
    response.end('end');
  }
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('@Idempotent() replays what was sent, whatever interceptors and filters did', () => {
    const keyPrefix = uniquePrefix('idem-pipeline');
    let app: TestApp;
    let key = 0;
    const post = async (path: string, idempotencyKey: string) => {
      const response = await fetch(`${app.url}${path}`, {
        method: 'POST',
        headers: { 'idempotency-key': idempotencyKey },
      });
      return {
        status: response.status,
        headers: response.headers,
        bytes: Buffer.from(await response.arrayBuffer()),
      };
    };

    beforeAll(async () => {
      for (const name of Object.keys(runs)) delete runs[name];
      app = await startApp(
        [AccountsController],
        { redis: { url: redisUrl(), keyPrefix } },
        {
          platform,
          providers: [{ provide: APP_INTERCEPTOR, useClass: ClassSerializerInterceptor }],
        },
      );
    });
    afterAll(async () => {
      await app?.close();
      await deletePrefix(redisUrl(), keyPrefix);
    });

    it('replays the serialized response: an @Exclude()d field stays out, the envelope is not doubled', async () => {
      const k = `users-${++key}`;
      const first = await post('/users', k);
      // Only what this replay makes interceptors see (the list is shared by both platforms).
      seenErrors.length = 0;
      const replay = await post('/users', k);
      expect(JSON.parse(first.bytes.toString())).toEqual({
        data: { id: 1, name: 'ada' },
        servedBy: 'envelope',
      });
      expect(replay.status).toBe(201);
      expect(replay.bytes.equals(first.bytes)).toBe(true);
      expect(replay.headers.get('content-type')).toBe(first.headers.get('content-type'));
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(runs.users).toBe(1);
      // Interceptors see the replay as an error they can tell apart.
      expect(seenErrors.some((error) => error instanceof IdempotentReplay)).toBe(true);
    });

    it("replays an error as the route's own filter wrote it, even with that filter declared above @Idempotent()", async () => {
      const k = `sold-out-${++key}`;
      const first = await post('/sold-out', k);
      const replay = await post('/sold-out', k);
      expect(first.status).toBe(409);
      expect(JSON.parse(first.bytes.toString())).toEqual({
        failed: 'sold out #1',
        by: 'HttpErrorFilter',
      });
      expect(replay.status).toBe(409);
      expect(replay.bytes.equals(first.bytes)).toBe(true);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(runs['sold-out']).toBe(1);
    });

    it('replays a binary body byte for byte', async () => {
      const k = `binary-${++key}`;
      const first = await post('/binary', k);
      const replay = await post('/binary', k);
      expect([...first.bytes]).toEqual([0xff, 0x00, 0xfe, 1]);
      expect(replay.bytes.equals(first.bytes)).toBe(true);
      expect(replay.headers.get('content-type')).toBe('application/octet-stream');
      expect(runs.binary).toBe(1);
    });

    it('still sends the response when storeIf throws', async () => {
      const reply = await post('/picky', `picky-${++key}`);
      expect(reply.status).toBe(201);
      expect(JSON.parse(reply.bytes.toString())).toEqual({
        data: { picky: runs.picky },
        servedBy: 'envelope',
      });
    });

    it('stops renewing the lease of a request whose client left and that wrote no response', async () => {
      const renewer = (app.app.get(IdempotencyExecutor) as unknown as { renewer: LeaseRenewer })
        .renewer;
      for (const mode of ['early', 'late']) {
        const entered = new Promise<{ closed: Promise<unknown> }>(
          (resolve) => (onSilent = resolve),
        );
        const aborter = new AbortController();
        const reply = fetch(`${app.url}/silent/${mode}`, {
          method: 'POST',
          headers: { 'idempotency-key': `silent-${mode}-${++key}` },
          signal: aborter.signal,
        }).catch(() => undefined);
        const { closed } = await entered;
        expect(renewer.held).toBe(1);
        aborter.abort();
        await reply;
        await closed;
        // The handler's own continuation (for `late`) and the executor's run in microtasks.
        await new Promise(setImmediate);
        expect(renewer.held).toBe(0);
      }
    });

    it('stores a reply sent after its client left, so the retry replays it instead of running again', async () => {
      const store = app.app.get<IdempotencyStore>(IDEMPOTENCY_STORE);
      const complete = jest.spyOn(store, 'complete');
      try {
        const k = `late-${++key}`;
        const entered = new Promise<{ closed: Promise<unknown> }>(
          (resolve) => (onSilent = resolve),
        );
        const aborter = new AbortController();
        const gone = fetch(`${app.url}/late-reply`, {
          method: 'POST',
          headers: { 'idempotency-key': k },
          signal: aborter.signal,
        }).catch(() => undefined);
        const { closed } = await entered;
        aborter.abort();
        await gone;
        await closed;
        // The handler's reply is captured and stored although nobody receives it. Waits on the
        // store call itself (the handler resumes on the close, in this process's next turns).
        while (complete.mock.results.length === 0) await new Promise(setImmediate);
        expect(await complete.mock.results[0].value).toBe(true);
        const retry = await post('/late-reply', k);
        expect(retry.headers.get('idempotent-replayed')).toBe('true');
        expect(JSON.parse(retry.bytes.toString())).toEqual({
          data: { late: 1 },
          servedBy: 'envelope',
        });
        expect(runs['late-reply']).toBe(1);
      } finally {
        complete.mockRestore();
      }
    });

    it('does not store a response written in parts: the key is released and a retry runs', async () => {
      const k = `streamed-${++key}`;
      expect((await post('/streamed', k)).bytes.toString()).toBe('part 1;end');
      const again = await post('/streamed', k);
      expect(again.bytes.toString()).toBe('part 2;end');
      expect(again.headers.get('idempotent-replayed')).toBeNull();
    });
  });
});

describe('@Idempotent() reaches the module of its own application, through DI', () => {
  let requestScopedRuns = 0;
  @Controller({ path: 'scoped', scope: Scope.REQUEST })
  class RequestScopedController {
    @Post()
    @Idempotent()
    create() {
      return { run: ++requestScopedRuns };
    }
  }

  it.each(PLATFORMS)('works in a request-scoped controller on %s', async (platform) => {
    const t = await startApp([RequestScopedController], {}, { platform });
    try {
      const send = () =>
        fetch(`${t.url}/scoped`, { method: 'POST', headers: { 'idempotency-key': 'scoped' } });
      const first = await send();
      const replay = await send();
      expect(first.status).toBe(201);
      expect(replay.headers.get('idempotent-replayed')).toBe('true');
      expect(await replay.text()).toBe(await first.text());
    } finally {
      await t.close();
    }
  });

  it('keeps two applications in one process apart, one per platform, each with its own store', async () => {
    // In-memory stores: a key stored by one application is unknown to the other.
    const [express, fastify] = await Promise.all(
      PLATFORMS.map((platform) => startApp([RequestScopedController], {}, { platform })),
    );
    try {
      const send = (t: TestApp) =>
        fetch(`${t.url}/scoped`, { method: 'POST', headers: { 'idempotency-key': 'apart' } });
      const onExpress = await send(express);
      const onFastify = await send(fastify);
      expect(onFastify.headers.get('idempotent-replayed')).toBeNull();
      expect(await onFastify.json()).not.toEqual(await onExpress.json());
      expect((await send(express)).headers.get('idempotent-replayed')).toBe('true');
      expect((await send(fastify)).headers.get('idempotent-replayed')).toBe('true');
    } finally {
      await express.close();
      await fastify.close();
    }
  });
});

describe('@Idempotent() on Fastify behind a compression hook that runs first', () => {
  it('stores no compressed bytes it could not replay: the key is released and a retry runs', async () => {
    const keyPrefix = uniquePrefix('idem-gzip');
    const moduleRef = await Test.createTestingModule({
      imports: [SseModule.forRoot({ redis: { url: redisUrl(), keyPrefix } })],
      controllers: [AccountsController],
    }).compile();
    const app = createNestApp(moduleRef, 'fastify', { logger: ['error'] });
    // Added before the application starts, so it runs before the module's own onSend hook, as
    // a compression plugin registered early would.
    const fastify = app.getHttpAdapter().getInstance() as FastifyInstance;
    fastify.addHook('onSend', async (_request, reply, payload) => {
      if (typeof payload !== 'string') return payload;
      reply.header('content-encoding', 'gzip');
      return gzipSync(payload);
    });
    await app.listen(0, '127.0.0.1');
    const url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    try {
      const before = runs.users ?? 0;
      const send = () =>
        fetch(`${url}/users`, { method: 'POST', headers: { 'idempotency-key': 'gz' } });
      const first = await send();
      expect(first.headers.get('content-encoding')).toBe('gzip');
      expect(await first.json()).toMatchObject({ data: { id: before + 1, name: 'ada' } });
      const again = await send();
      expect(again.headers.get('idempotent-replayed')).toBeNull();
      expect(await again.json()).toMatchObject({ data: { id: before + 2, name: 'ada' } });
    } finally {
      await app.close();
      await deletePrefix(redisUrl(), keyPrefix);
    }
  });
});

describe('@Idempotent() without SseModule', () => {
  it.each(PLATFORMS)(
    'fails at start-up on %s and says what is missing, instead of running without idempotency',
    async (platform) => {
      const moduleRef = await Test.createTestingModule({
        controllers: [AccountsController],
      }).compile();
      const app = createNestApp(moduleRef, platform, { logger: false });
      try {
        await expect(app.init()).rejects.toThrow(
          /@Idempotent\(\) routes need SseModule\.forRoot\(\) in this application/,
        );
      } finally {
        await app.close();
      }
    },
  );
});
