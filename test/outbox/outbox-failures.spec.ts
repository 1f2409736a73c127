// Failure cases run against a private PostgreSQL server, never the shared one.
import { Controller } from '@nestjs/common';
import { once } from 'node:events';
import { OutboxRelay, OutboxService, Sse, SseModuleOptions } from '../../src';
import { RecordingEventSource } from '../support/event-source';
import { startApp, TestApp } from '../support/http';
import { withClient } from '../support/postgres';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { startPrivatePostgres } = require('../support/services');

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const terminateListener = (url: string) =>
  withClient(url, (client) =>
    client.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nestjs-durable-sse listener'`,
    ),
  );

describe('outbox under failures (private PostgreSQL)', () => {
  let pg: { url: string; destroy(): Promise<void> };
  beforeAll(async () => {
    pg = await startPrivatePostgres();
  }, 60_000);
  afterAll(() => pg?.destroy());

  const options = (extra: SseModuleOptions['outbox'] = {}): SseModuleOptions => ({
    sse: { heartbeatMs: 60_000 },
    postgres: { connectionString: pg.url, pool: { max: 8 } },
    outbox: { pollIntervalMs: 200, listenerCheckMs: 500, ...extra },
  });

  it('delivers every one of 10,000 events exactly once, in order, while the listener is killed mid-burst', async () => {
    const t: TestApp = await startApp([FeedController], options());
    const client = new RecordingEventSource(`${t.url}/feed`);
    try {
      await client.opened();
      const outbox = t.app.get(OutboxService);
      const relay = t.app.get(OutboxRelay);
      const connectsBefore = relay.listenerStats!.connects;
      const publishers = Array.from({ length: 4 }, (_, p) =>
        (async () => {
          const stored: string[] = [];
          for (let batch = 0; batch < 25; batch++) {
            const events = Array.from({ length: 100 }, (_, i) => ({
              topic: 'feed',
              data: { p, batch, i },
            }));
            stored.push(...(await outbox.transaction((tx) => outbox.publish(tx, events))));
            if (p === 0 && (batch === 5 || batch === 15)) await terminateListener(pg.url);
          }
          return stored;
        })(),
      );
      const stored = (await Promise.all(publishers)).flat();
      expect(stored).toHaveLength(10_000);
      await client.received(10_000);
      const received = client.events.map((e) => e.lastEventId);
      expect(new Set(received).size).toBe(10_000);
      // One global order: the order of positions, which is how the ids compare.
      const byPosition = [...stored].sort((x, y) => {
        const [xt, xi] = x.split('-').map(BigInt);
        const [yt, yi] = y.split('-').map(BigInt);
        return xt === yt ? (xi < yi ? -1 : 1) : xt < yt ? -1 : 1;
      });
      expect(received).toEqual(byPosition);
      // The listener really was killed and came back.
      if (!relay.listenerStats!.connected) await once(relay.listenerEvents!, 'listening');
      expect(relay.listenerStats!.connects).toBeGreaterThan(connectsBefore);
      expect(relay.listenerStats!.failures).toBeGreaterThanOrEqual(1);
    } finally {
      client.close();
      await t.close();
    }
  }, 120_000);

  it('delivers by polling when no notification ever arrives', async () => {
    // Rows are inserted by a table whose trigger notifies another channel than the relay hears.
    const writer = await startApp(
      [FeedController],
      options({ table: 'polled', channel: 'writer_channel' }),
    );
    const reader = await startApp(
      [FeedController],
      options({ table: 'polled', channel: 'reader_channel', migrate: false, pollIntervalMs: 100 }),
    );
    const client = new RecordingEventSource(`${reader.url}/feed`);
    try {
      await client.opened();
      const relay = reader.app.get(OutboxRelay);
      const notificationsBefore = relay.listenerStats!.notifications;
      const outbox = writer.app.get(OutboxService);
      const [id] = await outbox.transaction((tx) =>
        outbox.publish(tx, { topic: 'feed', data: 'polled' }),
      );
      await client.received(1);
      expect(client.events[0]).toMatchObject({ data: 'polled', lastEventId: id });
      expect(relay.listenerStats!.notifications).toBe(notificationsBefore);
    } finally {
      client.close();
      await reader.close();
      await writer.close();
    }
  });

  it('replaces a listener whose server process hangs silently (liveness check under a timeout)', async () => {
    const t = await startApp([FeedController], options({ table: 'liveness', channel: 'liveness' }));
    const relay = t.app.get(OutboxRelay);
    const client = new RecordingEventSource(`${t.url}/feed`);
    let frozen: number | undefined;
    try {
      await client.opened();
      const { rows } = await withClient(pg.url, (c) =>
        c.query(
          `SELECT pid FROM pg_stat_activity WHERE application_name = 'nestjs-durable-sse listener'`,
        ),
      );
      expect(rows).toHaveLength(1);
      frozen = rows[0].pid as number;
      // The backend stops answering but its socket stays open: no error ever reaches the client.
      const lost = once(relay.listenerEvents!, 'lost');
      process.kill(frozen, 'SIGSTOP');
      const [error] = await lost;
      expect(String(error.message)).toMatch(/liveness check timed out/);
      await once(relay.listenerEvents!, 'listening');

      const outbox = t.app.get(OutboxService);
      const [id] = await outbox.transaction((tx) =>
        outbox.publish(tx, { topic: 'feed', data: 'after' }),
      );
      await client.received(1);
      expect(client.events[0].lastEventId).toBe(id);
    } finally {
      client.close();
      if (frozen !== undefined) {
        // TERM first: it stays pending while the backend is stopped, and CONT then lets it act on
        // it. The other order races the backend's own exit once it sees its client gone (ESRCH).
        signalIfAlive(frozen, 'SIGTERM');
        signalIfAlive(frozen, 'SIGCONT');
      }
      await t.close();
    }
  });
});

function signalIfAlive(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}
