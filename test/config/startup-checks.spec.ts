// What start-up says about the app's mistakes and silent fallbacks (issue 25): a second
// SseModule.forRoot(), @Idempotent() on process memory outside production, Nest's own @Sse.
import { Controller, LoggerService, Module, Post, Sse as NestSse } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { interval, map } from 'rxjs';
import { Idempotent, Sse, SSE_LOGGER, SseModule } from '../../src';
import { redisUrl } from '../support/redis';

class CollectingLogger implements LoggerService {
  readonly lines: Array<[string, string]> = [];
  log = (message: string) => this.lines.push(['log', message]);
  warn = (message: string) => this.lines.push(['warn', message]);
  error = (message: string) => this.lines.push(['error', message]);
  withId(id: string) {
    return this.lines.filter(([, message]) => message.startsWith(`[${id}] `));
  }
}

async function init(imports: unknown[], controllers: unknown[] = []) {
  const moduleRef = await Test.createTestingModule({
    imports: imports as never[],
    controllers: controllers as never[],
  }).compile();
  const app = moduleRef.createNestApplication({ logger: false });
  try {
    await app.init();
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  return app;
}

describe('a second SseModule.forRoot()', () => {
  @Module({ imports: [SseModule.forRoot({ sse: { maxConnections: 5 } })] })
  class OrdersModule {}

  it('fails start-up naming the modules that import it, instead of one set of options winning', async () => {
    await expect(init([SseModule.forRoot(), OrdersModule])).rejects.toThrow(
      /SseModule\.forRoot\(\) is imported 2 times in this application \(by \w+, OrdersModule\).*Import it once, in the root module/,
    );
  });
});

describe('@Idempotent() without redis', () => {
  @Controller()
  class OrdersController {
    @Post('orders')
    @Idempotent()
    place() {
      return { ok: true };
    }
  }

  it('says once at start-up that records stay in this process', async () => {
    const logger = new CollectingLogger();
    const app = await init(
      [SseModule.forRoot({ providers: [{ provide: SSE_LOGGER, useValue: logger }] })],
      [OrdersController],
    );
    await app.close();
    expect(logger.withId('idempotency.memory-store')).toEqual([
      ['warn', expect.stringMatching(/in this process \(no `redis` option\).*Set redis\.url/)],
    ]);
  });

  it('says nothing with redis, or without idempotent routes', async () => {
    const withRedis = new CollectingLogger();
    const noRoutes = new CollectingLogger();
    await (
      await init(
        [
          SseModule.forRoot({
            redis: { url: redisUrl() },
            providers: [{ provide: SSE_LOGGER, useValue: withRedis }],
          }),
        ],
        [OrdersController],
      )
    ).close();
    await (
      await init([SseModule.forRoot({ providers: [{ provide: SSE_LOGGER, useValue: noRoutes }] })])
    ).close();
    expect(withRedis.withId('idempotency.memory-store')).toEqual([]);
    expect(noRoutes.withId('idempotency.memory-store')).toEqual([]);
  });
});

describe("Nest's own @Sse", () => {
  @Controller()
  class TicksController {
    @NestSse('nest-ticks') // the import a team meant to be this package's
    nestTicks() {
      return interval(1000).pipe(map((n) => ({ data: n })));
    }

    @Sse('ticks')
    ticks() {
      return interval(1000).pipe(map((n) => ({ data: n })));
    }
  }

  it('is named at start-up, route by route; this package’s is not', async () => {
    const logger = new CollectingLogger();
    const app = await init(
      [SseModule.forRoot({ providers: [{ provide: SSE_LOGGER, useValue: logger }] })],
      [TicksController],
    );
    await app.close();
    expect(logger.withId('sse.nest-sse-route')).toEqual([
      [
        'warn',
        expect.stringMatching(
          /^\[sse\.nest-sse-route\] TicksController\.nestTicks uses @Sse from '@nestjs\/common'/,
        ),
      ],
    ]);
  });
});
