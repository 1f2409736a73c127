/// <reference lib="dom" />
// Page functions below run in the browser.
import { AddressInfo } from 'node:net';
import { Browser } from 'playwright-core';
import { createOrdersApp, OrdersApp } from '../../examples/orders/app';
import type { Backends } from '../../examples/orders/backends';
import { SseConnectionRegistry } from '../../src/sse/sse-connection-registry';
import { launchChromium } from '../support/browser';
import { loggedIds, placeOrder as placeOrderAt, waitForLogged } from '../support/orders-page';
import { Nginx, startRepositoryNginx } from '../support/nginx';
import { FANOUTS } from '../support/outbox';
import { databaseUrl, dropSchema, uniqueSchema } from '../support/postgres';
import { deletePrefix, redisUrl } from '../support/redis';

/**
 * docker/ is a deployment users copy: nginx (the repository's nginx.conf as shipped) in front of
 * two instances of the example, here without Docker. Chromium opens the page through nginx; the
 * instance serving its stream is stopped mid-stream while the other keeps taking orders; the page
 * must resume through nginx on the other, with nothing missed and nothing twice. What nginx does
 * to a stream (buffering, retries, timeouts) is then tested, not assumed.
 */
describe.each(FANOUTS)(
  'docker/ topology in Chromium: nginx + two instances (fanout %s)',
  (fanout) => {
    jest.setTimeout(90_000);
    const schema = uniqueSchema('topology');
    const backends: Backends = {
      postgres: { kind: 'server', url: databaseUrl() },
      redis: { kind: 'server', url: redisUrl() },
      summary: 'servers',
    };
    let browser: Browser | undefined;
    let nginx: Nginx | undefined;
    const instances: Array<{ app: OrdersApp; url: string }> = [];

    const placeOrder = (baseUrl: string, item: string) =>
      placeOrderAt(baseUrl, item, `${schema}-${item}`);
    const openStreams = (instance: { app: OrdersApp }) =>
      instance.app.app.get(SseConnectionRegistry).stats.open;

    beforeAll(async () => {
      browser = await launchChromium();
      for (let i = 0; i < 2; i++) {
        const app = await createOrdersApp(backends, {
          logger: ['error'],
          schema,
          redisKeyPrefix: `${schema}:`,
          fanout,
          // As in docker-compose.yml: the proxy's X-Forwarded-For is trusted.
          trustProxy: 'loopback',
        });
        await app.app.listen(0, '127.0.0.1');
        const { port } = app.app.getHttpServer().address() as AddressInfo;
        instances.push({ app, url: `http://127.0.0.1:${port}` });
      }
      nginx = await startRepositoryNginx([
        instances[0].url.replace('http://', ''),
        instances[1].url.replace('http://', ''),
      ]);
    });
    afterAll(async () => {
      await browser?.close();
      await nginx?.close();
      for (const { app } of instances) await app.close();
      await dropSchema(schema);
      await deletePrefix(redisUrl(), `${schema}:`);
    });

    it('resumes the page on the other instance through nginx when the one serving its stream stops: no gap, no duplicate', async () => {
      const page = await browser!.newPage();
      const errors: string[] = [];
      page.on('pageerror', (error) => errors.push(error.message));
      // Every state the page shows: a 'closed' would mean nginx answered the reconnect with an
      // error, and the page had to start over by itself.
      await page.exposeFunction('recordState', (state: string) => states.push(state));
      const states: string[] = [];
      await page.addInitScript(() => {
        new MutationObserver(() => {
          const state = document.getElementById('state')?.textContent ?? '';
          (window as unknown as { recordState(s: string): void }).recordState(state);
        }).observe(document, { subtree: true, childList: true, characterData: true });
      });
      await page.goto(`${nginx!.url}/`);
      await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open');

      const ids = [await placeOrder(nginx!.url, `${fanout}-first`)];
      await waitForLogged(page, 1);
      const serving = instances.findIndex((i) => openStreams(i) > 0);
      expect(serving).toBeGreaterThanOrEqual(0);
      const other = instances[1 - serving];
      expect(openStreams(other)).toBe(0);

      // Orders keep coming through the other instance while the serving one stops mid-stream.
      ids.push(await placeOrder(other.url, `${fanout}-before-stop`));
      await waitForLogged(page, 2);
      const stopping = instances[serving].app.close();
      for (const item of ['during-1', 'during-2', 'during-3'])
        ids.push(await placeOrder(other.url, `${fanout}-${item}`));
      await stopping;
      // Right away, before anything else marks the stopped instance as failed in nginx: whichever
      // instance nginx picks for a stream, a stopped one must cost the client nothing (refused
      // before anything was sent, nginx must try the other rather than answer 502, on which a
      // plain EventSource gives up for good).
      for (let i = 0; i < 4; i++) {
        const response = await fetch(`${nginx!.url}/orders/stream`, {
          headers: { 'last-event-id': ids[ids.length - 1] },
        });
        expect([response.status, response.headers.get('content-type')]).toEqual([
          200,
          'text/event-stream',
        ]);
        await response.body?.cancel();
      }

      await waitForLogged(page, 5);
      await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open');
      expect(openStreams(other)).toBe(1);
      // One more through nginx after the catch-up: a duplicate would have arrived before it.
      ids.push(await placeOrder(nginx!.url, `${fanout}-after`));
      await waitForLogged(page, 6);

      expect(await loggedIds(page)).toEqual(ids);
      expect(await page.textContent('#count')).toBe('6');
      expect(states).toContain('reconnecting');
      expect(states).not.toContain('closed, retrying');
      expect(errors).toEqual([]);
    });
  },
);
