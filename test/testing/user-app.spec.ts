import { Body, Controller, INestApplication, Post } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Idempotent, OutboxRelay, OutboxService, Sse, SseHub } from '../../src';
import { SseTestClient, SseTestingModule } from '../../src/testing';
import { databaseUrl, dropSchema, uniqueSchema } from '../support/postgres';
import { OutboxWakeup } from '../../src/outbox/write/outbox-wakeup';
import { eventually } from '../support/outbox';

// The worked example of docs/testing.md, as a user would write it (imports aside: there they
// are 'nestjs-durable-sse' and 'nestjs-durable-sse/testing').

@Controller('orders')
class OrdersController {
  constructor(private readonly hub: SseHub) {}

  @Sse('stream', { topic: 'orders' })
  stream() {}

  @Post()
  @Idempotent()
  create(@Body() order: { item: string }) {
    const created = { id: `o-${Math.random().toString(36).slice(2, 8)}`, ...order };
    this.hub.publish('orders', { type: 'order.created', data: created });
    return created;
  }
}

describe('testing an app that uses the module (docs/testing.md)', () => {
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [SseTestingModule.forRoot()],
      controllers: [OrdersController],
    }).compile();
    app = moduleRef.createNestApplication();
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  it('streams the created order once, and a retried POST replays its response', async () => {
    const client = await SseTestClient.connect(`${url}/orders/stream`);
    try {
      const post = () =>
        fetch(`${url}/orders`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'idempotency-key': 'order-1' },
          body: JSON.stringify({ item: 'book' }),
        });
      const first = await (await post()).json();
      const retried = await post();
      expect(retried.headers.get('idempotent-replayed')).toBe('true');
      expect(await retried.json()).toEqual(first);

      const [event] = await client.take(1);
      expect(event.type).toBe('order.created');
      expect(JSON.parse(event.data)).toEqual(first);
      // Nothing more: the retry did not run the handler again.
      await expect(client.take(1, 200)).rejects.toThrow(/not within 200 ms/);
    } finally {
      client.close();
    }
  });
});

@Controller()
class FeedController {
  constructor(private readonly outbox: OutboxService) {}

  @Sse('feed', { topic: 'feed' })
  feed() {}

  @Post('feed')
  async publish(@Body() body: { text: string }) {
    const [id] = await this.outbox.transaction((tx) =>
      this.outbox.publish(tx, { topic: 'feed', data: body.text }),
    );
    return { id };
  }
}

describe('relay.runOnce(): outbox delivery on demand (real PostgreSQL)', () => {
  const schema = uniqueSchema('runonce');
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [
        SseTestingModule.forRoot({
          postgres: { connectionString: databaseUrl(), schema },
          // A channel of its own: other suites' NOTIFYs on the shared server would wake it.
          outbox: { pollIntervalMs: 3_600_000, channel: `runonce_${process.pid}` },
        }),
      ],
      controllers: [FeedController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
    // No wake-up after commits and an hour between polls: only runOnce() can deliver here.
    jest.spyOn(app.get(OutboxWakeup), 'committed').mockImplementation(() => undefined);
  });
  afterAll(async () => {
    await app?.close();
    await dropSchema(schema);
  });

  it('hands every committed event to the streams before it resolves', async () => {
    const client = await SseTestClient.connect(`${url}/feed`);
    try {
      const ids: string[] = [];
      for (const text of ['a', 'b', 'c']) {
        const response = await fetch(`${url}/feed`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ text }),
        });
        ids.push(((await response.json()) as { id: string }).id);
      }
      expect(client.events).toEqual([]);
      // runOnce() hands over what is deliverable: wait out a transaction another suite may hold
      // open on the shared server (lag() reads, it delivers nothing).
      await eventually(
        async () => (await app.get(OutboxRelay).lag()).pendingEvents === 0,
        'the three events to be deliverable',
      );
      expect(client.events).toEqual([]);
      expect(await app.get(OutboxRelay).runOnce()).toBe(3);
      const events = await client.take(3);
      expect(events.map((e) => [e.lastEventId, e.data])).toEqual([
        [ids[0], 'a'],
        [ids[1], 'b'],
        [ids[2], 'c'],
      ]);
      expect(await app.get(OutboxRelay).runOnce()).toBe(0);
    } finally {
      client.close();
    }
  });
});

describe('SseTestClient', () => {
  let server: http.Server;
  let url: string;
  let respond: (response: http.ServerResponse) => void;

  beforeAll(async () => {
    server = http.createServer((request, response) => respond(response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('parses as EventSource does: joined data lines, types, ids that persist, comments and retry, any line ending', async () => {
    respond = (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write(': heartbeat\n\nretry: 1500\nid: 7\nevent: a\ndata: one\ndata: two\n\n');
      // Split inside a line and a \r\n across chunks, then \r alone as line ends.
      response.write('data: thr');
      response.end('ee\r\n\r\nid\rdata:four\r\r');
    };
    const client = await SseTestClient.connect(url);
    await client.ended;
    expect(client.retryMs).toBe(1500);
    expect(client.events).toEqual([
      { type: 'a', data: 'one\ntwo', lastEventId: '7' },
      { type: 'message', data: 'three', lastEventId: '7' },
      { type: 'message', data: 'four', lastEventId: '' },
    ]);
  });

  it('rejects a response that is not an event stream with its status and body, and bounds its waits', async () => {
    respond = (response) => {
      response.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
      response.end('{"title":"too many streams"}');
    };
    await expect(SseTestClient.connect(url)).rejects.toMatchObject({
      status: 429,
      body: '{"title":"too many streams"}',
    });

    respond = (response) => {
      response.writeHead(200, { 'content-type': 'text/event-stream' });
      response.write('data: only one\n\n');
    };
    const client = await SseTestClient.connect(url, { timeoutMs: 300 });
    expect((await client.next()).data).toBe('only one');
    await expect(client.next()).rejects.toThrow(
      /1 more event\(s\) not within 300 ms \(got 1 event\(s\)\)/,
    );
    client.close();
    await client.ended;
    await expect(client.next()).rejects.toThrow(/the stream ended before/);
  });
});
