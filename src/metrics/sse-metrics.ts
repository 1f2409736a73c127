import { SseLogger } from '../observability/sse-logger';
import { Inject, Injectable, OnModuleInit } from '@nestjs/common';
import type * as PromClient from 'prom-client';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { IdempotencyService } from '../idempotency/idempotency.service';
import { OutboxLag, OutboxRelay } from '../outbox/read/outbox-relay';
import { raceTimeout } from '../common/timeout';
import { SseConnectionRegistry } from '../sse/sse-connection-registry';
import { SseHub } from '../sse/sse-hub';

function loadPromClient(): typeof PromClient | undefined {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('prom-client');
  } catch {
    return undefined;
  }
}

/** What {@link SseMetrics.registry} offers: a prom-client `Registry`. */
export interface SseMetricsRegistry {
  /** The Prometheus text exposition of every metric. */
  metrics(): Promise<string>;
  /** The `Content-Type` of {@link metrics}. */
  readonly contentType: string;
  getMetricsAsJSON(): Promise<unknown[]>;
  resetMetrics(): void;
}

/**
 * Prometheus metrics of this module instance, in a registry of its own (merge it into yours
 * with `Registry.merge`, or serve it at `metrics.path`). Values are read from the module's
 * counters when scraped, so the hot paths pay nothing for them. Without `prom-client`
 * installed, `registry` is undefined and nothing is collected.
 */
@Injectable()
export class SseMetrics implements OnModuleInit {
  /**
   * prom-client's `Registry`, typed by what it offers here so that these declarations compile in
   * apps without the optional `prom-client` (cast it to merge: `Registry.merge([register,
   * sseMetrics.registry as Registry])`).
   */
  registry?: SseMetricsRegistry;

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly connections: SseConnectionRegistry,
    private readonly hub: SseHub,
    private readonly relay: OutboxRelay,
    private readonly idempotency: IdempotencyService,
    private readonly logger: SseLogger,
  ) {}

  onModuleInit(): void {
    const prom = loadPromClient();
    const { path } = this.options.metrics;
    if (!prom) {
      if (path !== false) {
        throw new Error(
          'nestjs-durable-sse: metrics.path needs the optional peer dependency prom-client',
        );
      }
      return;
    }
    // Served at metrics.path by the module's routes controller (sse-routes.controller.ts).
    this.registry = this.createRegistry(prom);
  }

  private createRegistry(prom: typeof PromClient): PromClient.Registry {
    const registry = new prom.Registry();
    const registers = [registry];
    const name = (suffix: string) => `${this.options.metrics.prefix}${suffix}`;
    const { connections, hub, relay, idempotency } = this;
    // Counters mirror monotonic counts kept by the module: reset + inc at scrape time.
    const mirror = (suffix: string, help: string, read: () => number) =>
      new prom.Counter({
        name: name(suffix),
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });

    new prom.Gauge({
      name: name('open_connections'),
      help: 'Event streams open (or opening) on this instance',
      registers,
      collect() {
        this.set(connections.stats.open);
      },
    });
    new prom.Gauge({
      name: name('max_connections'),
      help: 'sse.maxConnections',
      registers,
      collect() {
        this.set(connections.stats.max);
      },
    });
    mirror(
      'events_delivered_total',
      'Event deliveries to streams (one event to three streams counts three)',
      () => hub.delivered,
    );
    mirror(
      'slow_consumer_disconnects_total',
      'Streams cut for passing sse.maxBufferedBytes',
      () => connections.stats.slowConsumers,
    );
    mirror(
      'replayed_events_total',
      'Events replayed from the outbox to resuming streams',
      () => relay.stats.replayed,
    );
    mirror('resets_total', 'event: reset sent to resuming streams', () => relay.stats.resets);
    if (this.options.outbox.fanout === 'redis') {
      new prom.Gauge({
        name: name('outbox_stream_leader'),
        help: "1 while this instance appends the outbox to the Redis Stream (fanout: 'redis')",
        registers,
        collect() {
          this.set(relay.leader?.leading ? 1 : 0);
        },
      });
      new prom.Gauge({
        name: name('outbox_stream_fallback'),
        help: '1 while this instance follows the outbox table because the Redis Stream is unavailable',
        registers,
        collect() {
          this.set(relay.stream?.fallingBack ? 1 : 0);
        },
      });
      mirror(
        'outbox_stream_gap_events_total',
        'Events read from the table because the Redis Stream did not hold them (trim, flush, new leader)',
        () => relay.stream?.stats.gapEvents ?? 0,
      );
    }
    new prom.Counter({
      name: name('idempotency_requests_total'),
      help: 'Idempotent requests by outcome',
      labelNames: ['outcome'],
      registers,
      collect() {
        this.reset();
        for (const [outcome, count] of Object.entries(idempotency.stats))
          this.inc({ outcome }, count);
      },
    });
    const batches = new prom.Histogram({
      name: name('relay_batch_duration_seconds'),
      help: 'Duration of one outbox read by the relay',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
      registers,
    });
    relay.onRead = (ms) => batches.observe(ms / 1000);
    const logger = this.logger;
    const maxLag = this.options.health.maxOutboxLagEvents;
    const timeoutMs = this.options.health.timeoutMs;
    // One bounded measurement per scrape, shared by the gauges below (prom-client collects them
    // concurrently, and the relay coalesces concurrent calls). A scrape never waits on a dead
    // database longer than health.timeoutMs: what could not be read is reported as such.
    let measuredOk = false;
    const measure = async (): Promise<OutboxLag | undefined> => {
      if (!relay.enabled) return undefined;
      try {
        const lag = await raceTimeout(relay.lag(maxLag + 1), timeoutMs, () => {
          throw new Error(`no answer within ${timeoutMs} ms (health.timeoutMs)`);
        });
        measuredOk = true;
        return lag;
      } catch (error) {
        measuredOk = false;
        logger.report(
          'metrics.lag-unmeasured',
          `Could not measure the outbox lag: ${(error as Error).message}`,
        );
        return undefined;
      }
    };
    let scrape: Promise<OutboxLag | undefined> | undefined;
    const current = () => {
      if (!scrape) {
        scrape = measure();
        // Cleared once every gauge of this scrape has read it.
        void scrape.finally(() => setImmediate(() => (scrape = undefined)));
      }
      return scrape;
    };
    const lagGauge = (suffix: string, help: string, read: (lag: OutboxLag) => number) =>
      new prom.Gauge({
        name: name(suffix),
        help,
        registers,
        async collect() {
          const lag = await current();
          if (lag) this.set(read(lag));
        },
      });
    lagGauge(
      'outbox_lag_events',
      `Events committed and deliverable but not yet relayed by this instance (counted up to ${maxLag + 1})`,
      (lag) => lag.behind,
    );
    lagGauge(
      'outbox_pending_events',
      `Committed events held back by a transaction still open elsewhere (counted up to ${maxLag + 1})`,
      (lag) => lag.pendingEvents,
    );
    lagGauge(
      'outbox_oldest_pending_seconds',
      'Age of the oldest committed event held back by an open transaction (0 when none)',
      (lag) => lag.oldestPendingMs / 1000,
    );
    new prom.Gauge({
      name: name('outbox_lag_measured'),
      help: '1 if this scrape measured the outbox gauges, 0 if PostgreSQL did not answer within health.timeoutMs (they then hold their last values)',
      registers,
      async collect() {
        if (!relay.enabled) return;
        await current();
        this.set(measuredOk ? 1 : 0);
      },
    });
    return registry;
  }
}
