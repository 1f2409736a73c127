import {
  CallHandler,
  CanActivate,
  Controller,
  ExecutionContext,
  ForbiddenException,
  Injectable,
  NestInterceptor,
  Param,
  ParseIntPipe,
  UnauthorizedException,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { map, of, tap } from 'rxjs';
import { Sse, SseConnectionRegistry, SseHub } from '../../src';
import { get, openRaw, PLATFORMS, startApp, TestApp } from '../support/http';

const calls: string[] = [];
const callWaiters = new Map<string, () => void>();
function record(call: string) {
  calls.push(call);
  callWaiters.get(call)?.();
}
function whenCalled(call: string): Promise<void> {
  if (calls.includes(call)) return Promise.resolve();
  return new Promise((resolve) => callWaiters.set(call, resolve));
}

@Injectable()
class TokenGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const request = context.switchToHttp().getRequest();
    record('guard');
    if (request.headers.authorization === 'forbidden') throw new ForbiddenException('not yours');
    if (!request.headers.authorization) throw new UnauthorizedException();
    request.user = { id: request.headers.authorization };
    return true;
  }
}

@Injectable()
class RecordingInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    record('interceptor:before');
    return next.handle().pipe(tap({ complete: () => record('interceptor:complete') }));
  }
}

@Injectable()
class MappingInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(map((value) => ({ wrapped: value })));
  }
}

@Controller()
@UseGuards(TokenGuard)
@UseInterceptors(RecordingInterceptor)
class SecuredController {
  @Sse('orders/:id/stream', { topic: (req) => `orders:${req.params.id}:${req.user.id}` })
  order(@Param('id', ParseIntPipe) id: number) {
    record(`handler:${id}`);
  }

  @Sse('short')
  short() {
    record('handler:short');
    return of({ data: 'only' });
  }

  @UseInterceptors(MappingInterceptor)
  @Sse('mapped', { topic: 'mapped' })
  mapped() {}
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('guards, interceptors and pipes run before the stream opens', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp([SecuredController], { sse: { heartbeatMs: 60_000 } }, { platform });
    });
    afterAll(() => t.close());
    beforeEach(async () => {
      // Streams closed by an earlier test finish their interceptor chain asynchronously.
      await t.app.get(SseConnectionRegistry).whenEmpty();
      await new Promise<void>((resolve) => setImmediate(resolve));
      calls.splice(0);
      callWaiters.clear();
    });

    it('answers a guard rejection as an ordinary 401/403 response, not a stream', async () => {
      const unauthorized = await get(`${t.url}/orders/1/stream`);
      expect(unauthorized.status).toBe(401);
      expect(unauthorized.headers['content-type']).toMatch(/^application\/json/);
      expect(JSON.parse(unauthorized.body)).toMatchObject({ statusCode: 401 });

      const forbidden = await get(`${t.url}/orders/1/stream`, { authorization: 'forbidden' });
      expect(forbidden.status).toBe(403);
      expect(JSON.parse(forbidden.body)).toMatchObject({ statusCode: 403, message: 'not yours' });
      expect(calls).toEqual(['guard', 'guard']);
      expect(t.app.get(SseConnectionRegistry).size).toBe(0);
    });

    it('answers a pipe rejection as a 400 without running the handler or holding a slot', async () => {
      const bad = await get(`${t.url}/orders/abc/stream`, { authorization: 'u1' });
      expect(bad.status).toBe(400);
      expect(bad.headers['content-type']).toMatch(/^application\/json/);
      expect(calls).toEqual(['guard', 'interceptor:before']);
      expect(t.app.get(SseConnectionRegistry).size).toBe(0);
    });

    it('opens the stream after guard, interceptor, pipe and handler, with req.user available to the topic', async () => {
      const stream = await openRaw(`${t.url}/orders/5/stream`, { authorization: 'u1' });
      try {
        expect(stream.status).toBe(200);
        await stream.until((x) => x.startsWith('retry'));
        await whenCalled('interceptor:complete');
        expect(calls).toEqual(['guard', 'interceptor:before', 'handler:5', 'interceptor:complete']);
        t.app.get(SseHub).publish('orders:5:u1', { data: 'mine' });
        await stream.until((x) => x.includes('data: mine'));
      } finally {
        stream.close();
      }
    });

    it('completes outer interceptors once the stream is open, not when it ends', async () => {
      const stream = await openRaw(`${t.url}/orders/6/stream`, { authorization: 'u1' });
      try {
        await whenCalled('interceptor:complete');
        // Still open: Nest's request chain is released while the stream lives on.
        expect(stream.response.complete).toBe(false);
        t.app.get(SseHub).publish('orders:6:u1', { data: 'still here' });
        await stream.until((x) => x.includes('data: still here'));
      } finally {
        stream.close();
      }
    });

    it('ends a handler Observable stream when it completes', async () => {
      const stream = await openRaw(`${t.url}/short`, { authorization: 'u1' });
      await stream.ended;
      // retry: is sse.retryMs plus the stream's jitter, in [3000, 5000) by default.
      const retry = Number(/^retry: (\d+)\n\ndata: only\n\n$/.exec(stream.text())?.[1]);
      expect(retry).toBeGreaterThanOrEqual(3000);
      expect(retry).toBeLessThan(5000);
      expect(calls).toEqual([
        'guard',
        'interceptor:before',
        'handler:short',
        'interceptor:complete',
      ]);
    });

    it('explains an inner interceptor that replaced the stream result, as a 500 before streaming', async () => {
      const response = await get(`${t.url}/mapped`, { authorization: 'u1' });
      expect(response.status).toBe(500);
      expect(response.headers['content-type']).toMatch(/^application\/json/);
      expect(t.app.get(SseConnectionRegistry).size).toBe(0);
    });
  });
});
