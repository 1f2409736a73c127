import type { SseLogger } from '../../observability/sse-logger';
import { EventEmitter } from 'node:events';
import type { Client } from 'pg';
import { raceTimeout } from '../../common/timeout';
import { destroySocket } from '../../connections/postgres-connection';

export interface OutboxListenerOptions {
  channel: string;
  listenSql: string;
  listeningSql: string;
  /** Liveness check period (ms); a check that fails or takes longer than this reconnects. */
  checkMs: number;
  createClient: () => Client;
  /** A notification arrived. */
  onNotify: () => void;
  /** Notifications with this payload are ignored: this instance's own, its relay already woken. */
  ownPayload?: string;
  /** (Re)connected and listening: notifications may have been missed, so read now. */
  onListening: () => void;
  logger: SseLogger;
}

/** State of what wakes a relay (also reported, by analogy, for the Redis Stream it follows). */
export interface OutboxListenerStats {
  connected: boolean;
  /** Successful (re)connections. */
  connects: number;
  failures: number;
  /** Notifications (stream entries) received. */
  notifications: number;
  lastCheckAt: number;
}

const BACKOFF_MIN_MS = 100;
const BACKOFF_MAX_MS = 10_000;

/**
 * The relay's dedicated LISTEN connection, outside the pool. Dead connections are often silent
 * (no error until TCP keepalive gives up, hours later), so it is checked every `checkMs` with
 * `pg_listening_channels()` under a timeout, and replaced with capped, jittered exponential
 * backoff when the check fails or the connection errors. Polling covers the gaps.
 */
export class OutboxListener extends EventEmitter<{ listening: []; lost: [Error] }> {
  private client?: Client;
  private stopped = true;
  private attempt = 0;
  private reconnectTimer?: NodeJS.Timeout;
  private checkTimer?: NodeJS.Timeout;
  private generation = 0;
  readonly stats: OutboxListenerStats = {
    connected: false,
    connects: 0,
    failures: 0,
    notifications: 0,
    lastCheckAt: 0,
  };

  constructor(private readonly options: OutboxListenerOptions) {
    super();
  }

  start(): void {
    this.stopped = false;
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.reconnectTimer);
    clearInterval(this.checkTimer);
    const client = this.client;
    this.client = undefined;
    this.stats.connected = false;
    if (client) await endWithin(client, 1_000);
  }

  private async connect(): Promise<void> {
    const generation = ++this.generation;
    const client = this.options.createClient();
    this.client = client;
    const fail = (error: Error) => this.failed(generation, client, error);
    client.on('error', fail);
    client.on('end', () => fail(new Error('connection ended')));
    client.on('notification', (message) => {
      if (message.channel !== this.options.channel) return;
      this.stats.notifications++;
      if (this.options.ownPayload !== undefined && message.payload === this.options.ownPayload)
        return;
      this.options.onNotify();
    });
    try {
      await client.connect();
      await client.query(this.options.listenSql);
    } catch (error) {
      return fail(error as Error);
    }
    if (generation !== this.generation || this.stopped) return;
    this.attempt = 0;
    this.stats.connected = true;
    this.stats.connects++;
    this.checkTimer = setInterval(() => void this.check(generation, client), this.options.checkMs);
    this.checkTimer.unref();
    this.options.onListening();
    this.emit('listening');
  }

  private async check(generation: number, client: Client): Promise<void> {
    const { checkMs } = this.options;
    try {
      const result = await raceTimeout(
        client.query(this.options.listeningSql, [this.options.channel]),
        checkMs,
        () => {
          throw new Error(`liveness check timed out after ${checkMs} ms`);
        },
      );
      if (result.rows.length === 0)
        throw new Error(`no longer listening on ${this.options.channel}`);
      this.stats.lastCheckAt = Date.now();
    } catch (error) {
      this.failed(generation, client, error as Error);
    }
  }

  private failed(generation: number, client: Client, error: Error): void {
    if (generation !== this.generation || this.stopped) return;
    this.generation++; // later events of this client are stale
    this.stats.connected = false;
    this.stats.failures++;
    clearInterval(this.checkTimer);
    // end() may wait on a dead socket; the connection is abandoned either way.
    void client.end().catch(() => undefined);
    destroySocket(client);
    const delay = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt++);
    const jittered = Math.round(delay / 2 + Math.random() * (delay / 2));
    this.options.logger.report(
      'outbox.listen-lost',
      `LISTEN connection lost (${error.message}); reconnecting in ${jittered} ms`,
    );
    this.emit('lost', error);
    this.reconnectTimer = setTimeout(() => void this.connect(), jittered);
    this.reconnectTimer.unref();
  }
}

/** Ends a client politely, or destroys its socket if that takes longer than `ms` (dead peers). */
async function endWithin(client: Client, ms: number): Promise<void> {
  await raceTimeout(
    client.end().catch(() => undefined),
    ms,
    () => destroySocket(client),
  );
}
