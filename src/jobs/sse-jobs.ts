import { SseLogger } from '../observability/sse-logger';
import {
  HttpException,
  Inject,
  Injectable,
  OnApplicationShutdown,
  OnModuleInit,
  ServiceUnavailableException,
} from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import { takeWhile, type Observable } from 'rxjs';
import { ClientLimits } from '../common/client-limits';
import { diagnose, SSE_DIAGNOSTICS } from '../observability/diagnostics';
import { raceTimeout } from '../common/timeout';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SSE_JOB_OWNER_RESOLVER, type SseJobOwnerResolver } from './job-owner';
import { RedisConnection } from '../connections/redis-connection';
import type { SseConnection } from '../sse/sse-connection';
import { toSseEvent } from '../sse/sse-event';
import { SseHub } from '../sse/sse-hub';
import type { SseRequest } from '../sse/sse-route-options';
import { JobEnd, JobLog, JobMeta, LogEntry } from './job-log';
import { findJobRoutes } from './job-routes';
import { ControllerMethods } from '../common/controller-methods';
import { JobFollowers } from './job-follower';
import { findOwnedJob } from './job-lookup';
import { JobHeartbeat } from './job-heartbeat';
import { endEntry, jobProblem, SseJobErrorReason } from './job-problem';
import { JobAdmission, RunningJob, runningJob } from './running-job';

/** How long appends wait to leave together; see {@link SseJobs.scheduleFlush}. */
const LOG_LINGER_MS = 5;

/**
 * The job streams of this instance (`@SseJob()`): runs each job detached from the connection
 * that started it, keeps its events in memory and in its Redis log, and feeds every stream
 * attached to it — here from memory, on other instances from the log. Jobs cannot move between
 * processes: a shutdown gives them the drain window, then ends them with `event: error`.
 */
@Injectable()
export class SseJobs implements OnModuleInit, OnApplicationShutdown {
  private readonly running = new Map<string, RunningJob>();
  private readonly limits: ClientLimits;
  private stopping = false;
  /** Keeps the running jobs' alive keys fresh, and hears of cancels asked through their logs. */
  private readonly heartbeat: JobHeartbeat;
  /** The clients following jobs of other instances, one reader per job. */
  readonly followers: JobFollowers;
  private log?: JobLog;
  private readonly dirty = new Set<RunningJob>();
  private flushTimer?: NodeJS.Timeout;
  readonly stats = { started: 0, done: 0, failed: 0, resumed: 0 };

  constructor(
    @Inject(SSE_MODULE_OPTIONS) private readonly options: ResolvedSseModuleOptions,
    private readonly redis: RedisConnection,
    private readonly hub: SseHub,
    @Inject(SSE_JOB_OWNER_RESOLVER) private readonly owners: SseJobOwnerResolver,
    private readonly methods: ControllerMethods,
    private readonly logger: SseLogger,
  ) {
    this.limits = new ClientLimits(options.jobs.maxConcurrent, options.jobs.maxConcurrentPerClient);
    this.followers = new JobFollowers(() => this.jobLog, options.jobs, logger);
    this.heartbeat = new JobHeartbeat(
      () => this.running.values(),
      () => this.jobLog,
      (job) => !job.ended && this.fail(job, 'cancelled'),
      (job) => this.breakLog(job, 'abandoned'),
      logger,
    );
  }

  /** A job route without `redis` fails bootstrap: its log lives there. */
  onModuleInit(): void {
    if (this.redis.client) {
      this.log = new JobLog(this.redis.client, this.options.redis!.commandTimeoutMs);
      return;
    }
    const routes = findJobRoutes(this.methods);
    if (routes.length > 0) {
      throw new Error(
        `nestjs-durable-sse: @SseJob() routes (${routes.join(', ')}) keep their job logs in ` +
          'Redis: configure the redis option of SseModule.',
      );
    }
  }

  private get jobLog(): JobLog {
    if (!this.log) throw new ServiceUnavailableException('Job streams need redis');
    return this.log;
  }

  /** Reserves a place for a new job under `jobs.maxConcurrent` and `maxConcurrentPerClient`. */
  admit(clientKey: string): JobAdmission {
    if (this.stopping)
      return { admitted: false, status: 503, reason: 'This instance is shutting down' };
    const place = this.limits.take(clientKey);
    if (place === 'full')
      return { admitted: false, status: 503, reason: 'This instance runs as many jobs as it may' };
    if (place === 'client-limit')
      return { admitted: false, status: 429, reason: 'Too many jobs running for this client' };
    return { admitted: true, release: place.release };
  }

  /** Who a job belongs to (`SSE_JOB_OWNER_RESOLVER`); '' for an anonymous one. */
  async ownerOf(request: SseRequest): Promise<string> {
    return (await this.owners.resolve(request)) ?? '';
  }

  /**
   * Registers a job in Redis and starts running `events` detached from any connection. `abort`
   * is the controller behind the handler's `@SseJobSignal()`.
   */
  async start(
    owner: string,
    clientKey: string,
    admission: Extract<JobAdmission, { admitted: true }>,
    events: Observable<unknown>,
    abort: AbortController,
  ): Promise<string> {
    const id = randomBytes(16).toString('base64url');
    const { timeoutMs, retentionMs } = this.options.jobs;
    try {
      await this.jobLog.create(id, owner, timeoutMs + retentionMs);
    } catch (error) {
      throw new ServiceUnavailableException(
        `The job could not be registered: ${(error as Error).message}`,
      );
    }
    const job = runningJob(id, clientKey, abort, admission.release);
    this.running.set(id, job);
    this.stats.started++;
    diagnose(SSE_DIAGNOSTICS.jobStart, () => ({ id }));
    this.heartbeat.start();
    job.timer = setTimeout(() => this.fail(job, 'timeout'), timeoutMs);
    job.timer.unref();
    if (abort.signal.aborted) {
      this.fail(job, 'cancelled');
      return id;
    }
    // takeWhile: a source that emits synchronously (from(array), range) has not handed back its
    // subscription yet when the job ends mid-emission; this stops it at its next value.
    job.subscription = events.pipe(takeWhile(() => !job.ended)).subscribe({
      next: (value) => this.emit(job, value),
      error: (error) => this.failWith(job, error),
      complete: () => this.end(job, 'done', 'id: %n\nevent: done\ndata: {}\n\n'),
    });
    return id;
  }

  /** The job's meta if it exists and belongs to the principal of `request` (else 404). */
  async find(id: string, request: SseRequest): Promise<JobMeta> {
    return findOwnedJob(this.jobLog, id, await this.ownerOf(request));
  }

  /** The id of the job's last event (its end, once it has ended). */
  lastEventOf(id: string): Promise<number> {
    const job = this.running.get(id);
    if (job) return Promise.resolve(job.delivered);
    return this.jobLog.last(id);
  }

  /** Writes what `connection` has not seen of a job running here, then follows it live. */
  attach(id: string, connection: SseConnection, after: number): boolean {
    const job = this.running.get(id);
    if (!job) return false;
    const missed = job.entries.slice(after, job.delivered);
    if (missed.length > 0) connection.write(missed.map((entry) => entry.frame).join(''));
    job.subscribers.add(connection);
    connection.onTeardown(() => job.subscribers.delete(connection));
    return true;
  }

  /** Follows a job that runs elsewhere (or has ended) from its log, to its end (job-follower.ts). */
  follow(id: string, connection: SseConnection, after: number): void {
    this.followers.follow(id, connection, after);
  }

  /**
   * Cancels a job (here, or through its log for the instance running it). True when the job
   * will end cancelled; false when it had already ended (its end may not be in the log yet).
   */
  async cancel(id: string): Promise<boolean> {
    const job = this.running.get(id);
    if (job && !job.ended) {
      this.fail(job, 'cancelled');
      return true;
    }
    return this.jobLog.requestCancel(id);
  }

  private emit(job: RunningJob, value: unknown): void {
    if (job.ended) return;
    const event = toSseEvent(value);
    const n = job.entries.length + 1;
    let frame: string;
    try {
      frame = this.hub.encode({
        id: String(n),
        type: event.type,
        retry: event.retry,
        data: event.data,
      });
    } catch (error) {
      this.logger.report(
        'job.unframeable-event',
        `Job ${job.id}: dropped an event that cannot be framed: ${(error as Error).message}`,
      );
      return;
    }
    const { maxEvents, maxBytes } = this.options.jobs;
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
    const { timeoutMs, retentionMs } = this.options.jobs;
    this.jobLog.append(job.id, batch, timeoutMs + retentionMs).then(
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
  private breakLog(job: RunningJob, reason: 'log-unavailable' | 'abandoned'): void {
    if (job.logBroken) return;
    job.logBroken = true;
    job.pending = [];
    const frame = `event: error\ndata: ${JSON.stringify(jobProblem(reason))}\n\n`;
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
    this.jobLog
      .end(job.id, job.ended!, this.options.jobs.retentionMs)
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

  private fail(job: RunningJob, reason: SseJobErrorReason, title?: string, status?: number): void {
    const problem = JSON.stringify(jobProblem(reason, title, status));
    this.end(job, 'error', `id: %n\nevent: error\ndata: ${problem}\n\n`, reason);
  }

  /** Ends the job: its last event (done or error) to the log and every stream, then closes them. */
  private end(job: RunningJob, end: JobEnd, template: string, reason?: SseJobErrorReason): void {
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
    const n = job.entries.length + 1;
    this.record(job, endEntry(n, end, template, reason));
    // Streams end once the end is in the log (or could not be written): a client that saw the
    // end and comes back finds it there (204), on any instance.
    void job.settled.then(() => {
      for (const connection of [...job.subscribers]) connection.close('complete');
      job.subscribers.clear();
    });
    this.running.delete(job.id);
    job.release();
    if (job.logBroken) job.settle();
    else if (!job.writing && job.pending.length === 0) this.finishLog(job);
    if (this.running.size === 0) this.heartbeat.stop();
  }

  /**
   * Shutdown: no new job; running ones get up to `windowMs` to finish, then end with
   * `event: error` (`shutdown`), written to their logs (bounded) before streams are closed.
   */
  async drain(windowMs: number): Promise<void> {
    this.stopping = true;
    if (this.running.size === 0) return;
    const all = () => Promise.all([...this.running.values()].map((job) => job.settled));
    if (windowMs > 0) await raceTimeout(all(), windowMs, () => undefined);
    const left = [...this.running.values()];
    for (const job of left) this.fail(job, 'shutdown');
    await raceTimeout(
      Promise.all(left.map((job) => job.settled)),
      2 * (this.options.redis?.commandTimeoutMs ?? 1_000),
      () => undefined,
    );
  }

  onApplicationShutdown(): void {
    this.heartbeat.stop();
    for (const job of this.running.values()) this.fail(job, 'shutdown');
  }
}
