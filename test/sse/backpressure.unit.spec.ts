import { Controller } from '@nestjs/common';
import * as net from 'node:net';
import { Sse, SseConnectionRegistry, SseHub } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { PLATFORMS, startApp, TestApp } from '../support/http';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

/** A client that reads the response head, then stops reading (its socket is paused). */
function openStalledClient(url: string): Promise<net.Socket> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) }, () => {
      socket.write(`GET /feed HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n\r\n`);
    });
    let head = '';
    const onData = (chunk: Buffer) => {
      head += chunk.toString('latin1');
      if (head.includes('retry:')) {
        socket.off('data', onData);
        socket.pause();
        resolve(socket);
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}

/** Paces the publisher, so the stalled client's slowConsumerMs window passes during the loop. */
const pause = () => new Promise<void>((resolve) => setTimeout(resolve, 5));

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('backpressure', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [FeedController],
        {
          sse: { maxBufferedBytes: 256 * 1024, slowConsumerMs: 200, heartbeatMs: 60_000 },
        },
        { platform },
      );
    });
    afterAll(() => t.close());

    it('cuts a client whose unsent buffer stays above maxBufferedBytes for slowConsumerMs; others get everything', async () => {
      const registry = t.app.get(SseConnectionRegistry);
      const hub = t.app.get(SseHub);
      const fast = new RecordingEventSource(`${t.url}/feed`);
      await fast.opened();
      const stalled = await openStalledClient(t.url);
      expect(registry.stats.open).toBe(2);

      const payload = 'x'.repeat(32 * 1024);
      let published = 0;
      // Bounded: kernel socket buffers absorb a few MB before Node has to buffer anything.
      while (registry.stats.slowConsumers === 0 && published < 4000) {
        hub.publish('feed', { id: String(published), data: payload });
        published++;
        await pause();
      }
      expect(registry.stats.slowConsumers).toBe(1);
      expect(registry.stats.open).toBe(1);
      expect(hub.subscriberCount('feed')).toBe(1);

      // The fast client receives every event, in order, on its one connection.
      await fast.received(published);
      expect(fast.events.map((e) => e.lastEventId)).toEqual(
        Array.from({ length: published }, (_, i) => String(i)),
      );
      expect(fast.log.filter((entry) => entry === 'open')).toHaveLength(1);
      fast.close();

      // The stalled client's connection was closed by the server.
      const closed = new Promise<void>((resolve) => stalled.once('close', () => resolve()));
      stalled.on('data', () => undefined);
      stalled.resume();
      await closed;
      await registry.whenEmpty();
    });
  });
});
