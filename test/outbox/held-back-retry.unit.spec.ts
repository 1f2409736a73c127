import { HeldBackRetry } from '../../src/outbox/read/held-back-retry';
import type { OutboxBatch, OutboxEvent } from '../../src/outbox/outbox-event';

const held = (events = 0): OutboxBatch => ({
  events: Array.from({ length: events }, () => ({}) as OutboxEvent),
  heldBack: true,
});

describe('HeldBackRetry (pure timing logic, fake timers)', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  /** Times (ms after the first read) at which it woke, each wake answered by another held-back read. */
  function wakesWhileHeld(maxDelayMs: number, reads: number): number[] {
    const times: number[] = [];
    const start = Date.now();
    const retry = new HeldBackRetry(maxDelayMs, () => {
      times.push(Date.now() - start);
      if (times.length < reads) retry.read(held());
    });
    retry.read(held());
    jest.advanceTimersByTime(60_000);
    return times;
  }

  it('reads again after 5 ms, then twice as late each time, never further apart than the cap', () => {
    expect(wakesWhileHeld(40, 6)).toEqual([5, 15, 35, 75, 115, 155]);
  });

  it('starts the series over after a read that delivered, and stops once nothing is held back', () => {
    const wakes: number[] = [];
    const retry = new HeldBackRetry(1_000, () => wakes.push(Date.now()));
    const start = Date.now();
    retry.read(held());
    jest.advanceTimersByTime(5);
    retry.read(held());
    jest.advanceTimersByTime(10);
    retry.read(held(3)); // progress: back to 5 ms
    jest.advanceTimersByTime(5);
    expect(wakes.map((t) => t - start)).toEqual([5, 15, 20]);
    retry.read({ events: [], heldBack: false });
    jest.advanceTimersByTime(10_000);
    expect(wakes).toHaveLength(3);
    expect(retry.retries).toBe(3);
  });

  it('keeps one timer however many reads find events held back', () => {
    let wakes = 0;
    const retry = new HeldBackRetry(1_000, () => wakes++);
    for (let i = 0; i < 100; i++) retry.read(held());
    jest.advanceTimersByTime(5);
    expect(wakes).toBe(1);
    retry.stop();
    retry.read(held());
    retry.stop();
    jest.advanceTimersByTime(10_000);
    expect(wakes).toBe(1);
  });
});
