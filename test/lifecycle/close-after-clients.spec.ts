import { Controller } from '@nestjs/common';
import { once } from 'node:events';
import * as net from 'node:net';
import { Sse, SSE_LOGGER } from '../../src';
import { PLATFORMS, startApp } from '../support/http';
import { RecordingEventSource } from '../support/event-source';

@Controller()
class FeedController {
  @Sse('feed', { topic: 'feed' })
  feed() {}
}

/**
 * `app.close()` after clients left waits for none of them (issue 28, defect 8). Node's fetch
 * (undici), and so the `eventsource` package, keeps a spare socket beside a stream and closes it
 * seconds after the stream ends; `server.close()` waits for sockets that never sent a request.
 * The grace here is a minute, past the test's own timeout: a close that waited for them fails.
 */
describe.each(PLATFORMS)('on %s: closing after clients left', (platform) => {
  it('closes without waiting for a stream client that left, nor for a connection that never sent a request', async () => {
    const logged: string[] = [];
    const log = (message: string) => void logged.push(message);
    const t = await startApp(
      [FeedController],
      {
        shutdown: { graceMs: 60_000 },
        providers: [{ provide: SSE_LOGGER, useValue: { log, warn: log, error: log } }],
      },
      { platform },
    );
    const spare = net.connect(Number(new URL(t.url).port), '127.0.0.1');
    await once(spare, 'connect');
    const spareClosed = once(spare, 'close');
    const client = new RecordingEventSource(`${t.url}/feed`);
    await client.opened();
    client.close();
    await t.close();
    await spareClosed;
    expect(logged.filter((line) => line.includes('shutdown.grace-exceeded'))).toEqual([]);
  });
});
