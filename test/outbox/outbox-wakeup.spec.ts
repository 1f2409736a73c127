// The wake-up takes no lock in anyone's transaction (DESIGN §4): no trigger on the table, a
// NOTIFY after the commits the module knows of, and the transactions it only published into
// watched until they end. Relays here poll once an hour, on a channel of this suite's own
// (other suites' NOTIFYs would wake them too): what arrives was woken.
import { Controller } from '@nestjs/common';
import { Client, Pool } from 'pg';
import { OutboxService, Sse, SSE_LOGGER } from '../../src';
import { OutboxRelay } from '../../src/outbox/read/outbox-relay';
import { OutboxWakeup } from '../../src/outbox/write/outbox-wakeup';
import { RecordingEventSource } from '../support/event-source';
import { FaultProxy } from '../support/fault-proxy';
import { startApp, TestApp } from '../support/http';
import { eventually, FANOUTS, useTwoInstances } from '../support/outbox';
import { databaseUrl, withClient } from '../support/postgres';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const HOUR_MS = 3_600_000;
const ids = (client: RecordingEventSource) => client.events.map((e) => e.lastEventId);
const wakeupOf = (app: TestApp) => app.app.get(OutboxWakeup);
const hasTrigger = (schema: string) =>
  withClient(databaseUrl(), async (client) => {
    const { rows } = await client.query(
      `SELECT 1 FROM pg_trigger WHERE tgrelid = '"${schema}".sse_outbox'::regclass AND tgname = 'sse_outbox_notify'`,
    );
    return rows.length > 0;
  });

describe.each(FANOUTS)('outbox wake-ups after commit, fanout %s (real PostgreSQL)', (fanout) => {
  const channel = `wakeup_${fanout}_${process.pid}`;
  const env = Object.assign(
    useTwoInstances(
      [FeedController],
      'wakeup',
      { outbox: { pollIntervalMs: HOUR_MS, channel } },
      'express',
      fanout,
    ),
    { channel },
  );
  const subscribe = () => {
    const clients = [env.a, env.b].map((app) =>
      env.track(new RecordingEventSource(`${app.url}/feed`)),
    );
    return Promise.all(clients.map((c) => c.opened())).then(() => clients);
  };

  it('puts no trigger on the table, and wakes every instance after outbox.transaction() commits', async () => {
    expect(await hasTrigger(env.schema)).toBe(false);
    const clients = await subscribe();
    const notifications = wakeupOf(env.a).stats.notifications;
    const stored = [];
    for (let i = 0; i < 5; i++)
      stored.push(
        ...(await env.outbox.transaction((tx) =>
          env.outbox.publish(tx, { topic: 'feed', data: i }),
        )),
      );
    await Promise.all(clients.map((c) => c.received(5)));
    for (const client of clients) expect(ids(client)).toEqual(stored);
    // The NOTIFY for the other instances is sent after the commit, spaced: it may follow the
    // delivery (the local relay, or the Redis Stream leader, was quicker).
    await eventually(
      () => wakeupOf(env.a).stats.notifications > notifications,
      'a NOTIFY after the commits',
    );
    // A transaction that published nothing sends no wake-up.
    const commits = wakeupOf(env.a).stats.commits;
    await env.outbox.transaction((tx) => tx.query('SELECT 1'));
    expect(wakeupOf(env.a).stats.commits).toBe(commits);
  });

  it("wakes every instance when the caller's own transaction commits (watched by its id), and forgets one that rolls back", async () => {
    const clients = await subscribe();
    const client = new Client({ connectionString: databaseUrl() });
    await client.connect();
    try {
      await client.query('BEGIN');
      await env.outbox.publish(client, { topic: 'feed', data: 'rolled back' });
      expect(wakeupOf(env.a).watching).toBe(1);
      await client.query('ROLLBACK');
      await eventually(() => wakeupOf(env.a).watching === 0, 'the rollback to be seen');

      await client.query('BEGIN');
      const [id] = await env.outbox.publish(client, { topic: 'feed', data: 'committed' });
      await client.query('COMMIT');
      await Promise.all(clients.map((c) => c.received(1)));
      for (const c of clients)
        expect(c.events.map((e) => [e.lastEventId, e.data])).toEqual([[id, 'committed']]);
      expect(wakeupOf(env.a).watching).toBe(0);
    } finally {
      await client.end();
    }
  });

  it('wakes them after a transaction it began on a pg Pool (an ORM source)', async () => {
    const clients = await subscribe();
    const pool = new Pool({ connectionString: databaseUrl(), max: 2 });
    try {
      const [id] = await env.outbox.transaction(pool, (tx) =>
        env.outbox.publish(tx, { topic: 'feed', data: 'orm' }),
      );
      await Promise.all(clients.map((c) => c.received(1)));
      for (const c of clients) expect(ids(c)).toEqual([id]);
    } finally {
      await pool.end();
    }
  });

  it('watches a transaction held open less and less often, and wakes them once it commits', async () => {
    const clients = await subscribe();
    const wakeup = wakeupOf(env.a);
    const client = new Client({ connectionString: databaseUrl() });
    await client.connect();
    try {
      await client.query('BEGIN');
      const [id] = await env.outbox.publish(client, { topic: 'feed', data: 'held' });
      const checks = wakeup.stats.checks;
      // Checked at 2, 4, 8 … ms: eight checks span half a second.
      await eventually(
        () => wakeup.stats.checks - checks >= 8,
        'eight checks of the open transaction',
      );
      const started = Date.now();
      const more = wakeup.stats.checks;
      await eventually(() => Date.now() - started > 300, '300 ms');
      // Backed off: a few more checks in 300 ms, not one every 2 ms.
      expect(wakeup.stats.checks - more).toBeLessThanOrEqual(3);
      expect(clients[0].events).toEqual([]);
      await client.query('COMMIT');
      await Promise.all(clients.map((c) => c.received(1)));
      for (const c of clients) expect(ids(c)).toEqual([id]);
    } finally {
      await client.end();
    }
  });

  it('reads again while a commit it was woken for is held back by an older transaction that publishes nothing', async () => {
    const clients = await subscribe();
    const relays = [env.a, env.b].map((app) => app.app.get(OutboxRelay));
    // The relays that read the table: every instance's, or the Redis Stream leader's.
    const readers = () =>
      fanout === 'postgres' ? relays : relays.filter((relay) => relay.leader?.leading);
    const retries = relays.map((relay) => relay.heldBackRetries);
    // A business transaction (or another app's migration) that took its id first and stays open:
    // the events committed after it are held back, and its own COMMIT wakes no one.
    const other = new Client({ connectionString: databaseUrl() });
    await other.connect();
    try {
      await other.query('BEGIN');
      await other.query('SELECT pg_current_xact_id()');
      const [id] = await env.outbox.transaction((tx) =>
        env.outbox.publish(tx, { topic: 'feed', data: 'held back' }),
      );
      // Every reader woken by the commit read, found it held back, and reads again.
      await eventually(
        () =>
          readers().length > 0 &&
          readers().every((relay) => relay.heldBackRetries > retries[relays.indexOf(relay)]),
        'the readers to find the committed event held back',
      );
      expect((await relays[0].lag()).pendingEvents).toBe(1);
      expect(clients.map((c) => c.events.length)).toEqual([0, 0]);
      await other.query('COMMIT');
      // Relays poll hourly: only the re-read after the held-back read delivers this.
      await Promise.all(clients.map((c) => c.received(1)));
      for (const c of clients) expect(ids(c)).toEqual([id]);
    } finally {
      await other.end();
    }
  });
});

describe('outbox wake-ups across versions and writers (real PostgreSQL)', () => {
  const channel = `wakeup_mixed_${process.pid}`;
  const env = Object.assign(
    useTwoInstances([FeedController], 'wakeup_mixed', {
      outbox: { pollIntervalMs: HOUR_MS, channel },
    }),
    { channel },
  );

  it('bounds what it watches: past the limit, events still arrive by the poll', async () => {
    const fast = await startApp(
      [FeedController],
      env.options({ outbox: { channel: env.channel, migrate: false, pollIntervalMs: 100 } }),
    );
    try {
      const wakeup = wakeupOf(fast);
      const outbox = fast.app.get(OutboxService);
      const subscriber = env.track(new RecordingEventSource(`${fast.url}/feed`));
      await subscriber.opened();
      // The limit reached (as by 10,000 transactions held open; here by lowering it to 0), a
      // new one is not watched...
      (wakeup as unknown as { maxWatched: number }).maxWatched = 0;
      const dropped = wakeup.stats.dropped;
      const client = new Client({ connectionString: databaseUrl() });
      await client.connect();
      try {
        await client.query('BEGIN');
        const [id] = await outbox.publish(client, { topic: 'feed', data: 'unwatched' });
        await client.query('COMMIT');
        expect(wakeup.stats.dropped).toBe(dropped + 1);
        // ...and still delivered, by the poll.
        await subscriber.received(1);
        expect(ids(subscriber)).toEqual([id]);
      } finally {
        await client.end();
      }
      expect(wakeup.watching).toBe(0);
    } finally {
      await fast.close();
    }
  });

  it('loses nothing when the wake-up is lost (a crash between COMMIT and NOTIFY, a failed NOTIFY): the poll delivers', async () => {
    const polling = await startApp(
      [FeedController],
      env.options({ outbox: { channel: env.channel, migrate: false, pollIntervalMs: 100 } }),
    );
    try {
      const subscriber = env.track(new RecordingEventSource(`${polling.url}/feed`));
      await subscriber.opened();
      const outbox = polling.app.get(OutboxService);
      const wakeup = wakeupOf(polling);
      // Every wake-up of this instance is lost, as if it died right after each COMMIT.
      const committed = jest.spyOn(wakeup, 'committed').mockImplementation(() => undefined);
      try {
        const stored: string[] = [];
        for (let i = 0; i < 3; i++)
          stored.push(
            ...(await outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: i }))),
          );
        expect(committed).toHaveBeenCalledTimes(3);
        expect(wakeup.stats.notifications).toBe(0);
        await subscriber.received(3);
        expect(ids(subscriber)).toEqual(stored);
      } finally {
        committed.mockRestore();
      }
    } finally {
      await polling.close();
    }
  });

  it('wakes them when the connections that send wake-ups and check commits freeze silently (a dropped network path)', async () => {
    // The publishing instance reaches PostgreSQL through a proxy that silences every flow open
    // at freeze() (no FIN, no RST); later connections pass. The subscriber's relay polls hourly.
    const proxy = await FaultProxy.start(databaseUrl());
    const base = env.options({ outbox: { channel: env.channel, migrate: false } });
    const publisher = await startApp([FeedController], {
      ...base,
      postgres: {
        ...base.postgres,
        connectionString: proxy.via(databaseUrl()),
        queryTimeoutMs: 500,
      },
    });
    const client = new Client({ connectionString: databaseUrl() });
    try {
      await client.connect();
      // Earlier tests' events, not read yet by this hourly-polling relay, are handed over first.
      await env.a.app.get(OutboxRelay).runOnce();
      const subscriber = env.track(new RecordingEventSource(`${env.a.url}/feed`));
      await subscriber.opened();
      const outbox = publisher.app.get(OutboxService);
      const wakeup = wakeupOf(publisher);
      const [warm] = await outbox.transaction((tx) =>
        outbox.publish(tx, { topic: 'feed', data: 'warm' }),
      );
      await subscriber.received(1);
      expect(proxy.freeze()).toBeGreaterThan(0); // the pool's idle connections among them
      const failures = wakeup.stats.failures;

      // The caller's own transaction (not through the proxy), published into by the frozen
      // instance: its check hangs on a dead connection, times out, and is tried again on a new one.
      await client.query('BEGIN');
      const [id] = await outbox.publish(client, { topic: 'feed', data: 'after the freeze' });
      await client.query('COMMIT');
      await subscriber.received(2);
      expect(ids(subscriber)).toEqual([warm, id]);
      expect(wakeup.stats.failures).toBeGreaterThan(failures);
      expect(wakeup.watching).toBe(0);
    } finally {
      await client.end().catch(() => undefined);
      await publisher.close();
      await proxy.close();
    }
  });

  it("reads rows other tools insert by the poll; with wakeup: 'trigger', the table's trigger wakes it", async () => {
    const insert = () =>
      withClient(databaseUrl(), (client) =>
        client.query(
          `INSERT INTO "${env.schema}".sse_outbox (topic, payload) VALUES ('feed', '"foreign"') RETURNING tx_id::text || '-' || id::text AS id`,
        ),
      );
    const polling = await startApp(
      [FeedController],
      env.options({ outbox: { channel: env.channel, migrate: false, pollIntervalMs: 100 } }),
    );
    try {
      const onPolling = env.track(new RecordingEventSource(`${polling.url}/feed`));
      await onPolling.opened();
      const { rows } = await insert();
      await onPolling.received(1);
      expect(ids(onPolling)).toEqual([rows[0].id]);
    } finally {
      await polling.close();
    }

    // An instance with wakeup: 'trigger' puts the trigger back; foreign rows now wake relays
    // that poll once an hour.
    const triggered = await startApp(
      [FeedController],
      env.options({ outbox: { channel: env.channel, wakeup: 'trigger' } }),
    );
    try {
      const onA = env.track(new RecordingEventSource(`${env.a.url}/feed`));
      await onA.opened();
      const { rows } = await insert();
      // Woken by the trigger (its own poll is hourly), it reads this row.
      await onA.until(() => ids(onA).includes(rows[0].id), 'the foreign row');
      expect(ids(onA)[ids(onA).length - 1]).toBe(rows[0].id);
    } finally {
      await triggered.close();
    }
  });

  it('says at start, with the statement to run, when a table it does not migrate still has the trigger', async () => {
    const lines: string[] = [];
    const logger = {
      log: () => undefined,
      error: () => undefined,
      warn: (message: string) => void lines.push(message),
    };
    const start = (outbox: Record<string, unknown>) =>
      startApp([FeedController], {
        ...env.options({ outbox: { channel: env.channel, ...outbox } }),
        providers: [{ provide: SSE_LOGGER, useValue: logger }],
      });
    // A table migrated by the team with an earlier version's script: the trigger is there.
    await (await start({ wakeup: 'trigger' })).close();
    expect(await hasTrigger(env.schema)).toBe(true);
    const unmigrated = await start({ migrate: false });
    await unmigrated.close();
    const warned = lines.filter((line) => line.startsWith('[outbox.notify-trigger] '));
    expect(warned).toHaveLength(1);
    expect(warned[0]).toContain(
      `DROP TRIGGER IF EXISTS "sse_outbox_notify" ON "${env.schema}"."sse_outbox"`,
    );
    // Kept on purpose (wakeup: 'trigger'), or dropped by a migrating start: nothing to say.
    lines.length = 0;
    await (await start({ migrate: false, wakeup: 'trigger' })).close();
    await (await start({})).close();
    await (await start({ migrate: false })).close();
    expect(lines.filter((line) => line.startsWith('[outbox.notify-trigger] '))).toEqual([]);
  });

  it('keeps delivering in a rolling deploy: an instance of the trigger version and one of this', async () => {
    // The old version: its table has the trigger, its relay is woken by NOTIFY only.
    const old = await startApp(
      [FeedController],
      env.options({ outbox: { channel: env.channel, wakeup: 'trigger', pollIntervalMs: HOUR_MS } }),
    );
    try {
      expect(await hasTrigger(env.schema)).toBe(true);
      // The new version starts and migrates: the trigger goes, and it says so.
      const logged: string[] = [];
      const log = (message: string) => void logged.push(message);
      const current = await startApp([FeedController], {
        ...env.options({ outbox: { channel: env.channel, pollIntervalMs: 200 } }),
        providers: [{ provide: SSE_LOGGER, useValue: { log, warn: log, error: log } }],
      });
      try {
        expect(await hasTrigger(env.schema)).toBe(false);
        expect(
          logged.filter((line) => line.startsWith('[outbox.notify-trigger-dropped] ')),
        ).toHaveLength(1);
        const onOld = env.track(new RecordingEventSource(`${old.url}/feed`));
        const onNew = env.track(new RecordingEventSource(`${current.url}/feed`));
        await Promise.all([onOld.opened(), onNew.opened()]);
        const publish = (app: TestApp, data: string) => {
          const outbox = app.app.get(OutboxService);
          return outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data }));
        };
        // New → old: the NOTIFY sent after the commit wakes the old relay.
        const [fromNew] = await publish(current, 'from new');
        await Promise.all([onOld.received(1), onNew.received(1)]);
        // Old → new: no trigger any more; the new relay's poll reads it (200 ms here, 1 s by
        // default). The old relay itself, which polls hourly here, reads it with the next
        // wake-up from a new instance.
        const [fromOld] = await publish(old, 'from old');
        await onNew.received(2);
        const [again] = await publish(current, 'from new again');
        await Promise.all([onOld.received(3), onNew.received(3)]);
        expect(ids(onOld)).toEqual([fromNew, fromOld, again]);
        expect(ids(onNew)).toEqual([fromNew, fromOld, again]);
      } finally {
        await current.close();
      }
    } finally {
      await old.close();
    }
  });
});
