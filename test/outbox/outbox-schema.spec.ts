import { Controller } from '@nestjs/common';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OutboxService, Sse } from '../../src';
import { OUTBOX_DEFAULTS } from '../../src/config/sse-module-options';
import { outboxSchemaScript } from '../../src/outbox/store/outbox.sql';
import { RecordingEventSource } from '../support/event-source';
import { startApp } from '../support/http';
import { databaseUrl, dropSchema, uniqueSchema, withClient } from '../support/postgres';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

describe('outbox schema', () => {
  it('docs/outbox-schema.sql is the schema the module creates', () => {
    const documented = fs.readFileSync(
      path.join(__dirname, '../../docs/outbox-schema.sql'),
      'utf8',
    );
    expect(documented).toBe(
      outboxSchemaScript({
        schema: 'public',
        table: OUTBOX_DEFAULTS.table,
        channel: OUTBOX_DEFAULTS.channel,
      }),
    );
  });

  it('works when a team applies the script itself and starts the module with migrate: false', async () => {
    const schema = uniqueSchema('manual');
    await withClient(databaseUrl(), (client) =>
      client.query(outboxSchemaScript({ schema, table: 'events', channel: 'events_ready' })),
    );
    const t = await startApp([FeedController], {
      sse: { heartbeatMs: 60_000 },
      postgres: { connectionString: databaseUrl(), schema },
      outbox: { table: 'events', channel: 'events_ready', migrate: false, pollIntervalMs: 60_000 },
    });
    const client = new RecordingEventSource(`${t.url}/feed`);
    try {
      await client.opened();
      const outbox = t.app.get(OutboxService);
      const [id] = await outbox.transaction((tx) =>
        outbox.publish(tx, { topic: 'feed', data: 'hi' }),
      );
      // Delivered through the trigger's NOTIFY: polling is an hour away.
      await client.received(1);
      expect(client.events[0].lastEventId).toBe(id);
    } finally {
      client.close();
      await t.close();
      await dropSchema(schema);
    }
  });

  it('migrates safely when several instances start at once', async () => {
    const schema = uniqueSchema('concurrent');
    const options = {
      sse: { heartbeatMs: 60_000 },
      postgres: { connectionString: databaseUrl(), schema },
    };
    const apps = await Promise.all([
      startApp([], options),
      startApp([], options),
      startApp([], options),
    ]);
    try {
      const { rows } = await withClient(databaseUrl(), (client) =>
        client.query(`SELECT count(*)::int AS n FROM "${schema}".sse_outbox_meta`),
      );
      expect(rows[0].n).toBe(1);
    } finally {
      await Promise.all(apps.map((app) => app.close()));
      await dropSchema(schema);
    }
  });

  it('adds trace_context to a table created before it (migrate: true), and explains it when migrations are the team’s', async () => {
    const schema = uniqueSchema('upgrade');
    // The schema as the first release created it: no trace_context column.
    const before = outboxSchemaScript({ schema, table: 'sse_outbox', channel: 'sse_outbox' })
      .replace(/\n\s*trace_context text,/, '')
      .replace(/ALTER TABLE [^;]+ADD COLUMN IF NOT EXISTS trace_context text;/, '');
    expect(before).not.toMatch(/trace_context/);
    await withClient(databaseUrl(), (client) => client.query(before));
    const options = {
      sse: { heartbeatMs: 60_000 },
      postgres: { connectionString: databaseUrl(), schema },
      outbox: { pollIntervalMs: 60_000 },
    };
    const publish = (t: { app: { get: (token: typeof OutboxService) => OutboxService } }) => {
      const outbox = t.app.get(OutboxService);
      return outbox.transaction((tx) => outbox.publish(tx, { topic: 'feed', data: 'hi' }));
    };
    try {
      const manual = await startApp([FeedController], {
        ...options,
        outbox: { ...options.outbox, migrate: false },
      });
      try {
        await expect(publish(manual)).rejects.toThrow(
          /trace_context.*apply the ALTER TABLE … ADD COLUMN trace_context of docs\/outbox-schema.sql/s,
        );
      } finally {
        await manual.close();
      }

      const migrated = await startApp([FeedController], options);
      const client = new RecordingEventSource(`${migrated.url}/feed`);
      try {
        await client.opened();
        const [id] = await publish(migrated);
        await client.received(1);
        expect(client.events[0].lastEventId).toBe(id);
      } finally {
        client.close();
        await migrated.close();
      }
    } finally {
      await dropSchema(schema);
    }
  });
});
