// docs/streams.md: a slow consumer is one that does not read, not one that was handed a lot at once.
// One transaction, or one replay, larger than maxBufferedBytes must reach every client that reads.
import { Controller } from '@nestjs/common';
import * as net from 'node:net';
import { OutboxService, Sse, SseConnectionRegistry } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { startApp, TestApp } from '../support/http';
import { outboxOptions } from '../support/outbox';
import { dropSchema, uniqueSchema } from '../support/postgres';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const payload = (bytes: number, i: number) => `${i}:`.padEnd(bytes, 'x');
const ids = (client: RecordingEventSource) => client.events.map((e) => e.lastEventId);

/** A raw client that reads the response head (up to its first blank line after `retry:`), then stops reading. */
function openStalled(url: string): Promise<{ socket: net.Socket; head: string }> {
  const { hostname, port, pathname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () =>
      socket.write(`GET ${pathname} HTTP/1.1\r\nHost: ${hostname}\r\n\r\n`),
    );
    let head = '';
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      // The retry: line, then the id-only message this test is about.
      if (/retry: \d+\n\n[\s\S]*id: [^\n]+\n\n/.test(head)) {
        socket.off('data', onData);
        socket.pause();
        resolve({ socket, head });
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

describe('chaos: batches larger than maxBufferedBytes', () => {
  const schema = uniqueSchema('bigbatch');
  let t: TestApp;
  let outbox: OutboxService;
  const clients: RecordingEventSource[] = [];
  beforeAll(async () => {
    // Default maxBufferedBytes (1 MiB); a short slowConsumerMs, so a real staller is cut quickly.
    t = await startApp(
      [FeedController],
      outboxOptions(schema, {
        sse: { slowConsumerMs: 1_000, maxConnectionsPerClient: 50, replayLimit: 10_000 },
        outbox: { pollIntervalMs: 200 },
      }),
    );
    outbox = t.app.get(OutboxService);
  });
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  afterAll(async () => {
    await t?.close();
    await dropSchema(schema);
  });
  const connect = (lastEventId?: string) => {
    const client = new RecordingEventSource(
      `${t.url}/feed`,
      ['reset'],
      lastEventId ? { 'last-event-id': lastEventId } : {},
    );
    clients.push(client);
    return client;
  };

  it('one transaction of 600 × 3 kB (1.8 MB) reaches all 8 clients that read, in order, none cut', async () => {
    const registry = t.app.get(SseConnectionRegistry);
    const cutBefore = registry.stats.slowConsumers;
    const readers = Array.from({ length: 8 }, () => connect());
    await Promise.all(readers.map((c) => c.opened()));
    const events = Array.from({ length: 600 }, (_, i) => ({
      topic: 'feed',
      data: payload(3_000, i),
    }));
    const stored = await outbox.transaction((tx) => outbox.publish(tx, events));
    await Promise.all(readers.map((c) => c.received(600)));
    for (const reader of readers) {
      expect(ids(reader)).toEqual(stored);
      expect(reader.log.filter((entry) => entry === 'open')).toHaveLength(1);
    }
    expect(registry.stats.slowConsumers).toBe(cutBefore);
  });

  it('a client away during 30 transactions of 900 × 1.3 kB resumes by id and receives all 900', async () => {
    const first = connect();
    await first.opened();
    const [seen] = await outbox.transaction((tx) =>
      outbox.publish(tx, { topic: 'feed', data: 'before' }),
    );
    await first.received(1);
    first.close();
    const stored: string[] = [];
    for (let tx = 0; tx < 30; tx++) {
      const events = Array.from({ length: 30 }, (_, i) => ({
        topic: 'feed',
        data: payload(1_300, tx * 30 + i),
      }));
      stored.push(...(await outbox.transaction((client) => outbox.publish(client, events))));
    }
    const resumed = connect(seen);
    await resumed.received(900);
    expect(resumed.events.filter((e) => e.type === 'reset')).toEqual([]);
    expect(ids(resumed)).toEqual(stored);
    expect(resumed.log.filter((entry) => entry === 'open')).toHaveLength(1);
  });

  it('a client cut before it received any event resumes from the id it was given at open: nothing lost', async () => {
    const registry = t.app.get(SseConnectionRegistry);
    // Delivered before the stalled client opens, so the id it is given is this event's.
    const witness = connect();
    await witness.opened();
    const [warm] = await outbox.transaction((tx) =>
      outbox.publish(tx, { topic: 'feed', data: 'warm' }),
    );
    await witness.until(() => ids(witness).includes(warm), 'the warm event');
    witness.close();
    const { socket, head } = await openStalled(`${t.url}/feed`);
    const given = /id: ([^\n]+)\n\n/.exec(head)![1];
    expect(given).toBe(warm);
    const cutBefore = registry.stats.slowConsumers;
    const stored: string[] = [];
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    // 200 kB per transaction, paced: the kernel's socket buffers fill first, then the backlog
    // passes maxBufferedBytes and stays there for slowConsumerMs. Bounded by a deadline.
    const deadline = Date.now() + 30_000;
    while (registry.stats.slowConsumers === cutBefore && Date.now() < deadline) {
      const events = Array.from({ length: 20 }, (_, i) => ({
        topic: 'feed',
        data: payload(10_000, stored.length + i),
      }));
      stored.push(...(await outbox.transaction((tx) => outbox.publish(tx, events))));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(registry.stats.slowConsumers).toBe(cutBefore + 1);
    socket.on('data', () => undefined).resume();
    await closed;

    const resumed = connect(given);
    await resumed.received(stored.length);
    expect(resumed.events.filter((e) => e.type === 'reset')).toEqual([]);
    expect(ids(resumed)).toEqual(stored);
  }, 60_000);
});
