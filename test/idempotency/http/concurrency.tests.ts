import { IdempotencyApps, holdSlow, post, runs, settled } from './idempotency-app';

/** Duplicates that arrive while the first still runs: 409, and the handler runs once. */
export function concurrencyTests(env: IdempotencyApps): void {
  it('answers 409 + Retry-After while the first request runs, and 422 for a different one', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const { open, inHandler } = holdSlow();
    const first = post(a, '/slow', {}, { 'idempotency-key': key });
    await inHandler;
    const during = await post(b, '/slow', {}, { 'idempotency-key': key });
    expect(during.status).toBe(409);
    expect(Number(during.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect(JSON.parse(during.text)).toMatchObject({
      type: 'urn:nestjs-durable-sse:idempotency:in-progress',
    });
    const different = await post(b, '/slow', { other: true }, { 'idempotency-key': key });
    expect(different.status).toBe(422);
    open();
    expect((await first).status).toBe(201);
    expect(runs.slow).toBe(1);
  });

  it('runs the handler exactly once for 50 concurrent identical requests across two instances', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const { open, inHandler } = holdSlow();
    const replies = Array.from({ length: 50 }, (_, i) =>
      post(i % 2 ? a : b, '/slow', {}, { 'idempotency-key': key }),
    );
    await inHandler;
    // The first holds the lease until the gate opens, so every other request is answered
    // while it runs: they are concurrent however slow the machine is.
    await settled(replies, 49);
    open();
    const statuses = (await Promise.all(replies)).map((r) => r.status);
    expect(runs.slow).toBe(1);
    expect(statuses.filter((s) => s === 201)).toHaveLength(1);
    expect(statuses.filter((s) => s === 409)).toHaveLength(49);
    const after = await post(a, '/slow', {}, { 'idempotency-key': key });
    expect(after.status).toBe(201);
    expect(after.headers.get('idempotent-replayed')).toBe('true');
    expect(runs.slow).toBe(1);
  });

  it('detects a different request on the lost-race path too: concurrent mixed bodies run once', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const { open, inHandler } = holdSlow();
    const replies = Array.from({ length: 30 }, (_, i) =>
      post(i % 2 ? a : b, '/slow', i % 3 === 0 ? { variant: 'other' } : {}, {
        'idempotency-key': key,
      }).then((r) => ({
        variant: i % 3 === 0 ? 'other' : 'same',
        status: r.status,
      })),
    );
    await inHandler;
    await settled(replies, 29); // all answered while the first still runs
    open();
    const results = await Promise.all(replies);
    expect(runs.slow).toBe(1);
    // Whichever body won the race, every request with the other body is a 422, the others
    // with its body a 409.
    const winners = results.filter((r) => r.status === 201);
    expect(winners).toHaveLength(1);
    for (const result of results) {
      if (result === winners[0]) continue;
      expect(result.status).toBe(result.variant === winners[0].variant ? 409 : 422);
    }
  });
}
