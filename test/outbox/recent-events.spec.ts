import { ENTRY_OVERHEAD_BYTES, RecentEvents } from '../../src/outbox/recent-events';

const at = (id: number) => ({ txId: 100n, id: BigInt(id) });
const bytes = (text: string) => Buffer.from(text);
const text = (buffers: Buffer[] | undefined) => buffers?.map((b) => b.toString());

describe('RecentEvents', () => {
  it('holds every event after its start, and only those', () => {
    const recent = new RecentEvents(100_000);
    recent.reset(at(10));
    for (let id = 11; id <= 15; id++) recent.push(id % 2 ? 'a' : 'b', at(id), bytes(`e${id}`));
    expect(recent.covers(at(10))).toBe(true);
    expect(recent.covers(at(9))).toBe(false);
    expect(text(recent.collect(['a'], at(10), at(15), 100))).toEqual(['e11', 'e13', 'e15']);
    expect(text(recent.collect(['a', 'b'], at(12), at(14), 100))).toEqual(['e13', 'e14']);
    expect(text(recent.collect(['b'], at(15), at(15), 100))).toEqual([]);
  });

  it('evicts the oldest beyond its byte budget and moves its start with them', () => {
    const each = 4 + ENTRY_OVERHEAD_BYTES;
    const recent = new RecentEvents(2 * each + 1);
    recent.reset(at(0));
    for (let id = 1; id <= 5; id++) recent.push('a', at(id), bytes('abcd'));
    expect(recent.size).toBe(2);
    expect(recent.heldBytes).toBe(2 * each);
    expect(recent.start).toEqual(at(3));
    expect(recent.covers(at(2))).toBe(false);
    expect(recent.covers(at(3))).toBe(true);
    expect(recent.collect(['a'], at(3), at(5), 100)).toHaveLength(2);
  });

  it('answers undefined past the limit', () => {
    const recent = new RecentEvents(100_000);
    recent.reset(at(0));
    for (let id = 1; id <= 5; id++) recent.push('a', at(id), bytes('x'));
    expect(recent.collect(['a'], at(0), at(5), 4)).toBeUndefined();
    expect(recent.collect(['a'], at(0), at(5), 5)).toHaveLength(5);
  });

  it('covers nothing when disabled, even after a reset', () => {
    const recent = new RecentEvents(0);
    recent.reset(at(0));
    recent.push('a', at(1), bytes('x'));
    expect(recent.enabled).toBe(false);
    expect(recent.covers(at(0))).toBe(false);
    expect(recent.size).toBe(0);
  });

  it('keeps working across compactions of its storage', () => {
    const recent = new RecentEvents(100 * (1 + ENTRY_OVERHEAD_BYTES));
    recent.reset(at(0));
    for (let id = 1; id <= 10_000; id++) recent.push('a', at(id), bytes('x'));
    expect(recent.size).toBe(100);
    expect(recent.start).toEqual(at(9_900));
    expect(text(recent.collect(['a'], at(9_997), at(10_000), 100))).toEqual(['x', 'x', 'x']);
  });
});
