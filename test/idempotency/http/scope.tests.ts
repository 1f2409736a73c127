import { IdempotencyApps, post, runs } from './idempotency-app';

/** Keys are scoped by principal, and a principal that cannot be identified fails loudly. */
export function scopeTests(env: IdempotencyApps): void {
  it('scopes keys by principal: two users with one key and body run twice, never replay each other', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const alice = await post(a, '/secure', { x: 1 }, { 'idempotency-key': key, 'x-user': 'alice' });
    const bob = await post(a, '/secure', { x: 1 }, { 'idempotency-key': key, 'x-user': 'bob' });
    const aliceAgain = await post(
      b,
      '/secure',
      { x: 1 },
      { 'idempotency-key': key, 'x-user': 'alice' },
    );
    expect(JSON.parse(alice.text).count).toBe(1);
    expect(JSON.parse(bob.text).count).toBe(2);
    expect(aliceAgain.text).toBe(alice.text);
    expect(bob.headers.get('idempotent-replayed')).toBeNull();
    // A guard's rejection leaves no record either.
    expect((await post(a, '/secure', { x: 1 }, { 'idempotency-key': freshKey() })).status).toBe(
      403,
    );
  });

  it('never lets a principal it cannot identify share a scope: req.user = { userId } fails loudly', async () => {
    const { a, b, freshKey } = env;
    const key = freshKey();
    const alice = await post(
      a,
      '/jwt-shaped',
      { x: 1 },
      { 'idempotency-key': key, 'x-user': 'alice' },
    );
    const bob = await post(a, '/jwt-shaped', { x: 1 }, { 'idempotency-key': key, 'x-user': 'bob' });
    for (const reply of [alice, bob]) {
      expect(reply.status).toBe(500);
      expect(reply.text).not.toContain('count');
    }
    expect(runs['jwt-shaped']).toBeUndefined();
    // With the fix the error names (a scope function), each principal has its own key space.
    const aliceScoped = await post(
      a,
      '/jwt-shaped/scoped',
      { x: 1 },
      { 'idempotency-key': key, 'x-user': 'alice' },
    );
    const bobScoped = await post(
      b,
      '/jwt-shaped/scoped',
      { x: 1 },
      { 'idempotency-key': key, 'x-user': 'bob' },
    );
    expect(JSON.parse(aliceScoped.text).count).toBe(1);
    expect(JSON.parse(bobScoped.text).count).toBe(2);
    expect(bobScoped.headers.get('idempotent-replayed')).toBeNull();
  });
}
