import type { Logger } from '@nestjs/common';

/** At most one warning per `intervalMs`: an outage must not turn every read or request into a log line. */
export class ThrottledWarning {
  private lastAt = 0;

  constructor(
    private readonly logger: Logger,
    private readonly intervalMs = 5_000,
  ) {}

  warn(message: string): void {
    if (Date.now() - this.lastAt < this.intervalMs) return;
    this.lastAt = Date.now();
    this.logger.warn(message);
  }
}
