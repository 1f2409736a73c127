import * as http from 'node:http';

/** One event as a browser's `EventSource` would dispatch it. */
export interface SseTestEvent {
  /** `event:` (default `message`). */
  type: string;
  /** `data:` lines joined by `\n`. */
  data: string;
  /** The last event id after this event (what a reconnect would send as `Last-Event-ID`). */
  lastEventId: string;
}

export interface SseTestClientOptions {
  headers?: Record<string, string>;
  /** Sent as `Last-Event-ID`: resume after this event. */
  lastEventId?: string;
  /** Bound of every wait (connecting, `take`, `next`). Default 5000 ms. */
  timeoutMs?: number;
}

/**
 * A small event-stream client for tests of apps that use the module: connects with `GET`, parses
 * the stream as the WHATWG spec says (`data:` lines joined, comments and heartbeats skipped, ids
 * kept), and waits for events with a bound, never forever.
 *
 * ```ts
 * const client = await SseTestClient.connect(`${url}/orders/stream`);
 * // … publish …
 * const [event] = await client.take(1);
 * client.close();
 * ```
 */
export class SseTestClient {
  /** Every event received so far, in order. */
  readonly events: SseTestEvent[] = [];
  /** `retry:` as last received (ms), if any. */
  retryMs?: number;
  /** Resolves when the server ends the stream or the connection closes. */
  readonly ended: Promise<void>;
  private taken = 0;
  private waiters = new Set<() => void>();
  private closed = false;
  private lastEventId: string;

  private constructor(
    private readonly request: http.ClientRequest,
    readonly response: http.IncomingMessage,
    private readonly timeoutMs: number,
    lastEventId: string,
  ) {
    this.lastEventId = lastEventId;
    let buffer = '';
    let data: string[] = [];
    let type = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => {
      buffer += chunk;
      const lines = buffer.split(/\r\n|\r|\n/);
      // The last piece may be an incomplete line (or a lone \r before its \n): keep it.
      buffer = lines.pop()!;
      for (const line of lines) {
        if (line === '') {
          if (data.length > 0) {
            this.events.push({
              type: type || 'message',
              data: data.join('\n'),
              lastEventId: this.lastEventId,
            });
          }
          data = [];
          type = '';
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'data') data.push(value);
        else if (field === 'event') type = value;
        else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
        else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
      }
      this.notify();
    });
    this.ended = new Promise((resolve) => {
      const done = () => {
        this.closed = true;
        this.notify();
        resolve();
      };
      response.once('end', done);
      response.once('close', done);
    });
  }

  /**
   * Opens the stream; resolves once the response headers arrived with status 200 and
   * `text/event-stream`, rejects with the status and body otherwise.
   */
  static connect(url: string, options: SseTestClientOptions = {}): Promise<SseTestClient> {
    const timeoutMs = options.timeoutMs ?? 5_000;
    return new Promise((resolve, reject) => {
      const request = http.get(url, {
        headers: {
          accept: 'text/event-stream',
          ...(options.lastEventId !== undefined ? { 'last-event-id': options.lastEventId } : {}),
          ...options.headers,
        },
        agent: false,
      });
      const timer = setTimeout(() => {
        request.destroy();
        reject(new Error(`SseTestClient: no response from ${url} within ${timeoutMs} ms`));
      }, timeoutMs);
      request.once('error', (error) => {
        clearTimeout(timer);
        reject(error);
      });
      request.once('response', (response) => {
        clearTimeout(timer);
        const type = String(response.headers['content-type'] ?? '');
        if (response.statusCode === 200 && type.startsWith('text/event-stream')) {
          resolve(new SseTestClient(request, response, timeoutMs, options.lastEventId ?? ''));
          return;
        }
        let body = '';
        response.setEncoding('utf8');
        response.on('data', (chunk: string) => (body += chunk));
        response.once('end', () =>
          reject(
            Object.assign(
              new Error(`SseTestClient: ${url} answered ${response.statusCode}: ${body}`),
              {
                status: response.statusCode,
                body,
              },
            ),
          ),
        );
      });
    });
  }

  /** The next `count` events not taken yet; rejects after the timeout or when the stream ends first. */
  async take(count: number, timeoutMs = this.timeoutMs): Promise<SseTestEvent[]> {
    const wanted = this.taken + count;
    await this.until(() => this.events.length >= wanted, `${count} more event(s)`, timeoutMs);
    const events = this.events.slice(this.taken, wanted);
    this.taken = wanted;
    return events;
  }

  /** The next event not taken yet. */
  async next(timeoutMs = this.timeoutMs): Promise<SseTestEvent> {
    return (await this.take(1, timeoutMs))[0];
  }

  /** Resolves once `predicate` holds (checked on each chunk received); bounded. */
  until(
    predicate: () => boolean,
    what = 'the condition',
    timeoutMs = this.timeoutMs,
  ): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate()) finish();
        else if (this.closed)
          finish(
            new Error(
              `SseTestClient: the stream ended before ${what} (got ${this.events.length} event(s))`,
            ),
          );
      };
      const finish = (error?: Error) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        if (error) reject(error);
        else resolve();
      };
      const timer = setTimeout(
        () =>
          finish(
            new Error(
              `SseTestClient: ${what} not within ${timeoutMs} ms (got ${this.events.length} event(s))`,
            ),
          ),
        timeoutMs,
      );
      this.waiters.add(check);
      check();
    });
  }

  /** Closes the connection (what a browser does when the page goes away). */
  close(): void {
    this.request.destroy();
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}
