import { ENTRY_OVERHEAD_BYTES, RecentEvents } from '../../src/outbox/read/recent-events';

const at = (id: number) => ({ txId: 100n, id: BigInt(id) });
const text = (buffers: Buffer[] | undefined) => buffers?.map((b) => b.toString());

describe('RecentEvents', () => {
  it('holds every event after its start, and only those', () => {
    const recent = new RecentEvents(100_000);
    recent.reset(at(10));
    for (let id = 11; id <= 15; id++) recent.push(id % 2 ? 'a' : 'b', at(id), `e${id}`);
    expect(recent.covers(at(10))).toBe(true);
    expect(recent.covers(at(9))).toBe(false);
    expect(text(recent.collect(['a'], at(10), at(15), 100))).toEqual(['e11', 'e13', 'e15']);
    expect(text(recent.collect(['a', 'b'], at(12), at(14), 100))).toEqual(['e13', 'e14']);
    expect(text(recent.collect(['b'], at(15), at(15), 100))).toEqual([]);
  });

  it('returns the bytes it holds, for live delivery to share', () => {
    const recent = new RecentEvents(100_000);
    recent.reset(at(0));
    const bytes = recent.push('a', at(1), 'id: 1\ndata: é\n\n');
    expect(bytes.toString()).toBe('id: 1\ndata: é\n\n');
    expect(recent.collect(['a'], at(0), at(1), 10)![0]).toBe(bytes);
  });

  it('evicts the oldest chunk whole beyond its budget, moving its start past the events in it', () => {
    // 32 KiB budget → 4 KiB chunks; 1 KiB frames fill a chunk with four.
    const recent = new RecentEvents(32 * 1024);
    recent.reset(at(0));
    const frame = 'x'.repeat(1024);
    for (let id = 1; id <= 40; id++) recent.push('a', at(id), frame);
    expect(recent.heldBytes).toBeLessThanOrEqual(32 * 1024);
    // Whole chunks went: the start is the last event of an evicted chunk.
    expect(Number(recent.start!.id) % 4).toBe(0);
    expect(recent.size).toBe(40 - Number(recent.start!.id));
    expect(recent.covers(at(Number(recent.start!.id) - 1))).toBe(false);
    expect(recent.covers(recent.start!)).toBe(true);
    expect(recent.collect(['a'], recent.start!, at(40), 100)).toHaveLength(recent.size);
  });

  it('counts what it really holds: 80k small frames among other allocations pin no more than the budget', () => {
    const budget = 4 * 1024 * 1024;
    const recent = new RecentEvents(budget);
    recent.reset(at(0));
    const unrelated: Buffer[] = [];
    for (let id = 1; id <= 80_000; id++) {
      // What a server allocates around each event (HTTP parsing, query results): small pooled
      // Buffers that share slabs with anything else allocated at the same time.
      unrelated.push(Buffer.from(`unrelated ${id} `.padEnd(600, 'u')));
      if (unrelated.length > 100) unrelated.length = 0;
      recent.push(
        'a',
        at(id),
        `id: 100-${id}\nevent: order.created\ndata: {"id":${id},"item":"${'x'.repeat(120)}"}\n\n`,
      );
    }
    const held = recent.collect(['a'], recent.start!, at(80_000), 1_000_000)!;
    expect(held.length).toBe(recent.size);
    // The ArrayBuffers the held frames keep alive, each counted once.
    const pinned = new Set(held.map((b) => b.buffer));
    const pinnedBytes = [...pinned].reduce((sum, buffer) => sum + buffer.byteLength, 0);
    expect(pinnedBytes + recent.size * ENTRY_OVERHEAD_BYTES).toBeLessThanOrEqual(budget);
    expect(recent.heldBytes).toBe(pinnedBytes + recent.size * ENTRY_OVERHEAD_BYTES);
  });

  it('gives a frame larger than a quarter chunk an allocation of its own', () => {
    const recent = new RecentEvents(64 * 1024); // 8 KiB chunks
    recent.reset(at(0));
    const big = recent.push('a', at(1), 'y'.repeat(5_000));
    expect(big.buffer.byteLength).toBe(5_000);
    expect(recent.covers(at(0))).toBe(true);
  });

  it('answers undefined past the limit', () => {
    const recent = new RecentEvents(100_000);
    recent.reset(at(0));
    for (let id = 1; id <= 5; id++) recent.push('a', at(id), 'x');
    expect(recent.collect(['a'], at(0), at(5), 4)).toBeUndefined();
    expect(recent.collect(['a'], at(0), at(5), 5)).toHaveLength(5);
  });

  it('covers nothing when disabled, even after a reset', () => {
    const recent = new RecentEvents(0);
    recent.reset(at(0));
    expect(recent.push('a', at(1), 'x').toString()).toBe('x');
    expect(recent.enabled).toBe(false);
    expect(recent.covers(at(0))).toBe(false);
    expect(recent.size).toBe(0);
  });

  it('keeps working across compactions of its storage', () => {
    const recent = new RecentEvents(64 * 1024);
    recent.reset(at(0));
    for (let id = 1; id <= 100_000; id++) recent.push('a', at(id), 'x');
    expect(recent.heldBytes).toBeLessThanOrEqual(64 * 1024);
    expect(recent.size).toBeGreaterThan(0);
    expect(text(recent.collect(['a'], at(99_997), at(100_000), 100))).toEqual(['x', 'x', 'x']);
  });
});
