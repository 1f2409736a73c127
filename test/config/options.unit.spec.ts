import { Controller, Injectable, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import {
  ResolvedSseModuleOptions,
  resolveSseModuleOptions,
  Sse,
  SSE_EVENT_SERIALIZER,
  SSE_MODULE_OPTIONS,
  SseConfigError,
  SseEventSerializer,
  SseHub,
  SseModule,
  SseModuleOptions,
  SseModuleOptionsFactory,
} from '../../src';
import {
  HEALTH_DEFAULTS,
  METRICS_DEFAULTS,
  IDEMPOTENCY_DEFAULTS,
  OUTBOX_DEFAULTS,
  POSTGRES_DEFAULTS,
  SSE_STREAM_DEFAULTS,
  SHUTDOWN_DEFAULTS,
  JOBS_DEFAULTS,
} from '../../src/config/sse-module-options';
import { RecordingEventSource } from '../support/event-source';
import { startApp } from '../support/http';

function issuesOf(run: () => unknown): string[] {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(SseConfigError);
    return (error as SseConfigError).issues.map((i) => i.path);
  }
  throw new Error('expected an SseConfigError');
}

describe('option validation (pure)', () => {
  it('applies documented defaults', () => {
    expect(resolveSseModuleOptions(undefined)).toEqual({
      sse: SSE_STREAM_DEFAULTS,
      postgres: undefined,
      outbox: OUTBOX_DEFAULTS,
      redis: undefined,
      idempotency: IDEMPOTENCY_DEFAULTS,
      health: HEALTH_DEFAULTS,
      metrics: METRICS_DEFAULTS,
      shutdown: SHUTDOWN_DEFAULTS,
      jobs: JOBS_DEFAULTS,
    });
    expect(resolveSseModuleOptions({ sse: { retryMs: 0 } }).sse).toEqual({
      ...SSE_STREAM_DEFAULTS,
      retryMs: 0,
    });
  });

  it('names every bad field at once, unknown ones included', () => {
    const paths = issuesOf(() =>
      resolveSseModuleOptions({
        sse: {
          heartbeatMs: -1,
          maxConnections: 0,
          rejectMode: 'loud',
          maxBufferedBytes: 1.5,
          typo: 1,
        },
        postgress: {},
      } as unknown as SseModuleOptions),
    );
    expect([...new Set(paths)].sort()).toEqual(
      [
        'postgress',
        'sse.heartbeatMs',
        'sse.maxBufferedBytes',
        'sse.maxConnections',
        'sse.rejectMode',
        'sse.typo',
      ].sort(),
    );
  });

  it('rejects a per-client limit above the instance limit', () => {
    expect(
      issuesOf(() =>
        resolveSseModuleOptions({ sse: { maxConnections: 10, maxConnectionsPerClient: 11 } }),
      ),
    ).toEqual(['sse.maxConnectionsPerClient']);
    expect(() =>
      resolveSseModuleOptions({ sse: { maxConnections: 10, maxConnectionsPerClient: 10 } }),
    ).not.toThrow();
  });

  it('rejects bad jobs options: a per-client job limit above the instance one, a tiny timeout', () => {
    expect(
      issuesOf(() =>
        resolveSseModuleOptions({
          jobs: { maxConcurrent: 2, maxConcurrentPerClient: 3, timeoutMs: 5, followIntervalMs: 0 },
        }),
      ).sort(),
    ).toEqual(['jobs.followIntervalMs', 'jobs.maxConcurrentPerClient', 'jobs.timeoutMs']);
  });

  it('resolves postgres options, keeping an existing pool instance as it is', () => {
    const pool = { connect: () => undefined, query: () => undefined, on: () => undefined };
    const resolved = resolveSseModuleOptions({
      postgres: { existingPool: pool as never, pool: { max: 3 } },
      outbox: { table: 'events', pollIntervalMs: 250 },
    });
    expect(resolved.postgres?.existingPool).toBe(pool);
    expect(resolved.postgres?.listenerClientFactory).toBeUndefined();
    expect(resolved.postgres?.pool).toEqual({ ...POSTGRES_DEFAULTS.pool, max: 3 });
    expect(resolved.postgres?.schema).toBe('public');
    expect(resolved.outbox).toEqual({ ...OUTBOX_DEFAULTS, table: 'events', pollIntervalMs: 250 });
  });

  it('rejects bad postgres and outbox options, naming each', () => {
    const paths = issuesOf(() =>
      resolveSseModuleOptions({
        postgres: { schema: 'Bad-Name', pool: { max: 2, min: 5 } },
        outbox: {
          table: 'x; drop table y',
          channel: '1abc',
          batchSize: 0,
          migrate: 'yes' as never,
        },
      }),
    );
    expect([...new Set(paths)].sort()).toEqual(
      [
        'outbox.batchSize',
        'outbox.channel',
        'outbox.migrate',
        'outbox.table',
        'postgres',
        'postgres.pool.min',
        'postgres.schema',
      ].sort(),
    );
    expect(
      issuesOf(() => resolveSseModuleOptions({ postgres: { existingPool: {} as never } })),
    ).toEqual(['postgres.existingPool']);
    expect(
      issuesOf(() =>
        resolveSseModuleOptions({
          postgres: { connectionString: 'postgres://x', listenerClientFactory: 'pg' as never },
        }),
      ),
    ).toEqual(['postgres.listenerClientFactory']);
    const factory = () => ({}) as never;
    expect(
      resolveSseModuleOptions({
        postgres: { connectionString: 'postgres://x', listenerClientFactory: factory },
      }).postgres?.listenerClientFactory,
    ).toBe(factory);
  });

  it("accepts fanout 'redis' only with both postgres and redis, and names what is missing", () => {
    const postgres = { connectionString: 'postgres://x' };
    const redis = { url: 'redis://x' };
    expect(
      resolveSseModuleOptions({ postgres, redis, outbox: { fanout: 'redis' } }).outbox,
    ).toMatchObject({ fanout: 'redis', streamMaxLength: 100_000, leaderCheckMs: 1_000 });
    expect(resolveSseModuleOptions({ postgres }).outbox.fanout).toBe('postgres');
    const missing = (options: SseModuleOptions) => {
      try {
        resolveSseModuleOptions(options);
      } catch (error) {
        return (error as SseConfigError).issues;
      }
      return [];
    };
    expect(missing({ postgres, outbox: { fanout: 'redis' } })).toEqual([
      expect.objectContaining({
        path: 'outbox.fanout',
        message: expect.stringMatching(/missing: redis\)$/),
      }),
    ]);
    expect(missing({ redis, outbox: { fanout: 'redis' } })).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/missing: postgres\)$/) }),
    ]);
    expect(
      issuesOf(() =>
        resolveSseModuleOptions({
          postgres,
          redis,
          outbox: { fanout: 'kafka' as never, streamMaxLength: 10, leaderCheckMs: 0 },
        }),
      ).sort(),
    ).toEqual(['outbox.fanout', 'outbox.leaderCheckMs', 'outbox.streamMaxLength']);
  });

  it('rejects bad redis and idempotency options, naming each', () => {
    const paths = issuesOf(() =>
      resolveSseModuleOptions({
        redis: { url: 'http://x', commandTimeoutMs: 0 },
        idempotency: {
          header: 'Bad Header',
          failMode: 'maybe' as never,
          keyMaxLength: 0,
          storedHeaders: [1 as never],
        },
      }),
    );
    expect([...new Set(paths)].sort()).toEqual(
      [
        'idempotency.failMode',
        'idempotency.header',
        'idempotency.keyMaxLength',
        'idempotency.storedHeaders',
        'redis.commandTimeoutMs',
        'redis.url',
      ].sort(),
    );
    expect(issuesOf(() => resolveSseModuleOptions({ redis: {} }))).toEqual(['redis']);
  });

  it('validates health and metrics route paths (or false)', () => {
    expect(
      [
        ...new Set(
          issuesOf(() =>
            resolveSseModuleOptions({ health: { path: '/health' }, metrics: { path: 'a b' } }),
          ),
        ),
      ].sort(),
    ).toEqual(['health.path', 'metrics.path']);
    expect(
      resolveSseModuleOptions({ health: { path: false }, metrics: { path: 'ops/metrics' } }),
    ).toMatchObject({
      health: { path: false },
      metrics: { path: 'ops/metrics' },
    });
  });

  it('caps the per-client default at a smaller instance limit instead of failing', () => {
    expect(
      resolveSseModuleOptions({ sse: { maxConnections: 5 } }).sse.maxConnectionsPerClient,
    ).toBe(5);
  });

  it('rejects non-object options and groups', () => {
    expect(issuesOf(() => resolveSseModuleOptions('x' as unknown as SseModuleOptions))).toEqual([
      '(root)',
    ]);
    expect(
      issuesOf(() => resolveSseModuleOptions({ sse: 5 } as unknown as SseModuleOptions)),
    ).toContain('sse');
  });

  it('takes numbers and booleans spelled as strings, as ConfigService and process.env give them', () => {
    const resolved = resolveSseModuleOptions({
      sse: { maxConnections: '500', heartbeatMs: ' 20000 ' },
      postgres: { connectionString: 'postgres://x@127.0.0.1/db', pool: { max: '4' } },
      shutdown: { drainMs: '0' },
      idempotency: { allowMemoryStoreInProduction: 'TRUE' },
    } as unknown as SseModuleOptions);
    expect(resolved.sse.maxConnections).toBe(500);
    expect(resolved.sse.heartbeatMs).toBe(20_000);
    expect(resolved.postgres!.pool.max).toBe(4);
    expect(resolved.shutdown.drainMs).toBe(0);
    expect(resolved.idempotency.allowMemoryStoreInProduction).toBe(true);
    // Converted, the number is validated as any other.
    expect(() =>
      resolveSseModuleOptions({ sse: { maxConnections: '0' } } as unknown as SseModuleOptions),
    ).toThrow(/sse\.maxConnections: maxConnections must not be less than 1 \(got 0\)/);
  });

  it('names a string that spells no number in one line per field, with the conversion', () => {
    let error: SseConfigError | undefined;
    try {
      resolveSseModuleOptions({
        sse: { maxConnections: '5.5', heartbeatMs: '' },
        outbox: { migrate: 'yes' },
      } as unknown as SseModuleOptions);
    } catch (caught) {
      error = caught as SseConfigError;
    }
    expect(error).toBeInstanceOf(SseConfigError);
    expect(error!.issues).toEqual([
      {
        path: 'sse.heartbeatMs',
        message: expect.stringMatching(/^must be an integer; got the string ""/),
      },
      {
        path: 'sse.maxConnections',
        message: expect.stringMatching(/^must be an integer; got the string "5\.5".*Number\(…\)/),
      },
      {
        path: 'outbox.migrate',
        message: expect.stringMatching(/^must be a boolean; got the string "yes"/),
      },
    ]);
  });

  it('says what it got and what it wanted', () => {
    expect(() => resolveSseModuleOptions({ sse: { heartbeatMs: 5 } })).toThrow(
      /sse\.heartbeatMs: heartbeatMs must not be less than 10 \(got 5\)/,
    );
  });
});

describe('SseModule bootstrap', () => {
  it('fails bootstrap with one error naming every bad field', async () => {
    const compiling = Test.createTestingModule({
      imports: [SseModule.forRoot({ sse: { heartbeatMs: 0, maxConnectionsPerClient: -2 } })],
    }).compile();
    await expect(compiling).rejects.toThrow(SseConfigError);
    await expect(compiling).rejects.toThrow(/sse\.heartbeatMs[\s\S]*sse\.maxConnectionsPerClient/);
  });

  it('forRootAsync: useFactory with injected dependencies from imported modules', async () => {
    @Injectable()
    class AppConfig {
      readonly heartbeat = 4321;
    }
    @Module({ providers: [AppConfig], exports: [AppConfig] })
    class AppConfigModule {}

    const moduleRef = await Test.createTestingModule({
      imports: [
        SseModule.forRootAsync({
          imports: [AppConfigModule],
          inject: [AppConfig],
          useFactory: async (config: AppConfig) => ({ sse: { heartbeatMs: config.heartbeat } }),
        }),
      ],
    }).compile();
    expect(moduleRef.get<ResolvedSseModuleOptions>(SSE_MODULE_OPTIONS).sse.heartbeatMs).toBe(4321);
  });

  it('forRootAsync: a factory that returns configuration strings boots (the getting-started example)', async () => {
    const env = { SSE_MAX_CONNECTIONS: '500', SSE_HEARTBEAT_MS: '20000' };
    @Injectable()
    class ConfigService {
      get<T = string>(key: keyof typeof env): T {
        return env[key] as T; // what @nestjs/config does: a string, whatever T says
      }
    }
    @Module({ providers: [ConfigService], exports: [ConfigService] })
    class ConfigModule {}
    const moduleRef = await Test.createTestingModule({
      imports: [
        SseModule.forRootAsync({
          imports: [ConfigModule],
          inject: [ConfigService],
          useFactory: (config: ConfigService) => ({
            sse: {
              maxConnections: config.get<number>('SSE_MAX_CONNECTIONS'),
              heartbeatMs: config.get<number>('SSE_HEARTBEAT_MS'),
            },
          }),
        }),
      ],
    }).compile();
    const { sse } = moduleRef.get<ResolvedSseModuleOptions>(SSE_MODULE_OPTIONS);
    expect([sse.maxConnections, sse.heartbeatMs]).toEqual([500, 20_000]);
  });

  it('forRootAsync: useClass, validated like forRoot', async () => {
    class BadOptions implements SseModuleOptionsFactory {
      createSseModuleOptions(): SseModuleOptions {
        return { sse: { retryMs: -5 } };
      }
    }
    await expect(
      Test.createTestingModule({
        imports: [SseModule.forRootAsync({ useClass: BadOptions })],
      }).compile(),
    ).rejects.toThrow(/sse\.retryMs/);
  });

  it('is global by default, so @Sse works in feature modules that do not import it', async () => {
    @Controller('feature')
    class FeatureController {
      @Sse('stream', { topic: 'feature' })
      stream() {}
    }
    @Module({ controllers: [FeatureController] })
    class FeatureModule {}

    const moduleRef = await Test.createTestingModule({
      imports: [SseModule.forRoot({}), FeatureModule],
    }).compile();
    await moduleRef.close();

    // Scoped, the feature module does not see it: start-up says so (see below).
    await expect(
      Test.createTestingModule({
        imports: [SseModule.forRoot({ isGlobal: false }), FeatureModule],
      })
        .compile()
        .then((scoped) => scoped.createNestApplication({ logger: false }).init()),
    ).rejects.toThrow(/@Sse\(\) routes need SseModule\.forRoot\(\)/);
  });
});

describe('@Sse() without the module', () => {
  @Controller()
  class TicksController {
    @Sse('ticks', { topic: 'ticks' })
    ticks() {}
  }
  @Module({ controllers: [TicksController] })
  class FeatureModule {}

  it.each([
    ['no SseModule at all', []],
    [
      'SseModule with isGlobal: false, not imported by the feature module',
      [SseModule.forRoot({ isGlobal: false })],
    ],
  ])('fails at start-up saying what is missing (%s)', async (_case, imports) => {
    const compiling = Test.createTestingModule({ imports: [...imports, FeatureModule] })
      .compile()
      .then((moduleRef) => moduleRef.createNestApplication({ logger: false }).init());
    await expect(compiling).rejects.toThrow(
      /@Sse\(\) routes need SseModule\.forRoot\(\) in this application \(and, with isGlobal: false, imported by the module of each controller/,
    );
  });
});

describe('custom providers', () => {
  class CountingSerializer implements SseEventSerializer {
    calls = 0;
    serialize(data: unknown): string {
      this.calls++;
      return `custom:${JSON.stringify(data)}`;
    }
  }

  @Controller()
  class BroadcastController {
    @Sse('all', { topic: 'all' })
    all() {}
  }

  it("replace defaults by token (the user's provider wins) and each event is encoded once per publish", async () => {
    const serializer = new CountingSerializer();
    const t = await startApp([BroadcastController], {
      sse: { heartbeatMs: 60_000 },
      providers: [{ provide: SSE_EVENT_SERIALIZER, useValue: serializer }],
    });
    const clients = Array.from({ length: 50 }, () => new RecordingEventSource(`${t.url}/all`));
    try {
      await Promise.all(clients.map((c) => c.opened()));
      expect(t.app.get(SSE_EVENT_SERIALIZER)).toBe(serializer);
      const reached = t.app.get(SseHub).publish('all', { id: '1', data: { n: 1 } });
      expect(reached).toBe(50);
      await Promise.all(clients.map((c) => c.received(1)));
      expect(clients.every((c) => c.events[0].data === 'custom:{"n":1}')).toBe(true);
      expect(serializer.calls).toBe(1);
    } finally {
      clients.forEach((c) => c.close());
      await t.close();
    }
  });
});
