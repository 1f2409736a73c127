import { LeaseRenewer } from '../../src/idempotency/lease-renewer';

/** Pure scheduling logic, with fake timers and a fake `extend`. */
describe('LeaseRenewer', () => {
  beforeEach(() => jest.useFakeTimers({ now: 0 }));
  afterEach(() => jest.useRealTimers());

  it('renews each held lease once a third of it has passed, and stops when released', async () => {
    const calls: string[] = [];
    const renewer = new LeaseRenewer(
      async (key) => (calls.push(`${key}@${Date.now()}`), true),
      () => undefined,
    );
    const releaseA = renewer.hold('a', 'owner-a', 3_000);
    const releaseB = renewer.hold('b', 'owner-b', 30_000);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(calls).toEqual(['a@1000']);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(calls).toEqual(['a@1000', 'a@2000']);
    releaseA();
    await jest.advanceTimersByTimeAsync(10_000);
    expect(calls).toEqual(['a@1000', 'a@2000', 'b@10000']);
    releaseB();
    expect(renewer.held).toBe(0);
    expect(jest.getTimerCount()).toBe(0);
  });

  it('renews well before expiry even for the shortest lease (1 s)', async () => {
    const at: number[] = [];
    const renewer = new LeaseRenewer(
      async () => (at.push(Date.now()), true),
      () => undefined,
    );
    const release = renewer.hold('k', 'o', 1_000);
    await jest.advanceTimersByTimeAsync(3_000);
    release();
    expect(at.length).toBeGreaterThanOrEqual(4);
    // Each renewal comes less than a lease after the previous one (or the hold).
    [0, ...at].reduce((previous, t) => (expect(t - previous).toBeLessThan(1_000), t));
  });

  it('reports a lost lease once, and keeps trying after a failed renewal', async () => {
    const lost: string[] = [];
    const replies = [
      Promise.reject(new Error('timeout')),
      Promise.resolve(false),
      Promise.resolve(false),
    ];
    replies[0].catch(() => undefined);
    const renewer = new LeaseRenewer(
      () => replies.shift() ?? Promise.resolve(false),
      (key) => lost.push(key),
    );
    const release = renewer.hold('k', 'o', 3_000);
    await jest.advanceTimersByTimeAsync(1_000);
    expect(lost).toEqual([]);
    await jest.advanceTimersByTimeAsync(3_000);
    expect(lost).toEqual(['k']);
    release();
  });
});
