/** One event as a client parses it off the wire. */
export interface WireEvent {
  id?: string;
  event: string;
  data: string;
}

/**
 * An event stream read with `fetch` (any method, a body): what clients of POST-started streams
 * use. Parses events as they arrive; `received(n)` waits for the n-th; `ended` resolves when the
 * server ends the response; `cut()` drops the connection like a lost network.
 */
export class FetchedStream {
  readonly events: WireEvent[] = [];
  /** Comment lines received (heartbeats, notes), in order. */
  readonly comments: string[] = [];
  status = 0;
  headers = new Headers();
  private readonly controller = new AbortController();
  private waiters: Array<() => void> = [];
  private buffer = '';
  private finished = false;
  readonly ended: Promise<void>;
  private answered!: () => void;
  /** Resolves when the response has started (status and headers known), or the request failed. */
  readonly opened = new Promise<void>((resolve) => (this.answered = resolve));

  constructor(url: string, init: RequestInit = {}) {
    this.ended = this.run(url, init).finally(() => {
      this.finished = true;
      this.answered();
      this.waiters.splice(0).forEach((wake) => wake());
    });
    this.ended.catch(() => undefined);
  }

  private async run(url: string, init: RequestInit): Promise<void> {
    const response = await fetch(url, { ...init, signal: this.controller.signal });
    this.status = response.status;
    this.headers = response.headers;
    this.answered();
    if (!response.body) return;
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) return;
        this.parse(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      if (!this.controller.signal.aborted) throw error;
    }
  }

  private parse(text: string): void {
    this.buffer += text;
    let end: number;
    while ((end = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, end);
      this.buffer = this.buffer.slice(end + 2);
      const event: WireEvent = { event: 'message', data: '' };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) this.comments.push(line);
        if (line.startsWith(':') || line === '') continue;
        const at = line.indexOf(':');
        const field = at < 0 ? line : line.slice(0, at);
        const value = at < 0 ? '' : line.slice(at + 1).replace(/^ /, '');
        if (field === 'id') event.id = value;
        if (field === 'event') event.event = value;
        if (field === 'data') data.push(value);
      }
      if (data.length === 0) continue; // retry: and comments
      event.data = data.join('\n');
      this.events.push(event);
    }
    this.waiters.splice(0).forEach((wake) => wake());
  }

  /** Resolves once `n` events have arrived; rejects if the stream ends first. */
  async received(n: number, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.events.length < n) {
      if (this.finished) throw new Error(`stream ended after ${this.events.length} of ${n} events`);
      if (Date.now() > deadline) throw new Error(`only ${this.events.length} of ${n} events`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, 200);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  cut(): void {
    this.controller.abort();
  }
}
