import { SseLogger } from '../observability/sse-logger';
import {
  Inject,
  Injectable,
  OnApplicationShutdown,
  OnModuleInit,
  ServiceUnavailableException,
} from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { Observable } from 'rxjs';
import { ClientLimits } from '../common/client-limits';
import { diagnose, SSE_DIAGNOSTICS } from '../observability/diagnostics';
import { raceTimeout } from '../common/timeout';
import { SSE_MODULE_OPTIONS } from '../config/tokens';
import type { ResolvedSseModuleOptions } from '../config/sse-module-options';
import { SSE_JOB_OWNER_RESOLVER, type SseJobOwnerResolver } from './job-owner';
import { RedisConnection } from '../connections/redis-connection';
import type { SseConnection } from '../sse/sse-connection';
import { SseHub } from '../sse/sse-hub';
import type { SseRequest } from '../sse/sse-route-options';
import { JobLog, JobMeta } from './job-log';
import { findJobRoutes } from './job-routes';
import { ControllerMethods } from '../common/controller-methods';
import { JobFollowers } from './job-follower';
import { findOwnedJob } from './job-lookup';
import { JobHeartbeat } from './job-heartbeat';
import { JobAdmission, RunningJob, runningJob } from './running-job';
import { JobRunner } from './job-runner';
import { JobFormat, SSE_JOB_FORMAT } from './job-format';
import { ChatTurns } from './chat/chat-turns';

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
  private turns?: ChatTurns;
  /** Runs the jobs of this instance: their events, their log, their end. */
  private readonly runner: JobRunner;
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
    this.runner = new JobRunner(
      options.jobs,
      hub,
      () => this.jobLog,
      logger,
      this.stats,
      (job) => {
        this.running.delete(job.id);
        job.release();
        if (this.running.size === 0) this.heartbeat.stop();
      },
    );
    this.heartbeat = new JobHeartbeat(
      () => this.running.values(),
      () => this.jobLog,
      (job) => !job.ended && this.runner.fail(job, 'cancelled'),
      (job) => this.runner.breakLog(job, 'abandoned'),
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

  /** Which job is each chat's current turn (`@SseChat()`). */
  get chatTurns(): ChatTurns {
    return (this.turns ??= new ChatTurns(
      this.redis.client ?? unavailable(),
      this.options.redis!.commandTimeoutMs,
    ));
  }

  /** How long a job's records live at most: its run, then its retention. */
  get recordTtlMs(): number {
    return this.options.jobs.timeoutMs + this.options.jobs.retentionMs;
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
    how: { format?: JobFormat; onEnd?: RunningJob['onEnd'] } = {},
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
    const job = runningJob(id, clientKey, abort, admission.release, how.format ?? SSE_JOB_FORMAT);
    job.onEnd = how.onEnd;
    this.running.set(id, job);
    this.stats.started++;
    diagnose(SSE_DIAGNOSTICS.jobStart, () => ({ id }));
    this.heartbeat.start();
    this.runner.run(job, events, timeoutMs);
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
  follow(id: string, connection: SseConnection, after: number, format = SSE_JOB_FORMAT): void {
    this.followers.follow(id, connection, after, format);
  }

  /**
   * Cancels a job (here, or through its log for the instance running it). True when the job
   * will end cancelled; false when it had already ended (its end may not be in the log yet).
   */
  async cancel(id: string): Promise<boolean> {
    const job = this.running.get(id);
    if (job && !job.ended) {
      this.runner.fail(job, 'cancelled');
      return true;
    }
    return this.jobLog.requestCancel(id);
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
    for (const job of left) this.runner.fail(job, 'shutdown');
    await raceTimeout(
      Promise.all(left.map((job) => job.settled)),
      2 * (this.options.redis?.commandTimeoutMs ?? 1_000),
      () => undefined,
    );
  }

  onApplicationShutdown(): void {
    this.heartbeat.stop();
    for (const job of [...this.running.values()]) this.runner.fail(job, 'shutdown');
  }
}

function unavailable(): never {
  throw new ServiceUnavailableException('Job streams need redis');
}
