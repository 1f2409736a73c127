import { EventSource } from 'eventsource';

export interface ReceivedEvent {
  type: string;
  data: string;
  lastEventId: string;
}

/** A spec-following client (the `eventsource` package) that records what it receives. */
export class RecordingEventSource {
  readonly source: EventSource;
  readonly events: ReceivedEvent[] = [];
  readonly log: string[] = [];
  private waiters = new Set<() => void>();

  constructor(url: string, types: string[] = [], headers: Record<string, string> = {}) {
    this.source = new EventSource(url, {
      fetch: (input, init) =>
        fetch(input, { ...init, headers: { ...(init?.headers ?? {}), ...headers } }),
    });
    const record = (event: MessageEvent) => {
      this.events.push({ type: event.type, data: event.data, lastEventId: event.lastEventId });
      this.log.push(`event:${event.type}`);
      this.notify();
    };
    this.source.onmessage = record;
    for (const type of types) this.source.addEventListener(type, record);
    this.source.onopen = () => {
      this.log.push('open');
      this.notify();
    };
    this.source.onerror = () => {
      this.log.push('error');
      this.notify();
    };
  }

  private notify() {
    for (const waiter of this.waiters) waiter();
  }

  /** Resolves when `predicate` holds; rejects if the source closes for good first. */
  until(predicate: () => boolean, what = 'condition'): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (predicate()) {
          this.waiters.delete(check);
          resolve();
        } else if (this.source.readyState === EventSource.CLOSED) {
          this.waiters.delete(check);
          reject(new Error(`EventSource closed before ${what}; log: ${this.log.join(', ')}`));
        }
      };
      this.waiters.add(check);
      check();
    });
  }

  opened(): Promise<void> {
    return this.until(() => this.log.includes('open'), 'open');
  }

  received(count: number): Promise<void> {
    return this.until(() => this.events.length >= count, `${count} events`);
  }

  close(): void {
    this.source.close();
  }
}
