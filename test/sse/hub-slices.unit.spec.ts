import { setImmediate as turn } from 'node:timers/promises';
import { JsonSseEventSerializer, SseHub } from '../../src';
import type { SseBatch, SseSubscriber } from '../../src/sse/sse-connection';
import { SSE_DELIVERY_SLICE } from '../../src/sse/sse-hub';

/** A subscriber that records what it was written (pure logic: no sockets). */
class Recorder implements SseSubscriber {
  readonly got: string[] = [];
  deliver(batch: SseBatch): void {
    this.got.push(batch.bytes.toString());
  }
}

const frame = (id: string) => `id: ${id}\ndata: ${id}\n\n`;

describe('SseHub delivery to many streams (pure)', () => {
  it('writes a few streams at once, as before', () => {
    const hub = new SseHub(new JsonSseEventSerializer());
    const few = Array.from({ length: 10 }, () => new Recorder());
    for (const r of few) hub.subscribe('t', r);
    expect(hub.publish('t', { id: '1', data: '1' })).toBe(10);
    expect(few.every((r) => r.got.join('') === frame('1'))).toBe(true);
  });

  it('yields between slices past SSE_DELIVERY_SLICE streams, keeping every stream’s order across topics', async () => {
    const hub = new SseHub(new JsonSseEventSerializer());
    const many = Array.from({ length: SSE_DELIVERY_SLICE * 3 + 7 }, () => new Recorder());
    for (const r of many) hub.subscribe(['a', 'b'], r);
    const small = new Recorder();
    hub.subscribe('c', small);

    hub.publish('a', { id: '1', data: '1' });
    // Only the first slice is written in this turn of the event loop.
    expect(many.filter((r) => r.got.length === 1)).toHaveLength(SSE_DELIVERY_SLICE);
    hub.publish('b', { id: '2', data: '2' });
    hub.publish('c', { id: '3', data: '3' }); // one subscriber, but it waits its turn too
    const late = new Recorder();
    hub.subscribe('a', late); // subscribes while '1' is being written: it resumed past it
    hub.publish('a', { id: '4', data: '4' });

    for (let i = 0; i < 20 && many.some((r) => r.got.length < 3); i++) await turn();
    expect(many.every((r) => r.got.join('') === frame('1') + frame('2') + frame('4'))).toBe(true);
    expect(small.got).toEqual([frame('3')]);
    expect(late.got).toEqual([frame('4')]);
    // Counted when published, for every subscriber each event reached.
    expect(hub.delivered).toBe(many.length * 3 + 1 + 1);
  });
});
