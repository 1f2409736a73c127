/// <reference lib="dom" />
// Page functions below run in the browser.
import { answerTo } from '../../examples/generate/fake-model';
import { useGenerateDemo } from '../support/generate-demo';
import { PLATFORMS } from '../support/http';

/**
 * The generate demo in a real browser: a prompt starts a generation streamed over a POST; the
 * page is reloaded mid-answer, resumes with its own EventSource from the last id it kept, and
 * ends with the whole answer — every token once, in order — from one generation.
 */
describe.each(PLATFORMS)('the generate demo in Chromium on %s (real Redis)', (platform) => {
  jest.setTimeout(60_000);
  const demo = useGenerateDemo(platform, 'generate');

  it('survives a reload mid-generation: the page resumes and shows every token once, from one generation', async () => {
    const page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${demo.t.url}/`);
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
    expect(demo.model.generations).toBe(1);
    expect(errors).toEqual([]);
    await page.close();
  });
});
