import { SseLogger } from '../../observability/sse-logger';
import {
  BeforeApplicationShutdown,
  Inject,
  Injectable,
  OnApplicationBootstrap,
} from '@nestjs/common';
import { SSE_MODULE_OPTIONS } from '../../config/tokens';
import type { ResolvedSseModuleOptions } from '../../config/sse-module-options';
import { OutboxStore } from './outbox-store';
import { PostgresConnection } from '../../connections/postgres-connection';
import { raceTimeout } from '../../common/timeout';

const RETENTION_BATCH = 5_000;
const MAX_BATCHES_PER_RUN = 20;

/**
 * Deletes events older than `outbox.retentionMs`, oldest first, in bounded batches, every
 * `retentionIntervalMs`. Safe on every instance at once. Records how far it deleted, so a
 * client resuming from before that point is told to reset instead of silently missing events.
 */
@Injectable()
export class OutboxRetention implements OnApplicationBootstrap, BeforeApplicationShutdown {
  private timer?: NodeJS.Timeout;
  private running?: Promise<number>;
  readonly stats = { runs: 0, deleted: 0 };

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    private readonly store: OutboxStore,
    private readonly logger: SseLogger,
  ) {}

  onApplicationBootstrap(): void {
    if (!this.postgres.enabled) return;
    this.timer = setInterval(() => void this.runOnce(), this.options.outbox.retentionIntervalMs);
    this.timer.unref();
  }

  async beforeApplicationShutdown(): Promise<void> {
    clearInterval(this.timer);
    // Each batch is bounded by postgres.queryTimeoutMs, but a run is several batches: shutdown
    // waits a second at most (the pool's end then destroys the connection; the work is redone).
    if (this.running) await raceTimeout(this.running, 1_000, () => undefined);
  }

  /** One retention pass; returns the number of events deleted. */
  runOnce(now = new Date()): Promise<number> {
    this.running ??= this.deleteExpired(now).finally(() => (this.running = undefined));
    return this.running;
  }

  private async deleteExpired(now: Date): Promise<number> {
    const cutoff = new Date(now.getTime() - this.options.outbox.retentionMs);
    let total = 0;
    try {
      for (let batch = 0; batch < MAX_BATCHES_PER_RUN; batch++) {
        const { rows } = await this.postgres.query<{ deleted: number }>(this.store.sql.retention, [
          cutoff,
          RETENTION_BATCH,
        ]);
        total += rows[0].deleted;
        if (rows[0].deleted < RETENTION_BATCH) break;
      }
      // Recorded outcomes of idempotent requests, past their TTL.
      for (let batch = 0; batch < MAX_BATCHES_PER_RUN; batch++) {
        const { rows } = await this.postgres.query<{ deleted: number }>(
          this.store.sql.effectsRetention,
          [RETENTION_BATCH],
        );
        if (rows[0].deleted < RETENTION_BATCH) break;
      }
    } catch (error) {
      this.logger.report(
        'outbox.retention-failed',
        `Outbox retention failed (will retry): ${(error as Error).message}`,
      );
    }
    this.stats.runs++;
    this.stats.deleted += total;
    return total;
  }
}
