import { IdempotencyService } from '../../../src';
import { IdempotencyApps, holdSlow, post, runs } from './idempotency-app';

/** What a first request stored comes back byte for byte; failures release the key. */
export function replayTests(env: IdempotencyApps): void {
  it('runs the first request once and replays it byte for byte, with status and allowed headers', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const first = await post(
      a,
      '/orders',
      { item: 'book', quantity: 1 },
      { 'idempotency-key': key },
    );
    const again = await post(
      b,
      '/orders',
      { quantity: 1, item: 'book' },
      { 'idempotency-key': `"${key}"` },
    );
    expect(runs.create).toBe(1);
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers.get('content-type')).toBe(first.headers.get('content-type'));
    expect(again.headers.get('location')).toBe('/orders/latest');
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(first.headers.get('idempotent-replayed')).toBeNull();
  });

  it('releases the key after a 5xx or an unknown error so a retry runs; stores and replays a 4xx', async () => {
    const { a, b, freshKey } = env;
    const key500 = freshKey();
    expect((await post(a, '/flaky/500', {}, { 'idempotency-key': key500 })).status).toBe(500);
    const retried = await post(b, '/flaky/500', {}, { 'idempotency-key': key500 });
    expect(retried.status).toBe(201);
    expect(runs['flaky:500']).toBe(2);

    const crash = freshKey();
    expect((await post(a, '/flaky/crash', {}, { 'idempotency-key': crash })).status).toBe(500);
    expect((await post(a, '/flaky/crash', {}, { 'idempotency-key': crash })).status).toBe(201);
    expect(runs['flaky:crash']).toBe(2);

    const key409 = freshKey();
    const first = await post(a, '/flaky/409', {}, { 'idempotency-key': key409 });
    const replay = await post(b, '/flaky/409', {}, { 'idempotency-key': key409 });
    expect(first.status).toBe(409);
    expect(replay.status).toBe(409);
    expect(replay.text).toBe(first.text);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(runs['flaky:409']).toBe(1);
  });

  it('replays allow-listed headers but never Set-Cookie', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const first = await post(a, '/cookie', {}, { 'idempotency-key': key });
    expect(first.headers.get('set-cookie')).toBe('session=secret');
    const replay = await post(b, '/cookie', {}, { 'idempotency-key': key });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.headers.get('x-request-cost')).toBe('7');
    expect(replay.headers.get('set-cookie')).toBeNull();
    expect(runs.cookie).toBe(1);
  });

  it('stores a response written with @Res() too, and replays it byte for byte', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const first = await post(a, '/raw', {}, { 'idempotency-key': key });
    const again = await post(b, '/raw', {}, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    expect(JSON.parse(first.text)).toEqual({ raw: 1 });
    expect(again.status).toBe(201);
    expect(again.text).toBe(first.text);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(runs.raw).toBe(1);
  });

  it('counts outcomes', async () => {
    const { a, freshKey } = env;
    const stats = a.app.get(IdempotencyService).stats;
    const before = { ...stats };
    const key = freshKey();
    await post(a, '/orders', { n: 1 }, { 'idempotency-key': key });
    await post(a, '/orders', { n: 1 }, { 'idempotency-key': key });
    await post(a, '/orders', { n: 2 }, { 'idempotency-key': key });
    const { open, inHandler } = holdSlow();
    const slowKey = freshKey();
    const first = post(a, '/slow', {}, { 'idempotency-key': slowKey });
    await inHandler;
    await post(a, '/slow', {}, { 'idempotency-key': slowKey });
    open();
    await first;
    expect(stats.first - before.first).toBe(2);
    expect(stats.replay - before.replay).toBe(1);
    expect(stats.mismatch - before.mismatch).toBe(1);
    expect(stats.conflict - before.conflict).toBe(1);
  });
}
