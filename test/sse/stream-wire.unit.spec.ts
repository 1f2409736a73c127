import { Controller, Get } from '@nestjs/common';
import type { FastifyInstance } from 'fastify';
import type { ServerResponse } from 'node:http';
import * as net from 'node:net';
import { interval, map, Subject, take } from 'rxjs';
import { Sse, SseEvent, SseEventError, SseHub } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { openRaw, PLATFORMS, startApp, TestApp } from '../support/http';

const feed = new Subject<SseEvent>();

@Controller()
class StreamController {
  @Sse('orders/stream', { topic: 'orders' })
  orders() {}

  @Sse(':id/stream', { topic: (req) => [`orders:${req.params.id}`, 'broadcast'] })
  order() {}

  @Sse('feed')
  feed() {
    return feed.asObservable();
  }

  @Sse('ticks')
  ticks() {
    return interval(1).pipe(
      take(3),
      map((n) => ({ id: `t${n}`, data: { n } })),
    );
  }

  @Get('plain')
  plain() {
    return { ok: true };
  }
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('@Sse streams over real HTTP', () => {
    let t: TestApp;
    let hub: SseHub;

    beforeAll(async () => {
      // Heartbeats are far away here so exact-bytes assertions cannot see one; see the next block.
      t = await startApp(
        [StreamController],
        { sse: { heartbeatMs: 60_000, retryMs: 1234, retryJitterMs: 0 } },
        { platform },
      );
      hub = t.app.get(SseHub);
    });
    afterAll(() => t.close());

    it('sends the SSE headers and the retry preamble before any event', async () => {
      const stream = await openRaw(`${t.url}/orders/stream`);
      try {
        expect(stream.status).toBe(200);
        expect(stream.headers['content-type']).toBe('text/event-stream');
        expect(stream.headers['cache-control']).toBe('no-cache, no-transform');
        expect(stream.headers['x-accel-buffering']).toBe('no');
        expect(await stream.until((text) => text.length >= 13)).toBe('retry: 1234\n\n');
      } finally {
        stream.close();
      }
    });

    it('frames published events exactly: id, event, one data line per line', async () => {
      const stream = await openRaw(`${t.url}/orders/stream`);
      try {
        await stream.until((text) => text.startsWith('retry: 1234\n\n'));
        hub.publish('orders', { id: '7', type: 'order.created', data: 'line one\nline two' });
        hub.publish('orders', { id: '8', data: { total: 3 } });
        const text = await stream.until((x) => x.includes('id: 8'));
        expect(text).toBe(
          'retry: 1234\n\n' +
            'id: 7\nevent: order.created\ndata: line one\ndata: line two\n\n' +
            'id: 8\ndata: {"total":3}\n\n',
        );
      } finally {
        stream.close();
      }
    });

    it('rejects CR, LF and NUL in event id and type at publish, delivering nothing', async () => {
      const stream = await openRaw(`${t.url}/orders/stream`);
      try {
        await stream.until((x) => x.startsWith('retry'));
        expect(() => hub.publish('orders', { id: '1\nid: 2', data: 'x' })).toThrow(SseEventError);
        expect(() => hub.publish('orders', { type: 'a\rdata: forged', data: 'x' })).toThrow(
          SseEventError,
        );
        expect(() => hub.publish('orders', [{ data: 'ok' }, { id: 'bad\0', data: 'x' }])).toThrow(
          SseEventError,
        );
        hub.publish('orders', { id: 'after', data: 'fine' });
        const text = await stream.until((x) => x.includes('id: after'));
        expect(text).not.toContain('forged');
        expect(text).not.toContain('data: ok');
      } finally {
        stream.close();
      }
    });

    it('lets a standard EventSource client see open before the first event, then typed events', async () => {
      const client = new RecordingEventSource(`${t.url}/orders/stream`, ['order.created']);
      try {
        await client.opened();
        expect(client.events).toHaveLength(0);
        hub.publish('orders', [
          { id: 'a1', type: 'order.created', data: { id: 1 } },
          { id: 'a2', data: 'multi\nline' },
        ]);
        await client.received(2);
        expect(client.log.slice(0, 3)).toEqual(['open', 'event:order.created', 'event:message']);
        expect(client.events).toEqual([
          { type: 'order.created', data: '{"id":1}', lastEventId: 'a1' },
          { type: 'message', data: 'multi\nline', lastEventId: 'a2' },
        ]);
      } finally {
        client.close();
      }
    });

    it('serves per-request topics from a function of the request', async () => {
      const one = new RecordingEventSource(`${t.url}/1/stream`);
      const two = new RecordingEventSource(`${t.url}/2/stream`);
      try {
        await Promise.all([one.opened(), two.opened()]);
        hub.publish('orders:1', { data: 'for one' });
        hub.publish('orders:2', { data: 'for two' });
        hub.publish('broadcast', { data: 'for all' });
        await Promise.all([one.received(2), two.received(2)]);
        expect(one.events.map((e) => e.data)).toEqual(['for one', 'for all']);
        expect(two.events.map((e) => e.data)).toEqual(['for two', 'for all']);
      } finally {
        one.close();
        two.close();
      }
    });

    it('streams a handler Observable and ends the response when it completes', async () => {
      const stream = await openRaw(`${t.url}/ticks`);
      await stream.ended;
      expect(stream.text()).toBe(
        'retry: 1234\n\nid: t0\ndata: {"n":0}\n\nid: t1\ndata: {"n":1}\n\nid: t2\ndata: {"n":2}\n\n',
      );
    });

    it('drops a handler event that cannot be framed and keeps the stream open', async () => {
      const stream = await openRaw(`${t.url}/feed`);
      try {
        await stream.until((x) => x.startsWith('retry'));
        feed.next({ type: 'bad\nevent: x', data: 'no' });
        feed.next({ data: 'yes' });
        const text = await stream.until((x) => x.includes('data: yes'));
        expect(text).toBe('retry: 1234\n\ndata: yes\n\n');
      } finally {
        stream.close();
      }
    });

    it('tells a topic client that asks to resume to reset, since the hub keeps no history', async () => {
      for (const request of [
        openRaw(`${t.url}/orders/stream`, { 'last-event-id': '41' }),
        openRaw(`${t.url}/orders/stream?lastEventId=41`),
      ]) {
        const stream = await request;
        try {
          const text = await stream.until((x) => x.includes('event: reset'));
          expect(text).toBe(
            'retry: 1234\n\nevent: reset\ndata: {"reason":"replay-unavailable","lastEventId":"41"}\n\n',
          );
        } finally {
          stream.close();
        }
      }
    });

    it('streams to HTTP/1.0 clients too (no chunked encoding: the connection delimits the body)', async () => {
      const { hostname, port } = new URL(t.url);
      const socket = net.connect({ host: hostname, port: Number(port) });
      let raw = '';
      const waiters = new Set<() => void>();
      socket.setEncoding('latin1');
      socket.on('data', (chunk: string) => {
        raw += chunk;
        waiters.forEach((w) => w());
      });
      const until = (text: string) =>
        new Promise<void>((resolve) => {
          const check = () => raw.includes(text) && (waiters.delete(check), resolve());
          waiters.add(check);
          check();
        });
      try {
        socket.write(`GET /orders/stream HTTP/1.0\r\nHost: ${hostname}\r\n\r\n`);
        await until('retry: 1234\n\n');
        hub.publish('orders', { id: 'h10', data: 'old client' });
        await until('data: old client');
        expect(raw).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
        expect(raw).not.toMatch(/transfer-encoding: chunked/i);
        expect(raw.slice(raw.indexOf('\r\n\r\n') + 4)).toBe(
          'retry: 1234\n\nid: h10\ndata: old client\n\n',
        );
      } finally {
        socket.destroy();
      }
    });

    it('leaves ordinary routes alone', async () => {
      const response = await fetch(`${t.url}/plain`);
      expect(await response.json()).toEqual({ ok: true });
    });

    it('keeps headers set before the handler: CORS, and a request id from a hook or middleware', async () => {
      const withHeaders = await startApp(
        [StreamController],
        { sse: { heartbeatMs: 60_000 } },
        {
          platform,
          beforeListen: (app) => {
            app.enableCors({ origin: 'https://app.example' });
            if (platform === 'fastify') {
              // Fastify keeps reply.header() values on the reply until it sends it.
              (app.getHttpAdapter().getInstance() as FastifyInstance).addHook(
                'onRequest',
                (_request, reply, done) => {
                  reply.header('x-request-id', 'r-42');
                  done();
                },
              );
            } else {
              app.use((_request: unknown, response: ServerResponse, next: () => void) => {
                response.setHeader('x-request-id', 'r-42');
                next();
              });
            }
          },
        },
      );
      const stream = await openRaw(`${withHeaders.url}/orders/stream`, {
        origin: 'https://app.example',
      });
      try {
        expect(stream.status).toBe(200);
        expect(stream.headers['access-control-allow-origin']).toBe('https://app.example');
        expect(stream.headers['x-request-id']).toBe('r-42');
        expect(stream.headers['content-type']).toBe('text/event-stream');
      } finally {
        stream.close();
        await withHeaders.close();
      }
    });

    describe('heartbeat', () => {
      let quiet: TestApp;
      beforeAll(async () => {
        quiet = await startApp(
          [StreamController],
          { sse: { heartbeatMs: 100, retryMs: 1234, retryJitterMs: 0 } },
          { platform },
        );
      });
      afterAll(() => quiet.close());

      it('writes a heartbeat comment when a stream stays silent for heartbeatMs', async () => {
        const stream = await openRaw(`${quiet.url}/orders/stream`);
        try {
          const text = await stream.until((x) => x.includes(':\n\n'), 'a heartbeat');
          expect(text).toBe('retry: 1234\n\n:\n\n');
        } finally {
          stream.close();
        }
      });
    });
  });
});
