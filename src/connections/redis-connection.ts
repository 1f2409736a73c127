import { SseLogger } from '../observability/sse-logger';
import { Inject, Injectable, OnApplicationShutdown, OnModuleInit, Optional } from '@nestjs/common';
import Redis, { Cluster } from 'ioredis';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { raceTimeout } from '../common/timeout';
import { redactUrl } from '../config/validate-options';

/**
 * The module's Redis client: created from `redis.url` (one connection, offline queue off so calls
 * fail fast while disconnected, quit on shutdown), or the user's `existingClient`, used as is and
 * never quit.
 */
@Injectable()
export class RedisConnection implements OnModuleInit, OnApplicationShutdown {
  private readonly owned?: Redis;
  readonly client?: Redis | Cluster;
  /** The last connection error, for what health says while the client is not connected. */
  private lastError?: string;
  /** The server refused the database the URL names (ioredis would carry on with db 0). */
  private selectError?: string;

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    @Optional() private readonly logger: SseLogger = new SseLogger(),
  ) {
    const redis = options.redis;
    if (!redis) return;
    if (redis.existingClient) {
      this.client = redis.existingClient;
      return;
    }
    this.owned = this.client = new Redis(redis.url!, {
      connectTimeout: redis.connectTimeoutMs,
      maxRetriesPerRequest: redis.maxRetriesPerRequest,
      enableOfflineQueue: false,
      keyPrefix: redis.keyPrefix,
      connectionName: 'nestjs-durable-sse',
      enableAutoPipelining: true,
      // A connection on a silently dead path (no FIN, no RST) answers nothing, and every command
      // would time out on it until TCP gives up, hours later. Past this bound the socket is
      // destroyed and the client reconnects: calls fail (bounded by commandTimeoutMs) for a
      // moment instead of for good.
      socketTimeout: 2 * redis.commandTimeoutMs,
      // Reconnect forever with a capped backoff; requests meanwhile follow idempotency.failMode.
      retryStrategy: (attempt) => Math.min(2_000, 50 * 2 ** Math.min(attempt, 6)),
    });
    this.owned.on('error', (error) => {
      this.lastError = error.message;
      if (/DB index is out of range/i.test(error.message)) this.selectError = error.message;
      this.logger.report('redis.error', `Redis connection error: ${error.message}`);
    });
    this.owned.on('ready', () => (this.lastError = undefined));
  }

  /**
   * Waits (up to `connectTimeoutMs`) for the first connection, so the first requests do not fail
   * for want of it. An unreachable Redis does not fail bootstrap: idempotent requests then follow
   * `idempotency.failMode` while the client keeps reconnecting.
   */
  async onModuleInit(): Promise<void> {
    const client = this.owned;
    if (!client || client.status === 'ready') return;
    const ready = await raceTimeout(
      new Promise<boolean>((resolve) => client.once('ready', () => resolve(true))),
      this.options.redis!.connectTimeoutMs,
      () => false,
    );
    if (this.selectError) {
      // Running on database 0 instead would share another app's keys, with health "up".
      throw new Error(
        `SseModule: redis.url (${redactUrl(this.options.redis!.url!)}) names database ` +
          `${client.options.db}, which this Redis server does not have (${this.selectError}); ` +
          'use one below its `databases` setting (16 by default)',
      );
    }
    if (!ready)
      this.logger.report(
        'redis.unreachable',
        `Redis is not reachable yet (redis.url ${redactUrl(this.options.redis!.url!)}` +
          `${this.lastError ? `: ${this.lastError}` : ''}); idempotent requests follow ` +
          'idempotency.failMode until it is',
      );
  }

  /** Round trip to Redis (for health checks). */
  async ping(): Promise<void> {
    if (!this.client) throw new Error('redis is not configured');
    // Not ioredis' "Stream isn't writeable and enableOfflineQueue options is false".
    if (this.owned && this.owned.status !== 'ready') {
      throw new Error(`unreachable: ${this.lastError ?? this.owned.status}`);
    }
    await this.client.ping();
  }

  async onApplicationShutdown(): Promise<void> {
    if (!this.owned || this.owned.status === 'end') return;
    await raceTimeout(
      this.owned.quit().catch(() => undefined),
      1_000,
      () => undefined,
    );
    this.owned.disconnect();
  }
}
