import { Inject, Injectable, Logger, LoggerService, Optional } from '@nestjs/common';
import { SSE_LOG_MESSAGES, SseLogMessageId } from './log-messages';

/**
 * Where the module's log lines go: a Nest `LoggerService`. Default: Nest's `Logger` (so
 * `app.useLogger()` applies). Replace it as any part of the module, in `forRoot`'s extras:
 * `{ providers: [{ provide: SSE_LOGGER, useExisting: PinoLogger }] }`.
 */
export const SSE_LOGGER = Symbol('SSE_LOGGER');

/** Within this window a message id is written once; the repeats are counted, then reported. */
export const SSE_LOG_THROTTLE_MS = 5_000;

/** The Nest logging context of each id's prefix (`outbox.read-failed` → `SseOutbox`). */
const CONTEXTS: Record<string, string> = {
  outbox: 'SseOutbox',
  postgres: 'SsePostgres',
  fanout: 'SseFanout',
  sse: 'Sse',
  job: 'SseJobs',
  redis: 'SseRedis',
  idempotency: 'SseIdempotency',
  metrics: 'SseMetrics',
  shutdown: 'SseShutdown',
};

/**
 * Every line the module logs goes through here, to the `LoggerService` provided as
 * {@link SSE_LOGGER} (Nest's `Logger` by default, so `app.useLogger()` applies): prefixed with its
 * stable id ({@link SSE_LOG_MESSAGES}), at the id's level, in the id's context. An id is written
 * at most once per {@link SSE_LOG_THROTTLE_MS}: an outage that fails every request or every read
 * logs one line per window, and the next line says how many were left out.
 */
@Injectable()
export class SseLogger {
  /** Per id (and key): when it was last written, and how many were left out since. */
  private readonly last = new Map<string, { at: number; dropped: number }>();

  constructor(
    @Optional() @Inject(SSE_LOGGER) private readonly target: LoggerService = new Logger(),
  ) {}

  /**
   * Writes `message` as `id`. `detail.key` throttles the id per key instead of as a whole (for
   * lines already bounded per subject, such as a warning once per route); `detail.stack` goes
   * with errors.
   */
  report(id: SseLogMessageId, message: string, detail?: { stack?: string; key?: string }): void {
    const now = Date.now();
    const slot = detail?.key === undefined ? id : `${id}\n${detail.key}`;
    const last = this.last.get(slot);
    if (last && now - last.at < SSE_LOG_THROTTLE_MS) {
      last.dropped++;
      return;
    }
    let line = `[${id}] ${message}`;
    if (last?.dropped) {
      line += ` (${last.dropped} more [${id}] in the ${Math.round((now - last.at) / 1000)} s before were not logged)`;
    }
    this.last.set(slot, { at: now, dropped: 0 });
    const context = CONTEXTS[id.slice(0, id.indexOf('.'))];
    const { level } = SSE_LOG_MESSAGES[id];
    // Nest's convention: (message, context), and (message, stack, context) for errors.
    if (level === 'error' && detail?.stack) this.target.error(line, detail.stack, context);
    else this.target[level](line, context);
  }
}
