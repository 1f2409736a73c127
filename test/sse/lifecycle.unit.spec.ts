import { Controller, Req } from '@nestjs/common';
import * as http from 'node:http';
import type { IncomingMessage } from 'node:http';
import { interval, map } from 'rxjs';
import { Sse, SseConnectionRegistry, SseHub } from '../../src';
import { openRaw, RawStream, PLATFORMS, startApp, TestApp } from '../support/http';

@Controller()
class LifecycleController {
  @Sse('topic', { topic: ['a', 'b'] })
  topic() {}

  @Sse('ticks')
  ticks() {
    return interval(50).pipe(map((n) => ({ data: n })));
  }
}

const timeouts = () => process.getActiveResourcesInfo().filter((kind) => kind === 'Timeout').length;

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('disconnect cleanup', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [LifecycleController],
        {
          sse: { heartbeatMs: 1000, maxConnectionsPerClient: 1000 },
        },
        { platform },
      );
    });
    afterAll(() => t.close());

    it('holds no subscriber, slot or timer after 2,000 clients connected and left', async () => {
      const registry = t.app.get(SseConnectionRegistry);
      const hub = t.app.get(SseHub);
      const timersBefore = timeouts();
      for (let batch = 0; batch < 10; batch++) {
        const streams = await Promise.all(
          Array.from({ length: 200 }, (_, i) => openRaw(`${t.url}/${i % 2 ? 'topic' : 'ticks'}`)),
        );
        await Promise.all(streams.map((s) => s.until((x) => x.startsWith('retry'))));
        if (batch === 0) {
          expect(registry.stats.open).toBe(200);
          expect(hub.subscriberCount()).toBe(200); // 100 streams × 2 topics
          expect(registry.stats.heartbeatTimer).toBe(true);
        }
        streams.forEach((s) => s.close());
      }
      await registry.whenEmpty();
      expect(registry.stats).toMatchObject({
        open: 0,
        clients: 0,
        opened: 2000,
        heartbeatTimer: false,
      });
      expect(hub.subscriberCount()).toBe(0);
      expect(hub.activeTopics()).toEqual([]);
      // Not exact: this process is the client too, and unrelated timers (keep-alive sockets of
      // earlier requests, the platform's own) come and go — one more than before was seen on
      // Fastify. A leak per stream would add 2,000 (one per stream) or 1,000 (per ticks stream).
      expect(timeouts()).toBeLessThan(timersBefore + 20);
    });
  });

  describe('shutdown', () => {
    it('app.close() ends open streams promptly and refuses new ones', async () => {
      const t = await startApp(
        [LifecycleController],
        {
          sse: { heartbeatMs: 1000, maxConnectionsPerClient: 1000 },
        },
        { platform },
      );
      const registry = t.app.get(SseConnectionRegistry);
      const streams: RawStream[] = await Promise.all(
        Array.from({ length: 100 }, (_, i) => openRaw(`${t.url}/${i % 2 ? 'topic' : 'ticks'}`)),
      );
      await Promise.all(streams.map((s) => s.until((x) => x.startsWith('retry'))));
      expect(registry.stats.open).toBe(100);

      await t.close();
      await Promise.all(streams.map((s) => s.ended));
      expect(streams.every((s) => s.response.complete)).toBe(true);
      expect(registry.stats).toMatchObject({ open: 0, heartbeatTimer: false });
      expect(registry.admit('late')).toEqual({
        admitted: false,
        status: 503,
        reason: 'shutting-down',
      });
    });
  });

  describe('handshake edge cases', () => {
    let release: () => void = () => undefined;
    let entered: (request: IncomingMessage) => void = () => undefined;

    @Controller()
    class SlowController {
      @Sse('slow', { topic: 'slow' })
      async slow(@Req() request: IncomingMessage) {
        entered(request);
        await new Promise<void>((resolve) => (release = resolve));
      }
    }

    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [SlowController, LifecycleController],
        { sse: { heartbeatMs: 60_000 } },
        { platform },
      );
    });
    afterAll(() => t.close());

    it('frees the slot of a client that left while its handler was still running', async () => {
      const registry = t.app.get(SseConnectionRegistry);
      const inHandler = new Promise<IncomingMessage>((resolve) => (entered = resolve));
      const request = http.get(`${t.url}/slow`, { agent: false });
      request.on('error', () => undefined);
      const serverRequest = await inHandler;
      expect(registry.stats.open).toBe(1);
      const serverSawClose = new Promise((resolve) => serverRequest.socket.once('close', resolve));
      request.destroy();
      await serverSawClose;
      release();
      await registry.whenEmpty();
      expect(registry.stats.opened).toBe(0);
      expect(t.app.get(SseHub).subscriberCount('slow')).toBe(0);
    });

    // Fastify's request keeps no router state.
    if (platform === 'express')
      it("clears Express's router state from the request once the stream is open", async () => {
        const inHandler = new Promise<IncomingMessage>((resolve) => (entered = resolve));
        // The response (and so openRaw) comes only once the handler has returned.
        const opening = openRaw(`${t.url}/slow`);
        const request = (await inHandler) as IncomingMessage & Record<string, unknown>;
        // While the handler runs, Express's per-request state is there; the stream holds the
        // request for its whole life, so this is what would stay alive with it.
        expect(typeof request.next).toBe('function');
        expect(request.route).toBeDefined();
        release();
        const stream = await opening;
        try {
          await stream.until((text) => text.startsWith('retry:'), 'the stream to open');
          expect([request.next, request._parsedUrl, request.route]).toEqual([
            undefined,
            undefined,
            undefined,
          ]);
        } finally {
          stream.close();
        }
      });

    it('answers HEAD with the stream headers and no open stream', async () => {
      const response = await fetch(`${t.url}/topic`, { method: 'HEAD' });
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('text/event-stream');
      await t.app.get(SseConnectionRegistry).whenEmpty();
      expect(t.app.get(SseHub).subscriberCount()).toBe(0);
    });
  });
});
