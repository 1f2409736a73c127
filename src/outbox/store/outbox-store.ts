import { Inject, Injectable, OnModuleInit, Optional } from '@nestjs/common';
import { SSE_MODULE_OPTIONS } from '../../config/tokens';
import type { ResolvedSseModuleOptions } from '../../config/sse-module-options';
import { PostgresConnection } from '../../connections/postgres-connection';
import { SseLogger } from '../../observability/sse-logger';
import { outboxSql, OutboxSql } from './outbox.sql';

/**
 * The outbox table as the module's parts see it: its SQL (outbox.sql.ts), named once for the
 * configured schema, table and channel, and its migration, run at start when `outbox.migrate`
 * is on. The write side (OutboxService) and the read side (relay, feed, retention) both use it;
 * neither reaches the other for it.
 */
@Injectable()
export class OutboxStore implements OnModuleInit {
  readonly sql: OutboxSql;
  readonly schema: string;
  readonly table: string;

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly postgres: PostgresConnection,
    @Optional() private readonly logger: SseLogger = new SseLogger(),
  ) {
    this.schema = options.postgres?.schema ?? 'public';
    this.table = options.outbox.table;
    this.sql = outboxSql({
      schema: this.schema,
      table: this.table,
      channel: options.outbox.channel,
      wakeup: options.outbox.wakeup,
    });
  }

  async onModuleInit(): Promise<void> {
    if (!this.postgres.enabled) return;
    await this.postgres.verify();
    if (this.options.outbox.migrate) await this.migrate();
    else if (this.options.outbox.wakeup === 'after-commit') await this.warnOfNotifyTrigger();
  }

  /**
   * Creates the outbox schema objects if missing, and says what it changed (the NOTIFY trigger
   * of earlier versions is dropped with `outbox.wakeup: 'after-commit'`). Idempotent and safe
   * to run from several instances at once: one transaction under an advisory lock.
   */
  async migrate(): Promise<void> {
    const droppedTrigger = await this.postgres.transaction(async (client) => {
      await client.query(
        this.postgres.bounded(this.sql.migrationLock, [`nestjs-durable-sse:${this.table}`]),
      );
      // Asked before the statements that drop it (to_regclass: no rows before the table exists).
      const dropsTrigger =
        this.options.outbox.wakeup === 'after-commit' &&
        (await client.query(this.postgres.bounded(this.sql.hasNotifyTrigger))).rows.length > 0;
      for (const statement of this.sql.migrate)
        await client.query(this.postgres.bounded(statement));
      return dropsTrigger;
    });
    if (droppedTrigger) {
      this.logger.report(
        'outbox.notify-trigger-dropped',
        `Dropped the outbox table's NOTIFY trigger (outbox.wakeup is 'after-commit'): the ` +
          'module wakes relays after commits instead; instances of earlier versions still ' +
          'running are woken by those NOTIFYs and by their poll.',
      );
    }
    this.logger.report('outbox.ready', `Outbox ready: ${this.schema}.${this.table}`);
  }

  /**
   * A table the team migrates may still have the trigger of earlier versions: every commit that
   * publishes would keep taking the database-wide NOTIFY lock. Said once at start, with the fix.
   */
  private async warnOfNotifyTrigger(): Promise<void> {
    const { rows } = await this.postgres
      .query(this.sql.hasNotifyTrigger)
      .catch(() => ({ rows: [] as unknown[] })); // a warning only: a failed check says nothing
    if (rows.length === 0) return;
    this.logger.report(
      'outbox.notify-trigger',
      `The outbox table still has its NOTIFY trigger, which serializes every commit that publishes ` +
        `(outbox.wakeup is 'after-commit'): run DROP TRIGGER IF EXISTS "${this.table}_notify" ON "${this.schema}"."${this.table}", ` +
        `or set outbox.wakeup: 'trigger' to keep it on purpose.`,
    );
  }
}
