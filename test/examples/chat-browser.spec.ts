/// <reference lib="dom" />
// Page functions below run in the browser.
import { answerTo } from '../../examples/generate/fake-model';
import { useGenerateDemo } from '../support/generate-demo';
import { PLATFORMS } from '../support/http';

/**
 * The demo's `/chat` page in a real browser, on the `ai` package's own client (AbstractChat +
 * DefaultChatTransport, resumeStream() on load as useChat({ resume: true })): a question, a
 * reload mid-answer, and the page ends with the whole answer once, from one model call.
 */
describe.each(PLATFORMS)('the AI SDK chat page in Chromium on %s (real Redis)', (platform) => {
  jest.setTimeout(60_000);
  const demo = useGenerateDemo(platform, 'aichat');

  it('reloaded mid-answer, the page ends with the whole answer once, from one model call', async () => {
    const page = await demo.browser.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(`${demo.t.url}/chat`);
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'ready');
    await page.fill('#prompt', 'why resume');
    await page.click('button');
    const assistant = () =>
      Array.from(document.querySelectorAll('[data-role="assistant"]')).map(
        (e) => e.textContent ?? '',
      );
    await page.waitForFunction(
      (read) => (new Function(`return (${read})()`)() as string[]).join('').split(' ').length > 15,
      assistant.toString(),
    );
    const before = (await page.evaluate(assistant)).join('');
    expect(await page.textContent('#state')).toBe('streaming');

    await page.reload();
    await page.waitForFunction(
      (read) =>
        document.getElementById('state')?.textContent === 'ready' &&
        (new Function(`return (${read})()`)() as string[]).join('').length > 0,
      assistant.toString(),
    );
    const messages = await page.evaluate(assistant);
    const answer = answerTo('why resume', 80).join('');
    expect(messages).toEqual([answer]);
    expect(answer.startsWith(before)).toBe(true);
    expect(demo.model.generations).toBe(1);
    expect(errors).toEqual([]);
    await page.close();
  });
});
