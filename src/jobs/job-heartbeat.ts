import type { SseLogger } from '../observability/sse-logger';
import { ALIVE_REFRESH_MS, type JobLog } from './job-log';
import type { RunningJob } from './running-job';

/**
 * One timer for all the jobs running on this instance: every ALIVE_REFRESH_MS it refreshes each
 * one's alive key in its log (followers elsewhere end a job whose key expired as abandoned), and
 * learns of cancels asked through the log from other instances — and that a job was ended as
 * abandoned while this process stalled, which it would otherwise run on unaware. Runs only while
 * jobs do.
 */
export class JobHeartbeat {
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly jobs: () => Iterable<RunningJob>,
    private readonly log: () => JobLog,
    private readonly cancelled: (job: RunningJob) => void,
    /** The job is no longer running in its log: a follower found this runner gone and ended it. */
    private readonly abandoned: (job: RunningJob) => void,
    private readonly logger: SseLogger,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.beat(), ALIVE_REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private beat(): void {
    for (const job of this.jobs()) {
      this.log()
        .heartbeat(job.id)
        .then(
          (beat) => {
            if (beat === 'abandoned') this.abandoned(job);
            else if (beat === 'cancel') this.cancelled(job);
          },
          (error: Error) =>
            this.logger.report('job.heartbeat-failed', `Job heartbeat failed: ${error.message}`),
        );
    }
  }
}
