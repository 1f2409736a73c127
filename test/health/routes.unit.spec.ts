// /health and /metrics are Nest routes: the app's global prefix, versioning, guards and
// interceptors apply to them as to its own routes.
import {
  CallHandler,
  CanActivate,
  Controller,
  ExecutionContext,
  Get,
  INestApplication,
  Injectable,
  NestInterceptor,
  VersioningType,
} from '@nestjs/common';
import { APP_GUARD, APP_INTERCEPTOR } from '@nestjs/core';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import type { AddressInfo } from 'node:net';
import { map } from 'rxjs';
import { SseHealthIndicators, SseModule } from '../../src';
import { createNestApp, PLATFORMS, startApp } from '../support/http';

@Injectable()
class KeyGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    return context.switchToHttp().getRequest().headers['x-key'] === 'let-me-in';
  }
}

/** Wraps every returned value: what @Res() handlers must not be subjected to. */
@Injectable()
class EnvelopeInterceptor implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(map((data) => ({ data })));
  }
}

async function listen(app: INestApplication): Promise<string> {
  await app.listen(0, '127.0.0.1');
  return `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
}

describe.each(PLATFORMS)('/health and /metrics as Nest routes on %s', (platform) => {
  it('sit under the global prefix and the default version', async () => {
    const t = await startApp(
      [],
      { metrics: { path: 'metrics' } },
      {
        platform,
        beforeListen: (app) => {
          app.setGlobalPrefix('api');
          app.enableVersioning({ type: VersioningType.URI, defaultVersion: '1' });
        },
      },
    );
    try {
      const ready = await fetch(`${t.url}/api/v1/health`);
      expect(ready.status).toBe(200);
      expect(ready.headers.get('cache-control')).toBe('no-store');
      expect(await ready.json()).toMatchObject({ status: 'ok', info: { sse: { status: 'up' } } });
      expect((await fetch(`${t.url}/api/v1/health/live`)).status).toBe(200);
      const metrics = await fetch(`${t.url}/api/v1/metrics`);
      expect(metrics.headers.get('content-type')).toMatch(/^text\/plain/);
      expect(await metrics.text()).toMatch(/^sse_open_connections 0$/m);
      for (const path of ['/health', '/health/live', '/metrics'])
        expect((await fetch(`${t.url}${path}`)).status).toBe(404);
    } finally {
      await t.close();
    }
  });

  it('pass the app’s global guards, and keep their bodies under a global interceptor', async () => {
    const t = await startApp(
      [],
      { metrics: { path: 'metrics' } },
      {
        platform,
        providers: [
          { provide: APP_GUARD, useClass: KeyGuard },
          { provide: APP_INTERCEPTOR, useClass: EnvelopeInterceptor },
        ],
      },
    );
    try {
      expect((await fetch(`${t.url}/health`)).status).toBe(403);
      expect((await fetch(`${t.url}/metrics`)).status).toBe(403);
      const ready = await fetch(`${t.url}/health`, { headers: { 'x-key': 'let-me-in' } });
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ok' }); // not { data: … }
      const metrics = await fetch(`${t.url}/metrics`, { headers: { 'x-key': 'let-me-in' } });
      expect(await metrics.text()).toMatch(/^# HELP sse_open_connections/m);
    } finally {
      await t.close();
    }
  });

  it('take their paths from forRootAsync, per app: two apps in one process keep their own', async () => {
    const build = async (health: string, metrics: string) => {
      const moduleRef = await Test.createTestingModule({
        imports: [
          SseModule.forRootAsync({
            useFactory: async () => ({ health: { path: health }, metrics: { path: metrics } }),
          }),
        ],
      }).compile();
      const app = createNestApp(moduleRef, platform, { logger: ['error'] });
      return { app, url: await listen(app) };
    };
    const one = await build('ops/ready', 'ops/metrics');
    const two = await build('healthz', 'prom');
    try {
      expect((await fetch(`${one.url}/ops/ready`)).status).toBe(200);
      expect((await fetch(`${one.url}/ops/ready/live`)).status).toBe(200);
      expect((await fetch(`${one.url}/ops/metrics`)).status).toBe(200);
      expect((await fetch(`${one.url}/healthz`)).status).toBe(404);
      expect((await fetch(`${two.url}/healthz`)).status).toBe(200);
      expect((await fetch(`${two.url}/prom`)).status).toBe(200);
      expect((await fetch(`${two.url}/ops/ready`)).status).toBe(404);
      expect((await fetch(`${two.url}/health`)).status).toBe(404);
    } finally {
      await one.app.close();
      await two.app.close();
    }
  });

  it('with health.path false, leave /health to the app’s own Terminus controller and the exported indicators', async () => {
    @Controller('health')
    class AppHealthController {
      constructor(
        private readonly health: HealthCheckService,
        private readonly indicators: SseHealthIndicators,
      ) {}

      @Get()
      @HealthCheck()
      check() {
        return this.health.check([
          ...this.indicators.readiness(),
          async () => ({ app: { status: 'up' as const } }),
        ]);
      }
    }
    const t = await startApp(
      [AppHealthController],
      { health: { path: false } },
      { platform, imports: [TerminusModule] },
    );
    try {
      const response = await fetch(`${t.url}/health`);
      expect(response.status).toBe(200);
      expect(await response.json()).toMatchObject({
        status: 'ok',
        info: { sse: { status: 'up' }, app: { status: 'up' } },
      });
      expect((await fetch(`${t.url}/health/live`)).status).toBe(404);
    } finally {
      await t.close();
    }
  });
});
