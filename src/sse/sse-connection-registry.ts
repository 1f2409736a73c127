import { SseLogger } from '../observability/sse-logger';
import { Inject, Injectable, OnApplicationShutdown, Optional } from '@nestjs/common';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SseCloseReason, SseConnection } from './sse-connection';
import { SSE_HEARTBEAT } from './sse-encoder';
import { ClientLimits } from '../common/client-limits';
import { SSE_DIAGNOSTICS } from '../observability/diagnostics';
import { startStream } from '../observability/tracing';

export type SseAdmission =
  | { admitted: true; slot: SseSlot }
  | {
      admitted: false;
      status: 503 | 429;
      reason: 'instance-full' | 'client-limit' | 'shutting-down' | 'resume-rate';
      /** When to come back, when the refusal knows better than `sse.rejectRetryMs`. */
      retryAfterMs?: number;
    };

/** A reserved place under the connection limits; released exactly once. */
export interface SseSlot {
  release(): void;
}

/**
 * Every open stream of this instance: connection limits, heartbeats and shutdown.
 *
 * Heartbeats use one shared timer for all streams instead of one per stream: it ticks every
 * heartbeatMs/2 and writes a comment to streams that stayed silent for two ticks, so no stream
 * is ever silent for longer than heartbeatMs. The timer only exists while streams are open.
 */
@Injectable()
export class SseConnectionRegistry implements OnApplicationShutdown {
  private readonly connections = new Set<SseConnection>();
  private readonly limits: ClientLimits;
  private ticker: NodeJS.Timeout | undefined;
  private shuttingDown = false;
  private draining = false;
  private readonly counters = { opened: 0, slowConsumers: 0 };
  private emptyWaiters: Array<() => void> = [];

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    @Optional() private readonly logger: SseLogger = new SseLogger(),
  ) {
    this.limits = new ClientLimits(
      options.sse.maxConnections,
      options.sse.maxConnectionsPerClient,
      () => this.emptyWaiters.splice(0).forEach((resolve) => resolve()),
    );
  }

  /** Streams open or being opened right now. */
  get size(): number {
    return this.limits.size;
  }

  /** New streams are refused and open ones ended (after the drain window, if any). */
  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Readiness reports 503 so load balancers stop sending; streams are still served. */
  get isDraining(): boolean {
    return this.draining && !this.shuttingDown;
  }

  /** Starts the drain window of a shutdown (see SseShutdown). */
  beginDrain(): void {
    this.draining = true;
  }

  get stats(): {
    open: number;
    max: number;
    clients: number;
    opened: number;
    slowConsumers: number;
    heartbeatTimer: boolean;
  } {
    return {
      open: this.limits.size,
      max: this.options.sse.maxConnections,
      clients: this.limits.clients,
      ...this.counters,
      heartbeatTimer: this.ticker !== undefined,
    };
  }

  /** Resolves once no stream is open or being opened. */
  whenEmpty(): Promise<void> {
    if (this.limits.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptyWaiters.push(resolve));
  }

  /** Reserves a place for a stream before its handler runs, so concurrent opens cannot overshoot. */
  admit(clientKey: string): SseAdmission {
    if (this.shuttingDown) return { admitted: false, status: 503, reason: 'shutting-down' };
    const slot = this.limits.take(clientKey);
    if (slot === 'full') return { admitted: false, status: 503, reason: 'instance-full' };
    if (slot === 'client-limit') return { admitted: false, status: 429, reason: 'client-limit' };
    return { admitted: true, slot };
  }

  /** Opens a tracked stream on a response whose headers were just written. */
  open(response: SseConnection['response'], clientKey: string, slot: SseSlot): SseConnection {
    const connection = new SseConnection(
      response,
      clientKey,
      this.options.sse.maxBufferedBytes,
      (c, reason) => this.closed(c, reason),
      this.options.sse.slowConsumerMs,
    );
    connection.onTeardown(() => slot.release());
    connection.trace = startStream();
    this.connections.add(connection);
    this.counters.opened++;
    // Inline rather than diagnose(): every stream opens and closes once (1,000s at a time).
    if (SSE_DIAGNOSTICS.streamOpen.hasSubscribers)
      SSE_DIAGNOSTICS.streamOpen.publish({ clientKey });
    if (!this.ticker) this.startTicker();
    return connection;
  }

  private closed(connection: SseConnection, reason: SseCloseReason): void {
    this.connections.delete(connection);
    connection.trace?.end(reason);
    if (SSE_DIAGNOSTICS.streamClose.hasSubscribers)
      SSE_DIAGNOSTICS.streamClose.publish({ clientKey: connection.clientKey, reason });
    if (reason === 'slow-consumer') {
      this.counters.slowConsumers++;
      this.logger.report(
        'sse.slow-consumer',
        `Disconnected a slow SSE client (${connection.clientKey}): over sse.maxBufferedBytes for sse.slowConsumerMs`,
      );
    }
    if (this.connections.size === 0) this.stopTicker();
  }

  private startTicker(): void {
    const period = Math.max(5, Math.floor(this.options.sse.heartbeatMs / 2));
    this.ticker = setInterval(() => {
      for (const connection of this.connections) {
        if (++connection.idleTicks >= 2) connection.write(SSE_HEARTBEAT);
      }
    }, period);
    // Heartbeats alone must never keep a process alive.
    this.ticker.unref();
  }

  private stopTicker(): void {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = undefined;
  }

  /** Ends every open stream; clients reconnect (to another instance) and resume by id. */
  closeAll(): void {
    for (const connection of [...this.connections]) connection.close('shutdown');
    this.stopTicker();
  }

  /**
   * Refuses new streams and ends every open one. Open streams keep the HTTP server's close()
   * waiting forever, so SseShutdown calls this before Nest closes the server.
   */
  shutdown(): void {
    this.draining = true;
    this.shuttingDown = true;
    this.closeAll();
  }

  onApplicationShutdown(): void {
    this.closeAll();
  }
}
