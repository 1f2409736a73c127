import { Inject, Injectable } from '@nestjs/common';
import { HealthIndicatorResult, HealthIndicatorService } from '@nestjs/terminus';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { RedisConnection } from '../connections/redis-connection';
import { OutboxRelay } from '../outbox/read/outbox-relay';
import { PostgresConnection } from '../connections/postgres-connection';
import { SseConnectionRegistry } from '../sse/sse-connection-registry';
import { raceTimeout } from '../common/timeout';

/**
 * Terminus indicators for this module's dependencies, for `/health` and for apps that build
 * their own health controller. Each dependency check is bounded by `health.timeoutMs`.
 */
@Injectable()
export class SseHealthIndicators {
  constructor(
    private readonly indicators: HealthIndicatorService,
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    private readonly redis: RedisConnection,
    private readonly relay: OutboxRelay,
    private readonly registry: SseConnectionRegistry,
  ) {}

  /** The indicators that apply to this configuration, for `HealthCheckService.check()`. */
  readiness(): Array<() => Promise<HealthIndicatorResult>> {
    const checks: Array<() => Promise<HealthIndicatorResult>> = [() => this.sse()];
    if (this.postgres.enabled) {
      checks.push(
        () => this.postgresCheck(),
        () => this.outboxListener(),
        () => this.outboxLag(),
      );
    }
    if (this.redis.client) checks.push(() => this.redisCheck());
    return checks;
  }

  /** `SELECT 1` on the module's pool. */
  async postgresCheck(key = 'postgres'): Promise<HealthIndicatorResult> {
    const check = this.indicators.check(key);
    try {
      await this.bounded(this.postgres.query('SELECT 1'));
      return check.up();
    } catch (error) {
      return check.down({ message: (error as Error).message });
    }
  }

  /** `PING` on the module's Redis client. */
  async redisCheck(key = 'redis'): Promise<HealthIndicatorResult> {
    const check = this.indicators.check(key);
    try {
      await this.bounded(this.redis.ping());
      return check.up();
    } catch (error) {
      return check.down({ message: (error as Error).message });
    }
  }

  /**
   * The LISTEN connection is up, and the relay read the outbox recently. With `fanout: 'redis'`:
   * the Redis Stream is followed (or, while it is unavailable, the table through LISTEN), and
   * read recently; the data says which, and whether this instance leads.
   */
  async outboxListener(key = 'outbox_listener'): Promise<HealthIndicatorResult> {
    const check = this.indicators.check(key);
    const listener = this.relay.listenerStats;
    const maxReadAgeMs =
      this.options.health.maxReadAgeMs ?? Math.max(5_000, 3 * this.options.outbox.pollIntervalMs);
    const readAgeMs = this.relay.stats.lastReadAt
      ? Date.now() - this.relay.stats.lastReadAt
      : undefined;
    const stream = this.relay.stream;
    const data = {
      connected: listener?.connected ?? false,
      readAgeMs,
      maxReadAgeMs,
      ...(stream && {
        following: stream.fallingBack ? 'table' : 'stream',
        leading: this.relay.leader?.leading ?? false,
      }),
    };
    if (!listener?.connected) {
      const message = stream
        ? 'neither the Redis Stream nor the LISTEN connection that replaces it is followed'
        : 'LISTEN connection is down';
      return check.down({ ...data, message });
    }
    if (readAgeMs === undefined || readAgeMs > maxReadAgeMs) {
      return check.down({ ...data, message: 'the relay has not read the outbox recently' });
    }
    return check.up(data);
  }

  /**
   * Events committed but not yet relayed (down past `health.maxOutboxLagEvents`), events held
   * back by a transaction open elsewhere (reported, never down: the cause is outside this
   * instance), and the server's NOTIFY queue usage.
   */
  async outboxLag(key = 'outbox_lag'): Promise<HealthIndicatorResult> {
    const check = this.indicators.check(key);
    const max = this.options.health.maxOutboxLagEvents;
    try {
      const lag = await this.bounded(this.relay.lag(max + 1));
      const data = {
        behind: lag.behind,
        max,
        pendingEvents: lag.pendingEvents,
        oldestPendingMs: lag.oldestPendingMs,
        ...(lag.pendingEvents > 0 && this.relay.heldBackBy
          ? { heldBackBy: this.relay.heldBackBy }
          : {}),
        notificationQueueUsage: lag.notificationQueueUsage,
      };
      return lag.behind > max
        ? check.down({ ...data, message: 'the relay is behind' })
        : check.up(data);
    } catch (error) {
      return check.down({ message: (error as Error).message });
    }
  }

  /** Draining or shutting down: readiness is 503 whatever the dependencies say. */
  get stopping(): boolean {
    return this.registry.isDraining || this.registry.isShuttingDown;
  }

  /** Room for more streams, and not draining or shutting down. */
  async sse(key = 'sse'): Promise<HealthIndicatorResult> {
    const check = this.indicators.check(key);
    const { open, max } = this.registry.stats;
    const { isDraining: draining, isShuttingDown: shuttingDown } = this.registry;
    const data = { open, max, draining, shuttingDown };
    if (shuttingDown) return check.down({ ...data, message: 'shutting down' });
    if (draining) return check.down({ ...data, message: 'draining before shutdown' });
    if (open >= max) return check.down({ ...data, message: 'no room for more streams' });
    return check.up(data);
  }

  private bounded<T>(work: Promise<T>): Promise<T> {
    const ms = this.options.health.timeoutMs;
    return raceTimeout(work, ms, () => {
      throw new Error(`no answer within ${ms} ms`);
    });
  }
}
