import * as http from 'node:http';
import { IdempotencyApps, post, runs } from './idempotency-app';

/** The key and the request it names: validation, reuse with another request, what takes no key. */
export function keyTests(env: IdempotencyApps): void {
  it('answers 422 for the same key with another body, URL or array order', async () => {
    const { a, freshKey } = env;
    const key = freshKey();
    await post(a, '/orders', { item: 'book', tags: [1, 2] }, { 'idempotency-key': key });
    for (const [path, body] of [
      ['/orders', { item: 'pen', tags: [1, 2] }],
      ['/orders', { item: 'book', tags: [2, 1] }],
      ['/orders/other', { item: 'book', tags: [1, 2] }],
    ] as const) {
      const reply = await post(a, path, body, { 'idempotency-key': key });
      expect(reply.status).toBe(422);
      expect(reply.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(reply.text)).toMatchObject({
        status: 422,
        type: 'urn:nestjs-durable-sse:idempotency:key-reused',
      });
    }
    expect(runs.create).toBe(1);
    expect(runs.other).toBeUndefined();
  });

  it('validates the key: required → 400, empty/too long/non-ASCII → 400; no key runs every time', async () => {
    const { a } = env;
    const missing = await post(a, '/required', {});
    expect(missing.status).toBe(400);
    expect(missing.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(missing.text)).toMatchObject({
      type: 'urn:nestjs-durable-sse:idempotency:key-required',
    });
    for (const bad of ['""', 'x'.repeat(256), '"tab\there"']) {
      const reply = await post(a, '/orders', {}, { 'idempotency-key': bad });
      expect(reply.status).toBe(400);
      expect(JSON.parse(reply.text)).toMatchObject({
        type: 'urn:nestjs-durable-sse:idempotency:key-invalid',
      });
    }
    expect(runs.required).toBeUndefined();
    await post(a, '/orders', {});
    await post(a, '/orders', {});
    expect(runs.create).toBe(2);
  });

  it('lets GET through untouched even when a key is required', async () => {
    const { a } = env;
    const reply = await fetch(`${a.url}/orders`);
    expect(reply.status).toBe(200);
    expect(runs.list).toBe(1);
  });

  it('leaves no record when a validation pipe rejects the body', async () => {
    const { a, freshKey } = env;
    const key = freshKey();
    const invalid = await post(
      a,
      '/validated',
      { item: 'x', quantity: 'many' },
      { 'idempotency-key': key },
    );
    expect(invalid.status).toBe(400);
    const valid = await post(
      a,
      '/validated',
      { item: 'x', quantity: 2 },
      { 'idempotency-key': key },
    );
    expect(valid.status).toBe(201);
    expect(runs.validated).toBe(1);
  });

  it('fingerprints a body nested 5,000 deep (client input): served and replayed, never a 5xx', async () => {
    // A route that does not echo the body (JSON.stringify itself cannot write one this deep).
    const { a, freshKey } = env;
    const deep = '{"a":'.repeat(5_000) + '1' + '}'.repeat(5_000);
    const key = freshKey();
    const first = await post(a, '/required', deep, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    const again = await post(a, '/required', deep, { 'idempotency-key': key });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(runs.required).toBe(1);
    // One level less deep is another request under the same key.
    const other = '{"a":'.repeat(4_999) + '1' + '}'.repeat(4_999);
    expect((await post(a, '/required', other, { 'idempotency-key': key })).status).toBe(422);
  });

  it('refuses two Idempotency-Key header lines (Node would join them into one key)', async () => {
    const { a, freshKey } = env;
    const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const request = http.request(`${a.url}/orders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'idempotency-key': ['a', 'b'] },
      });
      request.on('response', (response) => {
        let body = '';
        response.on('data', (chunk) => (body += chunk));
        response.on('end', () => resolve({ status: response.statusCode!, body }));
      });
      request.on('error', reject);
      request.end('{}');
    });
    expect(reply.status).toBe(400);
    expect(JSON.parse(reply.body)).toMatchObject({
      type: 'urn:nestjs-durable-sse:idempotency:key-invalid',
    });
    expect(runs.create).toBeUndefined();
    // One line whose value holds a comma is one key.
    const comma = await post(a, '/orders', {}, { 'idempotency-key': `"${freshKey()}, x"` });
    expect(comma.status).toBe(201);
  });

  it('rejects a request body that is not JSON before taking a key', async () => {
    const { a, freshKey } = env;
    const reply = await post(a, '/orders', '{not json', { 'idempotency-key': freshKey() });
    expect(reply.status).toBe(400);
    expect(runs.create).toBeUndefined();
  });
}
