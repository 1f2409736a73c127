// A Vitest test in an ESM NestJS 12 app, as `nest new` makes them: the docs/testing.md worked
// test, with nestjs-durable-sse/testing. Run by test/compat/run-compat.js (`npm run check`).
// Vitest's transform keeps decorators but emits no design metadata, so injection names its
// token (@Inject(SseHub)).
import 'reflect-metadata';
import { Body, Controller, Inject, INestApplication, Post } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Idempotent, Sse, SseHub } from 'nestjs-durable-sse';
import { SseTestClient, SseTestingModule } from 'nestjs-durable-sse/testing';

let created = 0;

@Controller('orders')
class OrdersController {
  constructor(@Inject(SseHub) private readonly hub: SseHub) {}

  @Sse('stream', { topic: 'orders' })
  stream() {}

  @Post()
  @Idempotent()
  create(@Body() order: { item: string }) {
    const result = { id: `o-${++created}`, ...order };
    this.hub.publish('orders', { type: 'order.created', data: result });
    return result;
  }
}

describe('OrdersController (Vitest, ESM, NestJS 12)', () => {
  let app: INestApplication;
  let url: string;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [SseTestingModule.forRoot()],
      controllers: [OrdersController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterAll(() => app?.close());

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
      await expect(client.take(1, 200)).rejects.toThrow(/not within 200 ms/);
      expect(created).toBe(1);
    } finally {
      client.close();
    }
  });
});
