/// <reference lib="dom" />
// Page functions below run in the browser.
import type { Page } from 'playwright-core';

/**
 * Places an order through the example's API at `baseUrl` (with an Idempotency-Key of `key`);
 * resolves with the event id of its `order.placed`. Throws unless it answered 201.
 */
export async function placeOrder(baseUrl: string, item: string, key: string): Promise<string> {
  const response = await fetch(`${baseUrl}/orders`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify({ item, quantity: 1 }),
  });
  if (response.status !== 201)
    throw new Error(`POST /orders answered ${response.status}: ${await response.text()}`);
  return ((await response.json()) as { eventId: string }).eventId;
}

/** The ids of the example page's event log, oldest first (it lists every event it received). */
export const loggedIds = (page: Page) =>
  page.$$eval('#log li', (items) =>
    items.map((li) => (li as HTMLElement).dataset.eventId).reverse(),
  );

/** Resolves once the page's event log holds at least `count` events. */
export const waitForLogged = (page: Page, count: number) =>
  page.waitForFunction((n) => document.querySelectorAll('#log li').length >= n, count);
