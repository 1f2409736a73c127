import { Controller, Injectable } from '@nestjs/common';
import {
  Sse,
  SSE_CLIENT_KEY_RESOLVER,
  SseClientKeyResolver,
  SseConnectionRegistry,
  SseHub,
  SseRequest,
} from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { get, openRaw, RawStream, PLATFORMS, startApp, TestApp } from '../support/http';

@Injectable()
class HeaderClientKey implements SseClientKeyResolver {
  resolve(request: SseRequest): string {
    return String(request.headers['x-client'] ?? 'anonymous');
  }
}

@Controller()
class LimitedController {
  @Sse('stream', { topic: 'limited' })
  stream() {}

  @Sse('polite', { topic: 'limited', rejectMode: 'retry' })
  polite() {}
}

const byHeader = { provide: SSE_CLIENT_KEY_RESOLVER, useClass: HeaderClientKey };

async function openStreams(url: string, clients: string[]): Promise<RawStream[]> {
  const streams: RawStream[] = [];
  for (const client of clients) {
    const stream = await openRaw(url, { 'x-client': client });
    expect(stream.status).toBe(200);
    await stream.until((x) => x.startsWith('retry'));
    streams.push(stream);
  }
  return streams;
}

describe.each(PLATFORMS)('on %s', (platform) => {
  describe('connection limits', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [LimitedController],
        {
          sse: {
            maxConnections: 3,
            maxConnectionsPerClient: 2,
            rejectRetryMs: 5000,
            heartbeatMs: 60_000,
          },
          providers: [byHeader],
        },
        { platform },
      );
    });
    afterAll(() => t.close());

    it('answers 429 + Retry-After past the per-client limit and 503 + Retry-After when the instance is full', async () => {
      const registry = t.app.get(SseConnectionRegistry);
      const streams = await openStreams(`${t.url}/stream`, ['a', 'a']);
      try {
        const overClient = await get(`${t.url}/stream`, { 'x-client': 'a' });
        expect(overClient.status).toBe(429);
        expect(Number(overClient.headers['retry-after'])).toBeGreaterThanOrEqual(5);
        expect(Number(overClient.headers['retry-after'])).toBeLessThanOrEqual(10);
        expect(overClient.headers['content-type']).toMatch(/^application\/json/);

        streams.push(...(await openStreams(`${t.url}/stream`, ['b'])));
        const full = await get(`${t.url}/stream`, { 'x-client': 'c' });
        expect(full.status).toBe(503);
        expect(Number(full.headers['retry-after'])).toBeGreaterThanOrEqual(5);
        expect(registry.stats).toMatchObject({ open: 3, max: 3, clients: 2 });
      } finally {
        streams.forEach((s) => s.close());
      }
      await registry.whenEmpty();
      expect(registry.stats).toMatchObject({ open: 0, clients: 0 });
      const again = await openStreams(`${t.url}/stream`, ['a', 'a', 'c']);
      again.forEach((s) => s.close());
      await registry.whenEmpty();
    });

    it("uses the user's client-key resolver instead of the default (provider override)", () => {
      expect(t.app.get(SSE_CLIENT_KEY_RESOLVER)).toBeInstanceOf(HeaderClientKey);
    });

    it("answers a refused stream on a rejectMode 'retry' route with 200, a jittered retry: and a close", async () => {
      const streams = await openStreams(`${t.url}/stream`, ['a', 'b', 'c']);
      try {
        const refused = await openRaw(`${t.url}/polite`, { 'x-client': 'd' });
        await refused.ended;
        expect(refused.status).toBe(200);
        expect(refused.headers['content-type']).toBe('text/event-stream');
        const match = /^retry: (\d+)\n\n: rejected: instance-full\n\n$/.exec(refused.text());
        expect(match).not.toBeNull();
        expect(Number(match![1])).toBeGreaterThanOrEqual(5000);
        expect(Number(match![1])).toBeLessThan(10000);
      } finally {
        streams.forEach((s) => s.close());
      }
      await t.app.get(SseConnectionRegistry).whenEmpty();
    });
  });

  describe("the default client key: the platform's client address, with its trust-proxy setting", () => {
    const forwarded = (address: string) => ({ 'x-forwarded-for': address });
    const limits = { sse: { maxConnectionsPerClient: 1, heartbeatMs: 60_000 } };

    it('keys by the forwarded client address when the platform trusts the proxy', async () => {
      const t = await startApp([LimitedController], limits, { platform, trustProxy: true });
      const streams: RawStream[] = [];
      try {
        for (const address of ['203.0.113.1', '203.0.113.2']) {
          const stream = await openRaw(`${t.url}/stream`, forwarded(address));
          streams.push(stream);
          expect(stream.status).toBe(200);
        }
        expect((await get(`${t.url}/stream`, forwarded('203.0.113.1'))).status).toBe(429);
        expect(t.app.get(SseConnectionRegistry).stats).toMatchObject({ open: 2, clients: 2 });
      } finally {
        streams.forEach((s) => s.close());
        await t.close();
      }
    });

    it('ignores X-Forwarded-For when it does not (every client is the peer address)', async () => {
      const t = await startApp([LimitedController], limits, { platform });
      const stream = await openRaw(`${t.url}/stream`, forwarded('203.0.113.1'));
      try {
        expect(stream.status).toBe(200);
        expect((await get(`${t.url}/stream`, forwarded('203.0.113.2'))).status).toBe(429);
      } finally {
        stream.close();
        await t.close();
      }
    });
  });

  describe('resumes under sse.resumesPerSecond (a reconnect storm)', () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [LimitedController],
        { sse: { resumesPerSecond: 1, heartbeatMs: 60_000, retryMs: 1000, retryJitterMs: 4000 } },
        { platform },
      );
    });
    afterAll(() => t.close());

    it('takes the first ones back, refuses the rest with when to come back; new streams are not counted', async () => {
      const resumes = await Promise.all(
        Array.from({ length: 6 }, () => openRaw(`${t.url}/stream`, { 'last-event-id': '7' })),
      );
      const fresh = await openRaw(`${t.url}/stream`);
      const polite = await openRaw(`${t.url}/polite`, { 'last-event-id': '7' });
      try {
        // One a second: the first is taken back (a second one only if a second went by).
        const admitted = resumes.filter((r) => r.status === 200).length;
        expect(admitted).toBeGreaterThanOrEqual(1);
        expect(admitted).toBeLessThanOrEqual(2);
        const refused = resumes.filter((r) => r.status === 503);
        expect(refused).toHaveLength(6 - admitted);
        // Each told to come back when the ones refused before it will have been taken (1/s).
        const waits = refused.map((r) => Number(r.headers['retry-after'])).sort();
        expect(waits.every((w) => w >= 1 && w <= 7)).toBe(true);
        expect(fresh.status).toBe(200);
        // rejectMode 'retry': 200 with when to come back, which every EventSource obeys.
        expect(polite.status).toBe(200);
        const text = await polite.ended.then(() => polite.text());
        expect(text).toMatch(/^retry: \d+\n\n: rejected: resume-rate\n\n$/);
      } finally {
        for (const stream of [...resumes, fresh, polite]) stream.close();
      }
    });

    it('gives each stream its own retry: in [retryMs, retryMs + retryJitterMs)', async () => {
      const streams = await Promise.all(
        Array.from({ length: 8 }, () => openRaw(`${t.url}/stream`)),
      );
      try {
        const retries = await Promise.all(
          streams.map(async (s) =>
            Number(/^retry: (\d+)/.exec(await s.until((x) => x.includes('\n\n')))![1]),
          ),
        );
        expect(retries.every((r) => r >= 1000 && r < 5000)).toBe(true);
        expect(new Set(retries).size).toBeGreaterThan(1);
      } finally {
        for (const stream of streams) stream.close();
      }
    });
  });

  describe("rejectMode 'retry' with a real EventSource", () => {
    let t: TestApp;
    beforeAll(async () => {
      t = await startApp(
        [LimitedController],
        {
          sse: {
            maxConnections: 1,
            maxConnectionsPerClient: 1,
            rejectMode: 'retry',
            rejectRetryMs: 20,
            heartbeatMs: 60_000,
          },
          providers: [byHeader],
        },
        { platform },
      );
    });
    afterAll(() => t.close());

    it('keeps a refused browser client retrying until there is room, then it streams', async () => {
      const registry = t.app.get(SseConnectionRegistry);
      const [holder] = await openStreams(`${t.url}/stream`, ['a']);
      const waiting = new RecordingEventSource(`${t.url}/stream`, [], { 'x-client': 'b' });
      try {
        // Refused at least twice (each refusal is an open followed by a close), never given up.
        await waiting.until(
          () => waiting.log.filter((entry) => entry === 'error').length >= 2,
          'two refusals',
        );
        expect(registry.stats.open).toBe(1);
        holder.close();
        await registry.whenEmpty();
        // Only an admitted stream subscribes; refusals never do.
        const hub = t.app.get(SseHub);
        await waiting.until(() => hub.subscriberCount('limited') === 1, 'admission');
        hub.publish('limited', { data: 'finally' });
        await waiting.received(1);
        expect(waiting.events[0].data).toBe('finally');
      } finally {
        waiting.close();
      }
    });
  });

  describe('a provider for a module token declared outside the providers extra', () => {
    it('does not change what the module uses (documented: use the providers extra)', async () => {
      const t = await startApp(
        [LimitedController],
        { sse: { maxConnections: 10, maxConnectionsPerClient: 1, heartbeatMs: 60_000 } },
        { platform, providers: [byHeader] },
      );
      try {
        const [first] = await openStreams(`${t.url}/stream`, ['a']);
        // Different x-client header, same address: the default resolver still applies.
        const second = await get(`${t.url}/stream`, { 'x-client': 'b' });
        expect(second.status).toBe(429);
        first.close();
      } finally {
        await t.close();
      }
    });
  });
});
