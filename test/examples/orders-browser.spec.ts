/// <reference lib="dom" />
// Page functions below run in the browser.
import { mkdirSync } from 'node:fs';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Browser } from 'playwright-core';
import { createOrdersApp, OrdersApp } from '../../examples/orders/app';
import type { Backends } from '../../examples/orders/backends';
import { OrdersRepository } from '../../examples/orders/orders.repository';
import { launchChromium } from '../support/browser';
import { loggedIds, placeOrder as placeOrderAt, waitForLogged } from '../support/orders-page';
import { databaseUrl, dropSchema, uniqueSchema } from '../support/postgres';
import { deletePrefix, redisUrl } from '../support/redis';

const RESULTS = join(__dirname, '..', '..', 'test-results');

/**
 * The example page in a real browser: its own EventSource sees an order placed through the API,
 * then the server restarts while another instance keeps placing orders, and the page reconnects
 * by itself (Last-Event-ID) and receives exactly what it missed, once, in order.
 */
describe('orders page in Chromium (real PostgreSQL and Redis)', () => {
  jest.setTimeout(90_000);
  const schema = uniqueSchema('orders_browser');
  const backends: Backends = {
    postgres: { kind: 'server', url: databaseUrl() },
    redis: { kind: 'server', url: redisUrl() },
    summary: 'servers',
  };
  let browser: Browser | undefined;
  let server: OrdersApp | undefined;
  let port = 0;

  const startServer = async (platform: 'express' | 'fastify') => {
    server = await createOrdersApp(backends, {
      logger: ['error'],
      schema,
      redisKeyPrefix: `${schema}:`,
      platform,
    });
    await server.app.listen(port, '127.0.0.1');
    port = (server.app.getHttpServer().address() as AddressInfo).port;
  };
  const placeOrder = (item: string) =>
    placeOrderAt(`http://127.0.0.1:${port}`, item, `${schema}-${item}`);

  beforeAll(async () => {
    browser = await launchChromium();
    await startServer('express');
  });
  afterAll(async () => {
    await browser?.close();
    await server?.close();
    await dropSchema(schema);
    await deletePrefix(redisUrl(), `${schema}:`);
  });

  it('shows live orders, reconnects after a restart (Express, then Fastify) and receives what it missed exactly once', async () => {
    const page = await browser!.newPage();
    const errors: string[] = [];
    page.on('pageerror', (error) => errors.push(error.message));
    page.on('dialog', (dialog) => {
      errors.push(`dialog: ${dialog.message()}`);
      void dialog.dismiss();
    });
    await page.goto(`http://127.0.0.1:${port}/`);
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open');

    const first = await placeOrder('first');
    await waitForLogged(page, 1);
    await page.waitForSelector('#orders tr[data-order-id]');
    expect(await page.textContent('#last-id')).toBe(first);

    // Restart: this instance goes away (its streams end), another one keeps taking orders.
    await server!.close();
    await page.waitForFunction(() => document.getElementById('state')?.textContent !== 'open');
    const other = await createOrdersApp(backends, {
      logger: ['error'],
      schema,
      redisKeyPrefix: `${schema}:`,
    });
    await other.app.init();
    const repository = other.app.get(OrdersRepository);
    const missed: string[] = [];
    for (const item of ['while-away-1', 'while-away-2', 'while-away-3']) {
      missed.push((await repository.place(item, 1)).eventId);
    }
    await other.close();
    // The page reconnects to the same address, now served on Fastify.
    await startServer('fastify');

    await waitForLogged(page, 4);
    await page.waitForFunction(() => document.getElementById('state')?.textContent === 'open');
    // One more live event after the catch-up: anything duplicated by the reconnect would have
    // arrived before it.
    const after = await placeOrder('after-restart');
    await waitForLogged(page, 5);

    expect(await loggedIds(page)).toEqual([first, ...missed, after]);
    expect(await page.textContent('#last-id')).toBe(after);
    expect(await page.textContent('#count')).toBe('5');
    expect(await page.$$eval('#orders tr[data-order-id]', (rows) => rows.length)).toBe(5);

    // The page's own requests: a click places an order (with its own Idempotency-Key).
    await page.fill('#item', 'clicked');
    await page.click('#place button');
    await waitForLogged(page, 6);
    expect(await page.textContent('#log li:first-child')).toMatch(/order\.placed #\d+ clicked$/);
    expect(errors).toEqual([]);

    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, 'orders-page.png'), fullPage: true });
  });
});
