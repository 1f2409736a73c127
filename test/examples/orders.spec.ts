import { randomUUID } from 'node:crypto';
import { AddressInfo, createServer } from 'node:net';
import { createOrdersApp, OrdersApp } from '../../examples/orders/app';
import { Backends, resolveBackends } from '../../examples/orders/backends';
import { RecordingEventSource } from '../support/event-source';
import { databaseUrl, dropSchema, uniqueSchema } from '../support/postgres';
import { deletePrefix, redisUrl } from '../support/redis';

/** A loopback port with nothing listening on it. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('orders example: choosing its backends', () => {
  it('uses the servers when they answer at the default addresses', async () => {
    const backends = await resolveBackends({
      env: {},
      defaultPostgresUrl: databaseUrl(),
      defaultRedisUrl: redisUrl(),
    });
    expect(backends.postgres).toEqual({ kind: 'server', url: databaseUrl() });
    expect(backends.redis).toEqual({ kind: 'server', url: redisUrl() });
    expect(backends.summary).toMatch(/found running/);
  });

  it('falls back to embedded PostgreSQL and the memory store when nothing answers, and says so in one line', async () => {
    const port = await closedPort();
    const backends = await resolveBackends({
      env: {},
      defaultPostgresUrl: `postgres://postgres@127.0.0.1:${port}/postgres`,
      defaultRedisUrl: `redis://127.0.0.1:${port}`,
      embeddedDataDir: '/tmp/somewhere',
    });
    expect(backends.postgres).toEqual({ kind: 'embedded', dataDir: '/tmp/somewhere' });
    expect(backends.redis).toEqual({ kind: 'memory' });
    expect(backends.summary).toMatch(
      /^Using embedded PostgreSQL \(PGlite, data in \/tmp\/somewhere\): .*; the in-memory idempotency store: .*\.$/,
    );
    expect(backends.summary).not.toContain('\n');
  });

  it('takes DATABASE_URL and REDIS_URL as given (no probing), and keeps passwords out of the log line', async () => {
    const backends = await resolveBackends({
      env: {
        DATABASE_URL: 'postgres://app:secret@db:5432/app',
        REDIS_URL: 'redis://:pw@cache:6379',
      },
    });
    expect(backends.postgres).toEqual({ kind: 'server', url: 'postgres://app:secret@db:5432/app' });
    expect(backends.redis).toEqual({ kind: 'server', url: 'redis://:pw@cache:6379' });
    expect(backends.summary).not.toMatch(/secret|pw@/);
  });
});

const embedded: Backends = {
  postgres: { kind: 'embedded' },
  redis: { kind: 'memory' },
  summary: 'embedded',
};
const servers = (): Backends => ({
  postgres: { kind: 'server', url: databaseUrl() },
  redis: { kind: 'server', url: redisUrl() },
  summary: 'servers',
});

describe.each([
  ['embedded PostgreSQL (PGlite) and the memory store', () => embedded, 'express'],
  ['real PostgreSQL and Redis', servers, 'express'],
  ['embedded PostgreSQL (PGlite) and the memory store', () => embedded, 'fastify'],
  ['real PostgreSQL and Redis', servers, 'fastify'],
] as const)('orders example on %s, on %s', (_name, backends, platform) => {
  const schema = uniqueSchema('orders_example');
  let orders: OrdersApp;
  let url: string;
  const clients: RecordingEventSource[] = [];
  const track = (client: RecordingEventSource) => (clients.push(client), client);
  const post = (path: string, body: unknown, key: string | undefined = randomUUID()) =>
    fetch(`${url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { 'idempotency-key': key } : {}) },
      body: JSON.stringify(body),
    });

  beforeAll(async () => {
    orders = await createOrdersApp(backends(), {
      logger: ['error'],
      schema,
      redisKeyPrefix: `${schema}:`,
      platform,
    });
    await orders.app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(orders.app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterEach(() => clients.splice(0).forEach((c) => c.close()));
  afterAll(async () => {
    await orders?.close();
    if (backends().postgres.kind === 'server') await dropSchema(schema);
    if (backends().redis.kind === 'server') await deletePrefix(redisUrl(), `${schema}:`);
  });

  it('serves the page that subscribes with EventSource', async () => {
    const page = await fetch(url);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain("'/orders/stream'");
  });

  it('places an order once per Idempotency-Key and streams its event', async () => {
    const stream = track(new RecordingEventSource(`${url}/orders/stream`, ['order.placed']));
    await stream.opened();
    const key = randomUUID();
    const first = await post('/orders', { item: 'Tea', quantity: 2 }, key);
    expect(first.status).toBe(201);
    const placed = (await first.json()) as { order: { id: string }; eventId: string };
    expect(placed.order).toMatchObject({ item: 'Tea', quantity: 2, status: 'placed' });

    const retry = await post('/orders', { item: 'Tea', quantity: 2 }, key);
    expect(retry.status).toBe(201);
    expect(retry.headers.get('idempotent-replayed')).toBe('true');
    expect(await retry.json()).toEqual(placed);
    const mismatch = await post('/orders', { item: 'Tea', quantity: 3 }, key);
    expect(mismatch.status).toBe(422);

    await stream.received(1);
    expect(stream.events[0]).toMatchObject({ type: 'order.placed', lastEventId: placed.eventId });
    expect(JSON.parse(stream.events[0].data)).toEqual(placed.order);
    const listed = (await (await fetch(`${url}/orders`)).json()) as { id: string }[];
    expect(listed.filter((o) => o.id === placed.order.id)).toHaveLength(1);
  });

  it('lists orders with the position they were read at; a stream from it has exactly the later ones', async () => {
    await post('/orders', { item: 'Listed', quantity: 1 });
    const listing = await fetch(`${url}/orders`);
    const position = listing.headers.get('last-event-id');
    expect(position).toMatch(/^\d+:\d+:[\d,]*$/);
    const listed = (await listing.json()) as { item: string }[];
    expect(listed.some((o) => o.item === 'Listed')).toBe(true);
    const later = (await (await post('/orders', { item: 'Later', quantity: 1 })).json()) as {
      order: { id: string };
    };
    const stream = track(
      new RecordingEventSource(
        `${url}/orders/stream?lastEventId=${encodeURIComponent(position!)}`,
        ['order.placed', 'reset'],
      ),
    );
    await stream.received(1);
    expect(stream.events.map((e) => [e.type, JSON.parse(e.data).id])).toEqual([
      ['order.placed', later.order.id],
    ]);
  });

  it('streams one order on its own topic and answers 404 for an unknown order', async () => {
    const { order } = (await (await post('/orders', { item: 'Beans', quantity: 1 })).json()) as {
      order: { id: string };
    };
    const one = track(
      new RecordingEventSource(`${url}/orders/${order.id}/stream`, ['order.paid', 'order.shipped']),
    );
    await one.opened();
    expect((await post(`/orders/${order.id}/status`, { status: 'paid' })).status).toBe(200);
    expect((await post(`/orders/${order.id}/status`, { status: 'shipped' })).status).toBe(200);
    await one.received(2);
    expect(one.events.map((e) => e.type)).toEqual(['order.paid', 'order.shipped']);

    expect((await fetch(`${url}/orders/999999/stream`)).status).toBe(404);
    expect((await fetch(`${url}/orders/abc/stream`)).status).toBe(400);
    expect((await post('/orders/999999/status', { status: 'paid' })).status).toBe(404);
  });

  it('rejects invalid orders with 400 and stores nothing for them', async () => {
    const key = randomUUID();
    const bad = await post('/orders', { item: '', quantity: 0, extra: true }, key);
    expect(bad.status).toBe(400);
    // Validation rejected it before the handler: the key is free for a corrected request.
    expect((await post('/orders', { item: 'Fixed', quantity: 1 }, key)).status).toBe(201);
  });

  it('reports ready on /health', async () => {
    const response = await fetch(`${url}/health`);
    expect(response.status).toBe(200);
    const body = (await response.json()) as { info: Record<string, unknown> };
    expect(Object.keys(body.info)).toEqual(
      expect.arrayContaining(
        backends().redis.kind === 'server'
          ? ['sse', 'postgres', 'outbox_listener', 'outbox_lag', 'redis']
          : ['sse', 'postgres', 'outbox_listener', 'outbox_lag'],
      ),
    );
  });
});
