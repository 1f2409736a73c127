/// <reference lib="dom" />
// Page functions below run in the browser.
import { Test } from '@nestjs/testing';
import { AddressInfo } from 'node:net';
import { Browser } from 'playwright-core';
import { answerTo, FakeModel } from '../../examples/generate/fake-model';
import { GenerateModule } from '../../examples/generate/generate.module';
import { launchChromium } from '../support/browser';
import { createNestApp, PLATFORMS, TestApp } from '../support/http';
import { deletePrefix, redisUrl, uniquePrefix } from '../support/redis';

/**
 * The generate demo in a real browser: a prompt starts a generation streamed over a POST; the
 * page is reloaded mid-answer, resumes with its own EventSource from the last id it kept, and
 * ends with the whole answer — every token once, in order — from one generation.
 */
describe.each(PLATFORMS)('the generate demo in Chromium on %s (real Redis)', (platform) => {
  jest.setTimeout(60_000);
  const prefix = uniquePrefix('generate');
  let browser: Browser | undefined;
  let t: TestApp;
  let model: FakeModel;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [GenerateModule.forRoot({ redisUrl: redisUrl(), keyPrefix: prefix })],
    }).compile();
    const app = createNestApp(moduleRef, platform, { logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    const { port } = app.getHttpServer().address() as AddressInfo;
    t = { app, url: `http://127.0.0.1:${port}`, close: () => app.close() };
    model = app.get(FakeModel);
    model.tokenMs = 25;
    model.tokens = 80;
    browser = await launchChromium();
  });
  afterAll(async () => {
    await browser?.close();
    await t?.close();
    await deletePrefix(redisUrl(), prefix);
  });

  it('survives a reload mid-generation: the page resumes and shows every token once, from one generation', async () => {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${t.url}/`);
    await page.fill('#prompt', 'why resume');
    await page.click('button');
    await page.waitForFunction(
      () => (document.getElementById('answer')?.textContent ?? '').split(' ').length > 15,
    );
    const before = await page.textContent('#answer');
    expect(await page.textContent('#state')).toBe('streaming');

    await page.reload();
    // The page shows what it had at once, then resumes from its last id.
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'done');
    const answer = await page.textContent('#answer');
    expect(answer).toBe(answerTo('why resume', 80).join(''));
    expect(answer!.startsWith(before!)).toBe(true);
    expect(model.generations).toBe(1);
    expect(errors).toEqual([]);
    await page.close();
  });
});
