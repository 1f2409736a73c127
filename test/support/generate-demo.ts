import { Test } from '@nestjs/testing';
import { AddressInfo } from 'node:net';
import { Browser } from 'playwright-core';
import { FakeModel } from '../../examples/generate/fake-model';
import { GenerateModule } from '../../examples/generate/generate.module';
import { launchChromium } from './browser';
import { createNestApp, Platform, TestApp } from './http';
import { deletePrefix, redisUrl, uniquePrefix } from './redis';

/** What the generate demo's browser suites share: the demo on `platform`, its model, Chromium. */
export interface GenerateDemo {
  t: TestApp;
  model: FakeModel;
  browser: Browser;
}

/**
 * Registers beforeAll/afterAll that run the generate demo (real Redis, a key prefix of its own)
 * with a model of 80 tokens 25 ms apart, and Chromium; the returned object is filled in beforeAll.
 */
export function useGenerateDemo(platform: Platform, name: string): GenerateDemo {
  const prefix = uniquePrefix(name);
  const demo = {} as GenerateDemo;
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [GenerateModule.forRoot({ redisUrl: redisUrl(), keyPrefix: prefix })],
    }).compile();
    const app = createNestApp(moduleRef, platform, { logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    demo.t = { app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
    demo.model = app.get(FakeModel);
    demo.model.tokenMs = 25;
    demo.model.tokens = 80;
    demo.browser = await launchChromium();
  });
  afterAll(async () => {
    await demo.browser?.close();
    await demo.t?.close();
    await deletePrefix(redisUrl(), prefix);
  });
  return demo;
}
