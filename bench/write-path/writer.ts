/**
 * write-path benchmark: one load-generating process, forked by main.ts, so that the writers do
 * not share a Node.js process (and its one core) with the instance that delivers the events.
 *
 * It runs `writers` concurrent loops of the business transaction for `seconds` once told to
 * (`run`), then reports how many committed: plain (BEGIN; INSERT an order; COMMIT on a pg.Pool
 * of `writers` connections), or through the module (`outbox.transaction()` inserting the order
 * and publishing its event, in a Nest app of its own — an instance, with its own relay — whose
 * pool has `writers` connections). It exits with its parent.
 */
import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Pool } from 'pg';
import { OutboxService, SseModule } from '../../src';
import { OutboxWakeup } from '../../src/outbox/write/outbox-wakeup';
import { now } from '../shared/sse-client';

export interface WriterConfig {
  /** `plain`, or `<fanout>/<wakeup>`. */
  mode: string;
  writers: number;
  seconds: number;
  databaseUrl: string;
  redisUrl: string;
  schema: string;
  /** This process's Redis key prefix (`fanout: 'redis'`): the stream the subscriber follows. */
  keyPrefix: string;
  /** Sequence numbers of this process's events start here (unique across processes). */
  firstSeq: number;
}

const config = JSON.parse(process.argv[2]) as WriterConfig;
const orders = `"${config.schema}".orders`;
// Never outlive the bench: its end (or its death) closes the IPC channel.
process.on('disconnect', () => process.exit(0));

async function instance() {
  const [fanout, wakeup] = config.mode.split('/') as [
    'postgres' | 'redis',
    'after-commit' | 'trigger',
  ];
  @Module({
    imports: [
      SseModule.forRoot({
        postgres: {
          connectionString: config.databaseUrl,
          schema: config.schema,
          pool: { max: config.writers, connectionTimeoutMs: 60_000 },
        },
        outbox: { fanout, wakeup, batchSize: 1_000, migrate: false },
        ...(fanout === 'redis'
          ? { redis: { url: config.redisUrl, keyPrefix: config.keyPrefix } }
          : {}),
        health: { path: false },
      }),
    ],
  })
  class WriterModule {}
  const app = await NestFactory.create(WriterModule, { logger: ['error', 'warn'] });
  await app.listen(0, '127.0.0.1');
  return app;
}

async function main() {
  const app = config.mode === 'plain' ? undefined : await instance();
  const outbox = app?.get(OutboxService);
  const pool = app
    ? undefined
    : new Pool({ connectionString: config.databaseUrl, max: config.writers });
  let seq = config.firstSeq;
  const tx = outbox
    ? async (n: number) => {
        await outbox.transaction(async (client) => {
          const { rows } = await client.query(
            `INSERT INTO ${orders} (item) VALUES ($1) RETURNING id`,
            [`item-${n}`],
          );
          await outbox.publish(client, {
            topic: 'orders',
            type: 'order',
            data: { n, id: rows[0].id },
          });
        });
      }
    : async (n: number) => {
        const client = await pool!.connect();
        try {
          await client.query('BEGIN');
          await client.query(`INSERT INTO ${orders} (item) VALUES ($1)`, [`item-${n}`]);
          await client.query('COMMIT');
        } finally {
          client.release();
        }
      };
  process.on('message', async (message: { cmd: string }) => {
    if (message.cmd === 'run') {
      let committed = 0;
      const deadline = now() + config.seconds * 1000;
      await Promise.all(
        Array.from({ length: config.writers }, async () => {
          while (now() < deadline) {
            await tx(seq++);
            committed++;
          }
        }),
      );
      process.send!({
        cmd: 'done',
        committed,
        notifications: app?.get(OutboxWakeup).stats.notifications ?? 0,
      });
    }
    if (message.cmd === 'exit') {
      await app?.close();
      await pool?.end();
      process.exit(0);
    }
  });
  process.send!({ cmd: 'ready' });
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
