import type { IncomingMessage, Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import { SseHub } from '../../src';
import { SseTestClient } from '../../src/testing';
import { AuthExampleController } from '../../examples/auth/auth.controller';
import { STREAM_TICKET_SECRET, StreamTickets } from '../../examples/auth/stream-tickets';
import { PLATFORMS, startApp, TestApp } from '../support/http';
import { eventually } from '../support/outbox';

/** docs/authentication.md's stream tickets, on both platforms. */
describe.each(PLATFORMS)('stream tickets for EventSource on %s', (platform) => {
  let t: TestApp;
  /** Every URL the server saw, as an access log reads it when the response ends. */
  const accessLog: string[] = [];

  beforeAll(async () => {
    t = await startApp(
      [AuthExampleController],
      { sse: { heartbeatMs: 60_000 } },
      {
        platform,
        providers: [StreamTickets, { provide: STREAM_TICKET_SECRET, useValue: randomBytes(32) }],
        beforeListen: (app) =>
          (app.getHttpServer() as Server).on('request', (request: IncomingMessage, response) =>
            response.once('close', () =>
              accessLog.push((request as { originalUrl?: string }).originalUrl ?? request.url!),
            ),
          ),
      },
    );
  });
  afterAll(() => t?.close());

  const ticketFor = async (user: string) => {
    const response = await fetch(`${t.url}/stream-tickets`, {
      method: 'POST',
      headers: { authorization: `Bearer ${user}` },
    });
    expect(response.status).toBe(201);
    return ((await response.json()) as { url: string }).url;
  };
  const status = (path: string) =>
    SseTestClient.connect(`${t.url}${path}`).then(
      (client) => (client.close(), 200),
      (error: { status?: number }) => error.status,
    );

  it('opens the stream of the user the ticket names, and the ticket never reaches the log', async () => {
    const url = await ticketFor('alice');
    expect(url).toMatch(/^\/users\/alice\/stream\?ticket=[\w-]+\.[\w-]+$/);
    const client = await SseTestClient.connect(`${t.url}${url}`);
    try {
      t.app.get(SseHub).publish('user:alice', { data: 'for alice' });
      t.app.get(SseHub).publish('user:bob', { data: 'for bob' });
      expect((await client.next()).data).toBe('for alice');
    } finally {
      client.close();
    }
    await client.ended;
    const ticket = url.split('ticket=')[1];
    expect(await status(`/users/alice/stream?ticket=${ticket}x`)).toBe(401);
    // The access log writes on 'close', which the server sees after the client's end.
    await eventually(
      () => accessLog.filter((u) => u.startsWith('/users/alice/stream')).length === 2,
      'both stream requests logged',
      5_000,
    );
    expect(accessLog.filter((u) => u.startsWith('/users/alice/stream'))).toEqual([
      '/users/alice/stream',
      '/users/alice/stream',
    ]);
    expect(accessLog.join('\n')).not.toContain(ticket.slice(0, 20));
  });

  it('refuses no ticket, a forged, an expired, or another path’s ticket with 401', async () => {
    const tickets = t.app.get(StreamTickets);
    const alice = (await ticketFor('alice')).split('ticket=')[1];
    const [body, signature] = alice.split('.');
    const forged = Buffer.from(
      JSON.stringify({
        ...JSON.parse(Buffer.from(body, 'base64url').toString()),
        sub: 'bob',
        path: '/users/bob/stream',
      }),
    ).toString('base64url');
    expect(await status('/users/alice/stream')).toBe(401);
    expect(await status(`/users/bob/stream?ticket=${alice}`)).toBe(401);
    expect(await status(`/users/bob/stream?ticket=${forged}.${signature}`)).toBe(401);
    expect(
      await status(
        `/users/alice/stream?ticket=${tickets.issue('alice', '/users/alice/stream', -1)}`,
      ),
    ).toBe(401);
    expect(await status('/users/alice/stream?ticket=not.a.ticket')).toBe(401);
    expect((await fetch(`${t.url}/stream-tickets`, { method: 'POST' })).status).toBe(403);
  });
});
