import { INestApplication } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { AddressInfo } from 'node:net';
import { DemoModule } from '../../examples/hello/demo.module';
import { RecordingEventSource } from '../support/event-source';
import { createNestApp, PLATFORMS } from '../support/http';

describe.each(PLATFORMS)('the hello demo on %s', (platform) => {
  let app: INestApplication;
  let url: string;
  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({ imports: [DemoModule] }).compile();
    app = createNestApp(moduleRef, platform, { logger: ['error'] });
    await app.listen(0, '127.0.0.1');
    url = `http://127.0.0.1:${(app.getHttpServer().address() as AddressInfo).port}`;
  });
  afterAll(() => app.close());

  it('serves the page, streams clock ticks and delivers posted messages', async () => {
    const page = await fetch(url);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(await page.text()).toContain("new EventSource('/stream')");

    const client = new RecordingEventSource(`${url}/stream`, ['tick', 'message']);
    try {
      await client.opened();
      await client.until(() => client.events.some((e) => e.type === 'tick'), 'a clock tick');
      const posted = await fetch(`${url}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ text: 'hello\nworld' }),
      });
      expect(posted.status).toBe(201);
      expect(await posted.json()).toEqual({ id: 'msg-1', reached: 1 });
      await client.until(() => client.events.some((e) => e.type === 'message'), 'the message');
      expect(client.events.find((e) => e.type === 'message')).toEqual({
        type: 'message',
        data: '{"text":"hello\\nworld"}',
        lastEventId: 'msg-1',
      });

      const rejected = await fetch(`${url}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(rejected.status).toBe(400);
    } finally {
      client.close();
    }
  });
});
