import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import { OutboxQueryable, OutboxService, PostgresConnection } from '../../src';

export const ORDERS_SCHEMA = 'orders_demo';
export const ORDER_STATUSES = ['placed', 'paid', 'shipped', 'delivered', 'cancelled'] as const;
export type OrderStatus = (typeof ORDER_STATUSES)[number];

export interface Order {
  id: string;
  item: string;
  quantity: number;
  status: OrderStatus;
  createdAt: string;
}

/** The example's SQL in `schema`; its table is created on start like a tiny migration would. */
export function ordersSql(schema: string) {
  const table = `"${schema}".orders`;
  const columns = `id::text AS id, item, quantity, status, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS "createdAt"`;
  return {
    migrate: [
      `CREATE SCHEMA IF NOT EXISTS "${schema}"`,
      `CREATE TABLE IF NOT EXISTS ${table} (
         id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
         item text NOT NULL,
         quantity int NOT NULL CHECK (quantity > 0),
         status text NOT NULL DEFAULT 'placed',
         created_at timestamptz NOT NULL DEFAULT now()
       )`,
    ],
    insert: `INSERT INTO ${table} (item, quantity) VALUES ($1, $2) RETURNING ${columns}`,
    setStatus: `UPDATE ${table} SET status = $2 WHERE id = $1 RETURNING ${columns}`,
    find: `SELECT ${columns} FROM ${table} WHERE id = $1`,
    recent: `SELECT ${columns} FROM ${table} ORDER BY id DESC LIMIT $1`,
  };
}

/** Injection token of the schema holding the orders and the outbox. */
export const ORDERS_SCHEMA_NAME = 'ORDERS_SCHEMA_NAME';

/**
 * Orders and their events, written in one transaction: the event exists exactly when the order
 * change committed. Each change goes to the `orders` topic and to the order's own topic.
 */
@Injectable()
export class OrdersRepository implements OnModuleInit {
  private readonly sql: ReturnType<typeof ordersSql>;

  constructor(
    private readonly outbox: OutboxService,
    private readonly postgres: PostgresConnection,
    @Inject(ORDERS_SCHEMA_NAME) schema: string,
  ) {
    this.sql = ordersSql(schema);
  }

  async onModuleInit(): Promise<void> {
    await this.postgres.withClient(async (client) => {
      for (const statement of this.sql.migrate) await client.query(statement);
    });
  }

  place(item: string, quantity: number): Promise<{ order: Order; eventId: string }> {
    return this.outbox.transaction(async (tx) => {
      const order = (await tx.query(this.sql.insert, [item, quantity])).rows[0] as Order;
      const eventId = await this.publish(tx, 'order.placed', order);
      return { order, eventId };
    });
  }

  setStatus(
    id: string,
    status: OrderStatus,
  ): Promise<{ order: Order; eventId: string } | undefined> {
    return this.outbox.transaction(async (tx) => {
      const order = (await tx.query(this.sql.setStatus, [id, status])).rows[0] as Order | undefined;
      if (!order) return undefined;
      return { order, eventId: await this.publish(tx, `order.${status}`, order) };
    });
  }

  async find(id: string): Promise<Order | undefined> {
    return (await this.postgres.requirePool().query(this.sql.find, [id])).rows[0];
  }

  async recent(limit = 20): Promise<Order[]> {
    return (await this.postgres.requirePool().query(this.sql.recent, [limit])).rows;
  }

  /** {@link recent}, with the position of the snapshot it was read in (OutboxService.snapshot). */
  async recentWithPosition(limit = 20): Promise<{ orders: Order[]; lastEventId: string }> {
    const { result, lastEventId } = await this.outbox.snapshot(
      async (client) => (await client.query<Order>(this.sql.recent, [limit])).rows,
    );
    return { orders: result, lastEventId };
  }

  private async publish(tx: OutboxQueryable, type: string, order: Order): Promise<string> {
    const [eventId] = await this.outbox.publish(tx, [
      { topic: 'orders', type, data: order },
      { topic: orderTopic(order.id), type, data: order },
    ]);
    return eventId;
  }
}

export const orderTopic = (id: string) => `order-${id}`;
