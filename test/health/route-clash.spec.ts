// The app's own /health next to the module's: start-up fails with what to do, on both platforms,
// whatever the registration order; apps that keep them apart boot with both answering.
import { Controller, Get, INestApplication, Module } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { AddressInfo } from 'node:net';
import { SseModule, SseModuleOptions } from '../../src';
import { SseRouteClashError } from '../../src/health/route-clash';
import { createNestApp, PLATFORMS } from '../support/http';

@Controller('health')
class HealthController {
  @Get()
  check() {
    return { app: 'health' };
  }
}

@Controller()
class LivenessController {
  @Get('health/live')
  live() {
    return { app: 'live' };
  }
}

/** A module of the app's, imported before SseModule: its routes are registered first. */
@Module({ controllers: [HealthController] })
class AppHealthModule {}

async function boot(
  platform: (typeof PLATFORMS)[number],
  metadata: { imports?: unknown[]; controllers?: unknown[] },
  prefix?: Parameters<INestApplication['setGlobalPrefix']>,
): Promise<{ app: INestApplication; url: string }> {
  const moduleRef = await Test.createTestingModule({
    imports: metadata.imports as never[],
    controllers: (metadata.controllers ?? []) as never[],
  }).compile();
  const app = createNestApp(moduleRef, platform, { logger: false });
  if (prefix) app.setGlobalPrefix(...prefix);
  try {
    await app.listen(0, '127.0.0.1');
  } catch (error) {
    await app.close().catch(() => undefined);
    throw error;
  }
  const { port } = app.getHttpServer().address() as AddressInfo;
  return { app, url: `http://127.0.0.1:${port}` };
}

const sse = (options: SseModuleOptions = {}) => SseModule.forRoot({ ...options });

describe.each(PLATFORMS)('on %s', (platform) => {
  it('refuses to start when the app maps /health too, naming its controller and both ways out', async () => {
    const booting = boot(platform, { imports: [sse()], controllers: [HealthController] });
    await expect(booting).rejects.toThrow(SseRouteClashError);
    await expect(booting).rejects.toThrow(
      /GET \/health is mapped twice — by this module \(health\.path: 'health'\) and by your app \(HealthController\.check\).*health\.path.*health\.path: false.*SseHealthIndicators/,
    );
  });

  it('refuses in the other registration order and under a global prefix, and for /health/live', async () => {
    await expect(boot(platform, { imports: [AppHealthModule, sse()] }, ['api'])).rejects.toThrow(
      /GET \/api\/health is mapped twice.*HealthController\.check/,
    );
    await expect(
      boot(platform, { imports: [sse()], controllers: [LivenessController] }),
    ).rejects.toThrow(/GET \/health\/live is mapped twice.*LivenessController\.live/);
  });

  it("starts when they are kept apart: health.path moved, or turned off for the app's own", async () => {
    const moved = await boot(platform, {
      imports: [sse({ health: { path: 'sse-health' } })],
      controllers: [HealthController],
    });
    // The app's controller uses SseHealthIndicators itself (docs/operations.md).
    const off = await boot(platform, {
      imports: [sse({ health: { path: false } })],
      controllers: [HealthController],
    });
    try {
      expect(await (await fetch(`${moved.url}/health`)).json()).toEqual({ app: 'health' });
      expect((await (await fetch(`${moved.url}/sse-health`)).json()).status).toBe('ok');
      expect(await (await fetch(`${off.url}/health`)).json()).toEqual({ app: 'health' });
      expect((await fetch(`${off.url}/health/live`)).status).toBe(404);
    } finally {
      await moved.app.close();
      await off.app.close();
    }
  });
});
