import * as net from 'node:net';
import { once } from 'node:events';
import { SseConnectionRegistry } from '../../src';
import { raceTimeout } from '../../src/common/timeout';
import { eventually } from '../support/outbox';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import {
  GenerateController,
  UserGuard,
  openGate,
  runs,
  tokensOf,
  useJobApps,
} from './support/generate-app';

// Job streams outlive their connections: resumed or followed from any instance, once, in order.
describe.each(PLATFORMS)('on %s: job streams resume (real Redis)', (platform) => {
  const env = useJobApps(platform);
  const { start, resume, at, options } = env;
  let a: TestApp;
  let b: TestApp;
  beforeAll(() => ({ a, b } = env));

  it('runs on when the client is cut; resumed on another instance, every token once, in order, then done; then 204', async () => {
    const first = start(a, { tokens: 30, everyMs: 15 });
    await first.opened;
    expect(first.status).toBe(200);
    const location = first.headers.get('content-location');
    expect(location).toMatch(/^\/generate\/[A-Za-z0-9_-]{22}$/);
    await first.received(5);
    first.cut();
    const seen = first.events.slice();
    const lastId = seen[seen.length - 1].id!;

    const rest = resume(at(b, location), { 'last-event-id': lastId });
    await rest.ended;
    expect(rest.status).toBe(200);
    const all = [...seen, ...rest.events];
    expect(tokensOf(all)).toEqual(Array.from({ length: 30 }, (_, i) => `t${i}`));
    expect(all.map((e) => e.id)).toEqual(Array.from({ length: 31 }, (_, i) => String(i + 1)));
    expect(all[all.length - 1]).toMatchObject({ event: 'done', id: '31' });
    expect(runs).toHaveLength(1);

    // EventSource reconnects after the end with the last id: 204 stops it.
    const after = await fetch(at(a, location), { headers: { 'last-event-id': '31' } });
    expect(after.status).toBe(204);
    // Without an id: the whole job again, from its log.
    const replay = resume(at(a, location));
    await replay.ended;
    expect(tokensOf(replay.events)).toHaveLength(30);
  });

  it('follows live from another instance while the job runs there', async () => {
    const gate = `${platform}:follow-live`;
    const first = start(a, { tokens: 20, everyMs: 5, gate, holdAt: 10 });
    await first.received(10);
    const follower = resume(at(b, first.headers.get('content-location')));
    // The job is held after 10 tokens: the follower has them, and no end, while it still runs.
    await follower.received(10);
    expect(follower.events.map((e) => e.event)).toEqual(Array(10).fill('token'));
    expect(runs[0].signal.aborted).toBe(false);
    openGate(gate);
    // What the job emits from now on reaches the follower live.
    await Promise.all([first.ended, follower.ended]);
    expect(tokensOf(follower.events)).toEqual(Array.from({ length: 20 }, (_, i) => `t${i}`));
    expect(tokensOf(follower.events)).toEqual(tokensOf(first.events));
    expect(follower.events[follower.events.length - 1].event).toBe('done');
  });

  it.each(['generate-once', 'generate-once-too'])(
    'with @Idempotent(), a retried POST attaches to the same job: the handler ran once (%s)',
    async (route) => {
      const headers = { 'idempotency-key': `job-${platform}-${route}` };
      const first = start(a, { tokens: 10, everyMs: 20 }, headers, route);
      await first.received(3);
      first.cut();
      const retry = start(
        b,
        { tokens: 10, everyMs: 20 },
        { ...headers, 'last-event-id': first.events[2].id! },
        route,
      );
      await retry.ended;
      expect(retry.status).toBe(200);
      expect(retry.headers.get('content-location')).toBe(first.headers.get('content-location'));
      expect(tokensOf([...first.events.slice(0, 3), ...retry.events])).toEqual(
        Array.from({ length: 10 }, (_, i) => `t${i}`),
      );
      expect(runs).toHaveLength(1);
      // Same key, another body: 422 as for any idempotent request.
      const other = await fetch(`${b.url}/${route}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify({ tokens: 11 }),
      });
      expect(other.status).toBe(422);
    },
  );

  it('cuts a job client that stops reading (slow consumer); the job runs on and a resume gets it all', async () => {
    const c = await startApp(
      [GenerateController],
      options(
        { maxBytes: 128 * 1024 * 1024, maxEvents: 2000 },
        { maxBufferedBytes: 64 * 1024, slowConsumerMs: 200 },
      ),
      { platform, providers: [UserGuard] },
    );
    try {
      // A client that reads the response head, then nothing more.
      const { hostname, port } = new URL(c.url);
      // 31 MiB: loopback's socket buffers take several MiB before the backlog shows.
      const body = JSON.stringify({ tokens: 1000, everyMs: 1, pad: 32 * 1024 });
      const socket = net.connect({ host: hostname, port: Number(port) });
      socket.write(
        `POST /generate HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/json\r\n` +
          `Content-Length: ${body.length}\r\n\r\n${body}`,
      );
      let head = '';
      await new Promise<void>((resolve) => {
        const onData = (chunk: Buffer) => {
          head += chunk.toString('latin1');
          if (!head.includes('retry:')) return;
          socket.off('data', onData);
          socket.pause();
          resolve();
        };
        socket.on('data', onData);
      });
      const location = /content-location: (\S+)/i.exec(head)![1];
      const registry = c.app.get(SseConnectionRegistry);
      await eventually(() => registry.stats.slowConsumers >= 1, 'the stalled client cut');
      // Its connection was closed by the server (seen once the client reads again).
      const closed = once(socket, 'close');
      socket.on('data', () => undefined);
      socket.resume();
      await raceTimeout(closed, 10_000, () => {
        throw new Error('the stalled client was never closed');
      });
      // From another instance: the log is shared, and this one's limits are for the stalled client.
      const rest = resume(at(a, location));
      await rest.ended;
      expect(tokensOf(rest.events).map((t) => t.split(' ')[0])).toEqual(
        Array.from({ length: 1000 }, (_, i) => `t${i}`),
      );
      expect(rest.events[rest.events.length - 1].event).toBe('done');
    } finally {
      await c.close();
    }
  });
});
