import {
  CallHandler,
  ExecutionContext,
  Injectable,
  InternalServerErrorException,
  NestInterceptor,
  ServiceUnavailableException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { firstValueFrom, from, isObservable, Observable } from 'rxjs';
import { SETTLE_IDEMPOTENT, SettleIdempotent } from '../idempotency/idempotency-executor';
import { IdempotentReplay } from '../idempotency/idempotency-replay';
import { HttpPlatformHost } from '../platform/http-platform.host';
import type { PlatformResponse } from '../platform/http-platform';
import { readLastEventId, SseHandlerResult, SseRequest } from '../sse/sse-route-options';
import { SseStreamer } from '../sse/sse-streamer';
import { JOB_ID_PARAM, jobAbortController, SSE_JOB_METADATA, SseJobRole } from './sse-job.options';
import { SseJobs } from './sse-jobs';
import { JobRefusals, parseJobEventId } from './job-refusals';

const NO_RESULT = Symbol('no result');

/**
 * Attached by `@SseJob()` to its three routes. Start: reserves a stream slot and a job slot,
 * runs the handler, registers the job and streams it, naming the resume URL. Resume: checks the
 * job is the caller's, answers 204 when the client has it all, else streams what it missed and
 * follows the job. Cancel: aborts it. Everything before the stream opens is an ordinary HTTP
 * response.
 */
@Injectable()
export class SseJobInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly streamer: SseStreamer,
    private readonly jobs: SseJobs,
    private readonly platforms: HttpPlatformHost,
  ) {
    this.refusals = new JobRefusals(platforms, streamer);
  }

  private readonly refusals: JobRefusals;

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const request = http.getRequest<SseRequest>();
    const response = http.getResponse<PlatformResponse>();
    const role = this.reflector.get<SseJobRole>(SSE_JOB_METADATA, context.getHandler());
    if (role === 'resume')
      return from(this.resume(request, response, request.params?.[JOB_ID_PARAM]));
    if (role === 'cancel')
      return from(this.cancel(request, response, request.params?.[JOB_ID_PARAM]));
    return from(this.start(request, response, next));
  }

  private async start(
    request: SseRequest,
    response: PlatformResponse,
    next: CallHandler,
  ): Promise<undefined> {
    const { clientKey, slot } = await this.refusals.admitStream(request, response);
    const job = this.jobs.admit(clientKey);
    if (!job.admitted) {
      slot.release();
      return this.refusals.refuse(response, job.status, job.reason);
    }
    try {
      let result: unknown;
      try {
        result = await firstValueFrom(next.handle(), { defaultValue: NO_RESULT });
      } catch (error) {
        // A retry of an @Idempotent() start: attach to the job it started.
        const attachTo =
          error instanceof IdempotentReplay ? jobIdOf(error.stored.headers) : undefined;
        if (attachTo === undefined) throw error;
        job.release();
        const url = (error as IdempotentReplay).stored.headers.location;
        return await this.stream(request, response, attachTo, url, clientKey, slot);
      }
      if (!(result instanceof SseHandlerResult) || !isObservable(result.value)) {
        throw new InternalServerErrorException(
          result === NO_RESULT || result instanceof SseHandlerResult
            ? 'An @SseJob() handler must return an Observable'
            : 'A method interceptor declared above @SseJob() replaced its result; declare it below or at class level',
        );
      }
      const owner = await this.jobs.ownerOf(request);
      const id = await this.jobs.start(
        owner,
        clientKey,
        job,
        result.value,
        jobAbortController(request as Record<symbol, unknown>),
      );
      const url = resumeUrl(this.platforms.platform.rawRequest(request).url ?? '', id);
      const settle = (request as Record<symbol, SettleIdempotent | undefined>)[SETTLE_IDEMPOTENT];
      // The key's record: where the job is (a replay attaches to it; 303 for any other reader).
      await settle?.({
        status: 303,
        headers: { location: url, 'content-location': url },
        kind: 'utf8',
        body: '',
      });
      this.streamer.open(
        request,
        response,
        clientKey,
        slot,
        {
          kind: 'attach',
          attach: (c) => {
            if (!this.jobs.attach(id, c, 0)) this.jobs.follow(id, c, 0);
          },
        },
        { 'Content-Location': url },
      );
      return undefined;
    } catch (error) {
      job.release();
      slot.release();
      // Redis could not register the job in time: worth retrying shortly (with the same
      // Idempotency-Key, safely).
      if (error instanceof ServiceUnavailableException) this.refusals.retryAfter(response);
      throw error;
    }
  }

  private async resume(
    request: SseRequest,
    response: PlatformResponse,
    id: string,
  ): Promise<undefined> {
    const meta = await this.jobs.find(id, request);
    const after = parseJobEventId(readLastEventId(request));
    if (meta.state !== 'running' && after >= (await this.jobs.lastEventOf(id))) {
      // Everything of a finished job: 204 tells EventSource to stop reconnecting.
      this.platforms.platform.send(response, 204, {}, '');
      return undefined;
    }
    const { clientKey, slot } = await this.refusals.admitStream(request, response);
    try {
      const url = resumeUrl(this.platforms.platform.rawRequest(request).url ?? '', id, true);
      return await this.stream(request, response, id, url, clientKey, slot, after);
    } catch (error) {
      slot.release();
      throw error;
    }
  }

  private async stream(
    request: SseRequest,
    response: PlatformResponse,
    id: string,
    url: string,
    clientKey: string,
    slot: { release(): void },
    after = parseJobEventId(readLastEventId(request)),
  ): Promise<undefined> {
    this.jobs.stats.resumed++;
    this.streamer.open(
      request,
      response,
      clientKey,
      slot,
      {
        kind: 'attach',
        attach: (c) => {
          if (!this.jobs.attach(id, c, after)) this.jobs.follow(id, c, after);
        },
      },
      { 'Content-Location': url },
    );
    return undefined;
  }

  private async cancel(
    request: SseRequest,
    response: PlatformResponse,
    id: string,
  ): Promise<undefined> {
    const meta = await this.jobs.find(id, request);
    if (meta.state !== 'running') {
      this.platforms.platform.send(response, 204, {}, '');
      return undefined;
    }
    if (!(await this.jobs.cancel(id))) {
      // It ended meanwhile (done, or failed): nothing is left to cancel.
      this.platforms.platform.send(response, 204, {}, '');
      return undefined;
    }
    this.platforms.platform.send(
      response,
      202,
      { 'Content-Type': 'application/json' },
      JSON.stringify({ status: 'cancelling' }),
    );
    return undefined;
  }
}

/** The job's URL: the start URL (or, resuming, the resume URL itself) without its query. */
function resumeUrl(requestUrl: string, id: string, isResume = false): string {
  const path = requestUrl.split('?')[0].replace(/\/+$/, '');
  if (isResume) return path.slice(0, path.lastIndexOf('/') + 1) + id;
  return `${path}/${id}`;
}

/** The job a stored 303 of an @Idempotent() start points to. */
function jobIdOf(headers: Record<string, string>): string | undefined {
  const location = headers.location;
  if (!location) return undefined;
  const id = location.slice(location.lastIndexOf('/') + 1);
  return /^[A-Za-z0-9_-]{22}$/.test(id) ? id : undefined;
}
