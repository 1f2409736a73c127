// "Load the state, then stream from exactly there" (issue 25): a page reads its state and
// outbox.position() in one snapshot, then streams with ?lastEventId=<position>: every event its
// state lacks arrives once — including those of a transaction that was open during the read and
// has a lower id than events the state already shows — and none it has. Both fan-outs, each
// replay source (memory, and the table or the Redis Stream), and the live path.
import { Controller } from '@nestjs/common';
import { Pool, PoolClient } from 'pg';
import { OutboxService, Sse } from '../../src';
import { OutboxPositionError } from '../../src/outbox/write/snapshot-position';
import { RecordingEventSource } from '../support/event-source';
import { startApp, TestApp } from '../support/http';
import { dropOutbox, outboxOptions, relayCaughtUp } from '../support/outbox';
import { databaseUrl, uniqueSchema } from '../support/postgres';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

const cases = [
  ['postgres', 'memory', undefined],
  ['postgres', 'the table', 0],
  ['redis', 'memory', undefined],
  ['redis', 'the Redis Stream', 0],
] as const;

describe.each(cases)('fanout %s, replayed from %s', (fanout, _source, replayCacheBytes) => {
  const schema = uniqueSchema('position');
  const items = `"${schema}".items`;
  let t: TestApp;
  let outbox: OutboxService;
  let pool: Pool;
  const clients: RecordingEventSource[] = [];

  beforeAll(async () => {
    t = await startApp(
      [FeedController],
      outboxOptions(schema, { outbox: { replayCacheBytes } }, fanout),
    );
    outbox = t.app.get(OutboxService);
    pool = new Pool({ connectionString: databaseUrl(), max: 3 });
    await pool.query(`CREATE TABLE ${items} (name text PRIMARY KEY)`);
  });
  afterEach(async () => {
    for (const client of clients.splice(0)) client.close();
    await pool.query(`TRUNCATE ${items}`);
  });
  afterAll(async () => {
    await t?.close();
    await pool?.end();
    await dropOutbox(schema);
  });

  /** An item and its event, in the transaction `tx` is in. */
  const write = async (tx: PoolClient, name: string) => {
    await tx.query(`INSERT INTO ${items} (name) VALUES ($1)`, [name]);
    await outbox.publish(tx, { topic: 'feed', type: 'item', data: name });
  };
  const committed = (name: string) => outbox.transaction((tx) => write(tx, name));
  /** A transaction that has written `name` and stays open until `commit()`. */
  const open = async (name: string) => {
    const tx = await pool.connect();
    await tx.query('BEGIN');
    await write(tx, name);
    return {
      commit: async () => {
        await tx.query('COMMIT');
        tx.release();
      },
    };
  };
  /** The page: its state and its position, read in one snapshot. */
  const page = () =>
    outbox.snapshot(async (client) => {
      const { rows } = await client.query<{ name: string }>(
        `SELECT name FROM ${items} ORDER BY name`,
      );
      return rows.map((row) => row.name);
    });
  const stream = (lastEventId: string) => {
    const client = new RecordingEventSource(
      `${t.url}/feed?lastEventId=${encodeURIComponent(lastEventId)}`,
      ['item', 'reset'],
    );
    clients.push(client);
    return client;
  };
  const names = (client: RecordingEventSource) =>
    client.events.map((event) => (event.type === 'reset' ? 'reset' : event.data));

  it('replays exactly what the state lacks: the open transaction (lower id) and later commits', async () => {
    await committed('a-before');
    const slow = await open('b-open'); // began first: a lower transaction id than c's
    await committed('c-seen');
    const { result: state, lastEventId } = await page();
    expect(state).toEqual(['a-before', 'c-seen']);
    await slow.commit();
    await committed('d-after');
    await relayCaughtUp(t); // everything is behind the relay: the stream replays it

    const client = stream(lastEventId);
    await client.received(2);
    await committed('e-live');
    await client.received(3);
    expect(names(client)).toEqual(['b-open', 'd-after', 'e-live']);
  });

  it('skips, live, the events the state has that arrive after the stream opened', async () => {
    const slow = await open('b-open');
    await committed('c-seen'); // held back behind b-open: not delivered before the stream opens
    const { result: state, lastEventId } = await page();
    expect(state).toEqual(['c-seen']);
    const client = stream(lastEventId);
    await client.opened();
    await slow.commit(); // b-open and c-seen now reach the relay together; c-seen is skipped
    await committed('d-after');
    await client.received(2);
    expect(names(client)).toEqual(['b-open', 'd-after']);
  });

  it('refuses a position that would not be the state’s, and a position from the future', async () => {
    const tx = await pool.connect();
    try {
      await tx.query('BEGIN'); // READ COMMITTED: each statement has its own snapshot
      await expect(outbox.position(tx)).rejects.toThrow(
        /needs a REPEATABLE READ \(or SERIALIZABLE\) transaction.*this one is read committed/,
      );
      await tx.query('ROLLBACK');
      await tx.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
      await write(tx, 'x');
      await expect(outbox.position(tx)).rejects.toThrow(OutboxPositionError);
      await tx.query('ROLLBACK');
    } finally {
      tx.release();
    }
    const far = 1n << 40n;
    const client = stream(`${far}:${far}:`);
    await client.received(1);
    expect(names(client)).toEqual(['reset']);
    expect(JSON.parse(client.events[0].data).reason).toBe('unknown');
  });
});
