import { HttpException } from '@nestjs/common';
import { takeWhile, type Observable } from 'rxjs';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { diagnose, SSE_DIAGNOSTICS } from '../observability/diagnostics';
import type { SseLogger } from '../observability/sse-logger';
import type { SseHub } from '../sse/sse-hub';
import type { JobEnd, JobLog, LogEntry } from './job-log';
import type { SseJobErrorReason } from './job-problem';
import { endEntry } from './job-format';
import type { RunningJob } from './running-job';

/** How long appends wait to leave together; see {@link JobRunner.scheduleFlush}. */
const LOG_LINGER_MS = 5;

/**
 * Runs the jobs of one instance once they are registered (SseJobs keeps the registry): turns
 * what a handler emits into framed, numbered entries, writes them to the job's log in order —
 * all jobs' appends leaving together — hands each to the job's streams once it is logged, and
 * ends the job exactly once: done, failed, timed out, cancelled, too large, shut down, or
 * abandoned.
 */
export class JobRunner {
  private readonly dirty = new Set<RunningJob>();
  private flushTimer?: NodeJS.Timeout;

  constructor(
    private readonly options: ResolvedSseModuleOptions['jobs'],
    private readonly hub: SseHub,
    private readonly log: () => JobLog,
    private readonly logger: SseLogger,
    private readonly stats: { done: number; failed: number },
    /** The job has ended here: no longer running on this instance. */
    private readonly ended: (job: RunningJob) => void,
  ) {}

  /** Runs `events` as `job`, ending it after `timeoutMs` if it has not ended by then. */
  run(job: RunningJob, events: Observable<unknown>, timeoutMs: number): void {
    job.timer = setTimeout(() => this.fail(job, 'timeout'), timeoutMs);
    job.timer.unref();
    if (job.abort.signal.aborted) return this.fail(job, 'cancelled');
    // takeWhile: a source that emits synchronously (from(array), range) has not handed back its
    // subscription yet when the job ends mid-emission; this stops it at its next value.
    job.subscription = events.pipe(takeWhile(() => !job.ended)).subscribe({
      next: (value) => this.emit(job, value),
      error: (error) => this.failWith(job, error),
      complete: () => this.end(job, 'done'),
    });
  }

  private emit(job: RunningJob, value: unknown): void {
    if (job.ended) return;
    const n = job.entries.length + 1;
    let frame: string;
    try {
      frame = job.format.event(n, value, this.hub);
    } catch (error) {
      this.logger.report(
        'job.unframeable-event',
        `Job ${job.id}: dropped an event that cannot be framed: ${(error as Error).message}`,
      );
      return;
    }
    const { maxEvents, maxBytes } = this.options;
    if (n > maxEvents || job.bytes + Buffer.byteLength(frame) > maxBytes)
      return this.fail(job, 'too-large');
    this.record(job, { n, frame });
  }

  private record(job: RunningJob, entry: LogEntry): void {
    job.entries.push(entry);
    job.bytes += Buffer.byteLength(entry.frame);
    if (job.logBroken) return; // never delivered: only logged events reach a stream
    job.pending.push(entry);
    this.scheduleFlush(job);
  }

  /** Writes entries up to `upTo` (an id) to the job's streams. */
  private deliver(job: RunningJob, upTo: number): void {
    if (upTo <= job.delivered) return;
    const frames = job.entries
      .slice(job.delivered, upTo)
      .map((entry) => entry.frame)
      .join('');
    job.delivered = upTo;
    for (const connection of job.subscribers) connection.write(frames);
  }

  /**
   * Appends are written every LOG_LINGER_MS for all jobs at once rather than per event: the
   * events of a thousand jobs then leave in one socket write (ioredis pipelines the commands of
   * one tick) instead of one write each. Events reach streams once written, so this much later.
   */
  private scheduleFlush(job: RunningJob): void {
    this.dirty.add(job);
    this.flushTimer ??= setTimeout(() => {
      this.flushTimer = undefined;
      const jobs = [...this.dirty];
      this.dirty.clear();
      for (const dirty of jobs) this.flush(dirty);
    }, LOG_LINGER_MS);
  }

  /** Writes pending entries to Redis, one batch at a time, in order. */
  private flush(job: RunningJob): void {
    if (job.writing || job.pending.length === 0) return;
    job.writing = true;
    const batch = job.pending.splice(0);
    const { timeoutMs, retentionMs } = this.options;
    this.log()
      .append(job.id, batch, timeoutMs + retentionMs)
      .then(
        (cancelled) => {
          job.writing = false;
          if (cancelled) this.endedCancelled(job);
          this.deliver(job, batch[batch.length - 1].n);
          if (job.pending.length > 0) return this.scheduleFlush(job);
          if (job.ended) this.finishLog(job);
        },
        (error: Error) => {
          job.writing = false;
          this.logger.report(
            'job.log-failed',
            `Job ${job.id}: its log could not be written: ${error.message}`,
          );
          // Ids must grow: an older one refused means another instance ended the job in the log.
          const abandoned = /equal or smaller than the target stream top/i.test(error.message);
          this.breakLog(job, abandoned ? 'abandoned' : 'log-unavailable');
        },
      );
  }

  /**
   * The log no longer takes this job's events (Redis failed, or a follower found this runner
   * gone — stalled past the liveness bound — and ended the job in the log at its next id). What
   * was not logged never reaches a stream: its ids may already mean something else in the log.
   * The streams here get `event: error` with no id, and end; the job stops.
   */
  breakLog(job: RunningJob, reason: 'log-unavailable' | 'abandoned'): void {
    if (job.logBroken) return;
    job.logBroken = true;
    job.pending = [];
    const frame = job.format.error(reason);
    for (const connection of job.subscribers) connection.write(frame);
    if (!job.ended) this.fail(job, reason);
    else job.settle();
  }

  /** A cancel was accepted (202) before the end reached the log: the log ended it cancelled, so here too. */
  private endedCancelled(job: RunningJob): void {
    const last = job.entries[job.entries.length - 1];
    if (!last.cancelledFrame) return;
    if (job.ended === 'done') {
      this.stats.done--;
      this.stats.failed++;
    }
    last.frame = last.cancelledFrame;
    last.end = job.ended = 'error';
    if (!job.abort.signal.aborted) job.abort.abort('cancelled');
  }

  private finishLog(job: RunningJob): void {
    this.log()
      .end(job.id, job.ended!, this.options.retentionMs)
      .catch((error: Error) =>
        this.logger.report(
          'job.end-failed',
          `Job ${job.id}: could not mark its end: ${error.message}`,
        ),
      )
      .finally(() => job.settle());
  }

  private failWith(job: RunningJob, error: unknown): void {
    if (error instanceof HttpException) {
      const body = error.getResponse();
      const title =
        typeof body === 'string'
          ? body
          : ((body as { message?: unknown }).message ?? error.message);
      return this.fail(job, 'failed', String(title), error.getStatus());
    }
    // Never the message or the stack: they may say anything about the server.
    this.logger.report(
      'job.failed',
      `Job ${job.id} failed: ${(error as Error)?.message ?? error}`,
      { stack: (error as Error)?.stack },
    );
    this.fail(job, 'failed');
  }

  fail(job: RunningJob, reason: SseJobErrorReason, title?: string, status?: number): void {
    this.end(job, 'error', reason, title, status);
  }

  /** Ends the job: its last event (done or error) to the log and every stream, then closes them. */
  private end(
    job: RunningJob,
    end: JobEnd,
    reason?: SseJobErrorReason,
    title?: string,
    status?: number,
  ): void {
    if (job.ended) return;
    job.ended = end;
    clearTimeout(job.timer);
    job.subscription?.unsubscribe();
    if (!job.abort.signal.aborted && reason) job.abort.abort(reason);
    this.stats[end === 'done' ? 'done' : 'failed']++;
    diagnose(SSE_DIAGNOSTICS.jobEnd, () => ({
      id: job.id,
      end,
      reason,
      events: job.entries.length,
    }));
    try {
      job.onEnd?.(end, reason);
    } catch (error) {
      this.logger.report('job.failed', `Job ${job.id}: its end hook threw: ${String(error)}`);
    }
    const n = job.entries.length + 1;
    const frame = end === 'done' ? job.format.done(n) : job.format.error(reason!, n, title, status);
    this.record(job, endEntry(n, end, frame, job.format, reason));
    // Streams end once the end is in the log (or could not be written): a client that saw the
    // end and comes back finds it there (204), on any instance.
    void job.settled.then(() => {
      for (const connection of [...job.subscribers]) connection.close('complete');
      job.subscribers.clear();
    });
    this.ended(job);
    if (job.logBroken) job.settle();
    else if (!job.writing && job.pending.length === 0) this.finishLog(job);
  }
}
