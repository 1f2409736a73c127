import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import type { SseLogger } from '../observability/sse-logger';
import type { SseConnection } from '../sse/sse-connection';
import { ALIVE_REFRESH_MS, ALIVE_TTL_MS, type JobLog } from './job-log';
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
  /** Since when reads have failed, one after another. */
  let failingSince: number | undefined;
  connection.onTeardown(() => clearTimeout(timer));
  /**
   * The log cannot say what happened any more (Redis lost it, or stayed unreachable): the client
   * is told so with `event: error` and no id — nothing in any log has or will have that id, and
   * a resume from its last id is answered for what the log holds then (404 when it is gone).
   */
  const lost = (why: string) => {
    logger.report('job.follow-failed', `Stopped following job ${id}: ${why}`);
    connection.write(`event: error\ndata: ${JSON.stringify(jobProblem('log-unavailable'))}\n\n`);
    connection.close('complete');
  };
  const step = async (): Promise<void> => {
    if (connection.isClosed) return;
    try {
      const entries = await log.read(id, after, 500);
      failingSince = undefined;
      if (connection.isClosed) return;
      if (entries.length > 0) {
        // Ids grow by one: a jump means entries are gone (Redis restarted without them).
        if (entries[0].n !== after + 1)
          return lost(`its log lost events ${after + 1}..${entries[0].n - 1}`);
        idleSince = Date.now();
        connection.write(entries.map((entry) => entry.frame).join(''));
        after = entries[entries.length - 1].n;
        if (entries[entries.length - 1].end) return connection.close('complete');
        return step();
      }
      if (Date.now() - idleSince >= ALIVE_REFRESH_MS) {
        idleSince = Date.now();
        // A job whose record is gone (Redis restarted empty) would be waited for forever.
        if (!(await log.meta(id))) return lost('its log is gone');
        const problem = JSON.stringify(jobProblem('abandoned'));
        if (await log.abandonIfDead(id, problem, retentionMs)) return step();
      }
    } catch (error) {
      // A blip (a restart, a failover) is waited out; past the runner's own liveness bound, the
      // client learns that the job can no longer be followed.
      failingSince ??= Date.now();
      if (Date.now() - failingSince >= ALIVE_TTL_MS) return lost((error as Error).message);
    }
    timer = setTimeout(() => void step(), followIntervalMs);
  };
  void step();
}
