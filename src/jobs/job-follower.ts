import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import type { SseLogger } from '../observability/sse-logger';
import type { SseConnection } from '../sse/sse-connection';
import { ALIVE_REFRESH_MS, type JobLog } from './job-log';
import { jobProblem } from './job-problem';

/**
 * Follows a job that runs elsewhere (or has ended) from its log: reads what is after `after`,
 * writes it, and reads again every `followIntervalMs` until the end. A runner that is gone
 * (its alive key expired) gets its job ended with `event: error` (`abandoned`) by the first
 * follower that notices, once.
 */
export function followJob(
  log: JobLog,
  options: ResolvedSseModuleOptions['jobs'],
  logger: SseLogger,
  id: string,
  connection: SseConnection,
  after: number,
): void {
  const { followIntervalMs, retentionMs } = options;
  let timer: NodeJS.Timeout | undefined;
  let idleSince = Date.now();
  connection.onTeardown(() => clearTimeout(timer));
  const step = async (): Promise<void> => {
    if (connection.isClosed) return;
    try {
      const entries = await log.read(id, after, 500);
      if (connection.isClosed) return;
      if (entries.length > 0) {
        idleSince = Date.now();
        connection.write(entries.map((entry) => entry.frame).join(''));
        after = entries[entries.length - 1].n;
        if (entries[entries.length - 1].end) return connection.close('complete');
        return step();
      }
      if (Date.now() - idleSince >= ALIVE_REFRESH_MS) {
        idleSince = Date.now();
        const problem = JSON.stringify(jobProblem('abandoned'));
        if (await log.abandonIfDead(id, problem, retentionMs)) return step();
      }
    } catch (error) {
      // The client resumes by id from wherever it is sent next.
      logger.report('job.follow-failed', `Could not follow job ${id}: ${(error as Error).message}`);
      return connection.close('error');
    }
    timer = setTimeout(() => void step(), followIntervalMs);
  };
  void step();
}
