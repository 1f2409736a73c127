/**
 * The ORM kits of the outbox suites (test/outbox/orm-*.spec.ts): one library's way each of placing
 * an order and publishing its event in one transaction, and the app they run in.
 */
import { Body, Controller, Injectable, Module, Param, Post } from '@nestjs/common';
import { ClsModule } from 'nestjs-cls';
import { ClsPluginTransactional, Transactional, TransactionHost } from '@nestjs-cls/transactional';
import { TransactionalAdapterTypeOrm } from '@nestjs-cls/transactional-adapter-typeorm';
import { drizzle } from 'drizzle-orm/node-postgres';
import { pgSchema, serial, text } from 'drizzle-orm/pg-core';
import knexFactory, { Knex } from 'knex';
import { Pool } from 'pg';
import { DataSource } from 'typeorm';
import { Idempotent, OutboxService, Sse } from '../../../src';
import { startApp, TestApp } from '../../support/http';
import { dropOutbox, outboxOptions, schemaKeyPrefix } from '../../support/outbox';
import { databaseUrl, uniqueSchema, withClient } from '../../support/postgres';
import { deletePrefix, redisUrl } from '../../support/redis';
import { Holds } from '../../support/holds';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const importEsm: (specifier: string) => Promise<any> = require('../../support/import-esm');

export const schema = uniqueSchema('orm');
const ORDERS = `"${schema}".orders`;

interface Placed {
  id: number;
  eventId: string;
}

/**
 * One library's way of placing an order: the order row with the library's own API, its event
 * with `outbox.publish()` on the same transaction, inside `outbox.transaction(source, fn)`.
 * `item: 'fail'` throws after both are written.
 */
export interface Kit {
  /** The object handed to outbox.transaction(): 'starter' begins a transaction, 'open' is one. */
  kind: 'starter' | 'open';
  start(): Promise<void>;
  stop(): Promise<void>;
  place(outbox: OutboxService, item: string): Promise<Placed>;
  /** A starter: publish() on it must be refused (the event would commit on its own). */
  starter?: () => object;
}

export function event(id: number, item: string) {
  return { topic: 'orders', type: 'order.placed', data: { id, item } };
}

/** Items that fail once, after both writes, and then succeed (a transient failure). */
export const failOnce = new Set<string>();
/** Items whose executions wait after both writes (before the record and COMMIT) until released. */
export const holdItems = new Set<string>();
export const held = new Holds();

async function announce(outbox: OutboxService, tx: object, id: number, item: string) {
  const [eventId] = await outbox.publish(tx, event(id, item));
  if (holdItems.has(item)) await held.arrive();
  if (item === 'fail' || failOnce.delete(item))
    throw new Error('business rule failed after the writes');
  return { id, eventId };
}

let typeorm: DataSource;
let pool: Pool;
let knex: Knex;

export const KITS: Record<string, Kit> = {
  'typeorm-datasource': {
    kind: 'starter',
    start: async () => undefined,
    stop: async () => undefined,
    starter: () => typeorm,
    place: (outbox, item) =>
      outbox.transaction(typeorm, async (manager) => {
        const [row] = await manager.query(`INSERT INTO ${ORDERS} (item) VALUES ($1) RETURNING id`, [
          item,
        ]);
        return announce(outbox, manager, row.id, item);
      }),
  },
  'typeorm-queryrunner': {
    kind: 'open',
    start: async () => undefined,
    stop: async () => undefined,
    place: async (outbox, item) => {
      const runner = typeorm.createQueryRunner();
      await runner.startTransaction();
      try {
        const placed = await outbox.transaction(runner, async (qr) => {
          const [row] = await qr.query(`INSERT INTO ${ORDERS} (item) VALUES ($1) RETURNING id`, [
            item,
          ]);
          return announce(outbox, qr, row.id, item);
        });
        await runner.commitTransaction();
        return placed;
      } catch (error) {
        // The owner of the transaction decides: here it commits what else it did anyway.
        await runner.commitTransaction();
        throw error;
      } finally {
        await runner.release();
      }
    },
  },
  kysely: (() => {
    let db: any;
    return {
      kind: 'starter',
      start: async () => {
        const { Kysely, PostgresDialect, CamelCasePlugin } = await importEsm('kysely');
        // CamelCasePlugin: the outbox's own statements must not be renamed by it.
        db = new Kysely({
          dialect: new PostgresDialect({ pool: new Pool({ connectionString: databaseUrl() }) }),
          plugins: [new CamelCasePlugin()],
        });
      },
      stop: () => db.destroy(),
      starter: () => db,
      place: (outbox, item) =>
        outbox.transaction(db, async (trx: any) => {
          const row = await trx
            .withSchema(schema)
            .insertInto('orders')
            .values({ item })
            .returning('id')
            .executeTakeFirstOrThrow();
          return announce(outbox, trx, row.id, item);
        }),
    } satisfies Kit;
  })(),
  knex: {
    kind: 'starter',
    start: async () => {
      knex = knexFactory({ client: 'pg', connection: databaseUrl(), pool: { min: 0, max: 4 } });
    },
    stop: () => knex.destroy(),
    starter: () => knex,
    place: (outbox, item) =>
      outbox.transaction(knex, async (trx) => {
        const [row] = await trx.withSchema(schema).insert({ item }).into('orders').returning('id');
        return announce(outbox, trx, row.id, item);
      }),
  },
  'knex-trx': {
    kind: 'open',
    start: async () => undefined,
    stop: async () => undefined,
    place: (outbox, item) =>
      knex.transaction(async (trx) => {
        const placed = outbox.transaction(trx, async (tx) => {
          const [row] = await tx.withSchema(schema).insert({ item }).into('orders').returning('id');
          return announce(outbox, tx, row.id, item);
        });
        // The owner commits its other work even when this part failed.
        return placed.catch(async (error) => {
          await trx.raw('SELECT 1');
          throw error;
        });
      }),
  },
  drizzle: (() => {
    let db: ReturnType<typeof drizzle>;
    const orders = pgSchema(schema).table('orders', {
      id: serial('id').primaryKey(),
      item: text('item').notNull(),
    });
    return {
      kind: 'starter',
      start: async () => {
        db = drizzle(new Pool({ connectionString: databaseUrl() }));
      },
      stop: () => (db.$client as Pool).end(),
      starter: () => db,
      place: (outbox, item) =>
        outbox.transaction(db, async (tx) => {
          const [row] = await tx.insert(orders).values({ item }).returning({ id: orders.id });
          return announce(outbox, tx, row.id, item);
        }),
    } satisfies Kit;
  })(),
  mikroorm: (() => {
    let orm: any;
    return {
      kind: 'starter',
      start: async () => {
        const { MikroORM } = await importEsm('@mikro-orm/postgresql');
        orm = await MikroORM.init({
          clientUrl: databaseUrl(),
          entities: [],
          discovery: { warnWhenNoEntities: false },
        });
      },
      stop: () => orm.close(),
      starter: () => orm.em.fork(),
      place: (outbox, item) =>
        outbox.transaction(orm.em.fork(), async (em: any) => {
          const [row] = await em.execute(`INSERT INTO ${ORDERS} (item) VALUES (?) RETURNING id`, [
            item,
          ]);
          return announce(outbox, em, row.id, item);
        }),
    } satisfies Kit;
  })(),
  'pg-pool': {
    kind: 'starter',
    start: async () => undefined,
    stop: async () => undefined,
    place: (outbox, item) =>
      outbox.transaction(pool, async (client) => {
        const { rows } = await client.query(
          `INSERT INTO ${ORDERS} (item) VALUES ($1) RETURNING id`,
          [item],
        );
        return announce(outbox, client, rows[0].id, item);
      }),
  },
  'pg-client': {
    kind: 'open',
    start: async () => undefined,
    stop: async () => undefined,
    place: async (outbox, item) => {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const placed = await outbox
          .transaction(client, async (tx) => {
            const { rows } = await tx.query(
              `INSERT INTO ${ORDERS} (item) VALUES ($1) RETURNING id`,
              [item],
            );
            return announce(outbox, tx, rows[0].id, item);
          })
          .catch(async (error) => {
            await client.query('COMMIT');
            throw error;
          });
        await client.query('COMMIT');
        return placed;
      } finally {
        client.release();
      }
    },
  },
  'nestjs-cls-active': {
    // Already inside a @Transactional() method: the outbox joins it with a savepoint.
    kind: 'open',
    start: async () => undefined,
    stop: async () => undefined,
    place: (outbox, item) => clsOrders.placeInside(item),
  },
  'nestjs-cls': {
    kind: 'starter',
    start: async () => undefined,
    stop: async () => undefined,
    starter: () => clsTxHost,
    place: (outbox, item) => clsOrders.place(item),
  },
};

/** @nestjs-cls/transactional: the order service never sees the transaction object. */
@Injectable()
class ClsOrders {
  constructor(
    private readonly txHost: TransactionHost<TransactionalAdapterTypeOrm>,
    private readonly outbox: OutboxService,
  ) {}

  place(item: string): Promise<Placed> {
    return this.outbox.transaction(this.txHost, () => this.insert(item));
  }

  /** Inside a @Transactional() method of the caller's, which commits even when the order failed. */
  async placeInside(item: string): Promise<Placed> {
    const outcome = await this.inside(item);
    if ('error' in outcome) throw outcome.error;
    return outcome.placed;
  }

  @Transactional()
  private async inside(item: string): Promise<{ placed: Placed } | { error: unknown }> {
    await this.txHost.tx.query('SELECT 1'); // the caller's own work in its transaction
    try {
      return { placed: await this.outbox.transaction(this.txHost, () => this.insert(item)) };
    } catch (error) {
      return { error };
    }
  }

  @Transactional()
  private async insert(item: string): Promise<Placed> {
    const [row] = await this.txHost.tx.query(
      `INSERT INTO ${ORDERS} (item) VALUES ($1) RETURNING id`,
      [item],
    );
    return this.announce(row.id, item);
  }

  private async announce(id: number, item: string): Promise<Placed> {
    return announce(this.outbox, this.txHost, id, item);
  }
}
let clsOrders: ClsOrders;
let clsTxHost: TransactionHost;

@Controller()
class OrdersController {
  constructor(private readonly outbox: OutboxService) {}

  @Post('orders/:kit')
  @Idempotent()
  async place(@Param('kit') kit: string, @Body() body: { item: string }) {
    return { ...(await KITS[kit].place(this.outbox, body.item)), item: body.item };
  }

  @Sse('orders', { topic: 'orders' })
  orders() {}
}

@Module({
  providers: [{ provide: DataSource, useFactory: () => typeorm }],
  exports: [DataSource],
})
class TypeOrmHolder {}

/** The app, the kits and what the tests ask of them. */
export interface OrmApp {
  readonly t: TestApp;
  readonly outbox: OutboxService;
  readonly pool: Pool;
  readonly typeorm: DataSource;
  /** Orders and events committed in the suite's schema. */
  counts(): Promise<{ orders: number; events: number }>;
  /** POSTs an order through `kit`, with an Idempotency-Key. */
  post(kit: string, item: string, key: string): Promise<Response>;
  /** Deletes the idempotency records from Redis, as a restart without persistence would. */
  redisForgets(): Promise<void>;
}

/**
 * Every kit started, and the app (outbox on the suite's schema, Redis for idempotency) around
 * them, for the enclosing describe; tables are emptied before each test.
 */
export function useOrmApp(): OrmApp {
  const env = {} as { -readonly [K in keyof OrmApp]: OrmApp[K] };
  env.counts = () =>
    withClient(databaseUrl(), async (client) => {
      const orders = await client.query(`SELECT count(*)::int AS n FROM ${ORDERS}`);
      const events = await client.query(`SELECT count(*)::int AS n FROM "${schema}".sse_outbox`);
      return { orders: orders.rows[0].n, events: events.rows[0].n };
    });
  env.post = (kit: string, item: string, key: string) =>
    fetch(`${env.t.url}/orders/${kit}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': key },
      body: JSON.stringify({ item }),
    });
  env.redisForgets = () => deletePrefix(redisUrl(), schemaKeyPrefix(schema));

  beforeAll(async () => {
    await withClient(databaseUrl(), async (client) => {
      await client.query(`CREATE SCHEMA IF NOT EXISTS "${schema}"`);
      await client.query(`CREATE TABLE ${ORDERS} (id serial PRIMARY KEY, item text NOT NULL)`);
    });
    typeorm = await new DataSource({ type: 'postgres', url: databaseUrl() }).initialize();
    pool = new Pool({ connectionString: databaseUrl(), max: 4 });
    for (const kit of Object.values(KITS)) await kit.start();
    const t = await startApp(
      [OrdersController],
      // Redis for the idempotency records, under the suite's prefix.
      {
        ...outboxOptions(schema),
        redis: { url: redisUrl(), keyPrefix: schemaKeyPrefix(schema) },
      },
      {
        imports: [
          ClsModule.forRoot({
            global: true,
            plugins: [
              new ClsPluginTransactional({
                imports: [TypeOrmHolder],
                adapter: new TransactionalAdapterTypeOrm({ dataSourceToken: DataSource }),
              }),
            ],
          }),
        ],
        providers: [ClsOrders],
      },
    );
    env.t = t;
    env.outbox = t.app.get(OutboxService);
    env.pool = pool;
    env.typeorm = typeorm;
    clsOrders = t.app.get(ClsOrders);
    clsTxHost = t.app.get(TransactionHost);
  });
  afterAll(async () => {
    await env.t?.close();
    for (const kit of Object.values(KITS)) await kit.stop();
    await pool?.end();
    await typeorm?.destroy();
    await dropOutbox(schema);
  });
  beforeEach(() =>
    withClient(databaseUrl(), (client) =>
      client.query(`TRUNCATE ${ORDERS}, "${schema}".sse_outbox, "${schema}".sse_outbox_effects`),
    ),
  );

  return env;
}
