import {
  BadRequestException,
  CallHandler,
  ExecutionContext,
  Injectable,
  InternalServerErrorException,
  NestInterceptor,
  ServiceUnavailableException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { firstValueFrom, from, isObservable, Observable, tap } from 'rxjs';
import { SseLogger } from '../../observability/sse-logger';
import type { PlatformResponse } from '../../platform/http-platform';
import { HttpPlatformHost } from '../../platform/http-platform.host';
import { readLastEventId, SseHandlerResult, SseRequest } from '../../sse/sse-route-options';
import { SseStreamer } from '../../sse/sse-streamer';
import { AI_SDK_JOB_FORMAT } from '../job-format';
import type { SseJobErrorReason } from '../job-problem';
import {
  CHAT_ID_PARAM,
  jobAbortController,
  SSE_JOB_METADATA,
  SseJobRole,
} from '../sse-job.options';
import { SseJobs } from '../sse-jobs';
import { JobRefusals, parseJobEventId } from '../job-refusals';
import { ChatMessageAssembly } from './chat-message';
import { SseChatTurn } from './chat-turn';

const NO_RESULT = Symbol('no result');

const MAX_CHAT_ID_LENGTH = 256;

/**
 * Attached by `@SseChat()` to its three routes: starts a chat's turn as a job in the AI SDK's
 * framing (superseding the chat's running one), resumes the running turn, stops it. Everything
 * before a stream opens is an ordinary HTTP response; the AI SDK's client reads a non-2xx
 * answer's body as the error.
 */
@Injectable()
export class SseChatInterceptor implements NestInterceptor {
  constructor(
    private readonly reflector: Reflector,
    private readonly streamer: SseStreamer,
    private readonly jobs: SseJobs,
    private readonly platforms: HttpPlatformHost,
    private readonly logger: SseLogger,
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
    if (role === 'chat-resume') return from(this.resume(request, response));
    if (role === 'chat-stop') return from(this.stop(request, response));
    return from(this.start(request, response, next));
  }

  private async start(
    request: SseRequest,
    response: PlatformResponse,
    next: CallHandler,
  ): Promise<undefined> {
    const chatId = checkChatId((request.body as { id?: unknown } | undefined)?.id, 'body');
    const { clientKey, slot } = await this.refusals.admitStream(request, response);
    const job = this.jobs.admit(clientKey);
    if (!job.admitted) {
      slot.release();
      return this.refusals.refuse(response, job.status, job.reason);
    }
    try {
      const result = await firstValueFrom(next.handle(), { defaultValue: NO_RESULT });
      const turn =
        result instanceof SseHandlerResult && result.value instanceof SseChatTurn
          ? result.value
          : new SseChatTurn(result instanceof SseHandlerResult ? result.value : undefined);
      let chunks = toObservable(turn.chunks);
      if (!chunks || result === NO_RESULT || !(result instanceof SseHandlerResult)) {
        throw new InternalServerErrorException(
          result instanceof SseHandlerResult || result === NO_RESULT
            ? 'An @SseChat() handler must return UI message chunks: an Observable, an async iterable or a ReadableStream (result.toUIMessageStream()), or sseChatTurn(chunks, options)'
            : 'A method interceptor declared above @SseChat() replaced its result; declare it below or at class level',
        );
      }
      const { onFinish } = turn.options;
      const assembly = onFinish ? new ChatMessageAssembly() : undefined;
      if (assembly) chunks = chunks.pipe(tap((chunk) => assembly.push(chunk)));
      const onEnd = assembly
        ? (end: 'done' | 'error', reason?: SseJobErrorReason) =>
            assembly
              .finish()
              .then((message) =>
                onFinish!({
                  chatId,
                  message,
                  reason: end === 'done' ? 'done' : reason!,
                  isAborted: end !== 'done',
                }),
              )
              .catch((error: Error) =>
                this.logger.report(
                  'job.finish-failed',
                  `Chat ${chatId}: onFinish failed: ${error?.message ?? error}`,
                  { stack: error?.stack },
                ),
              )
        : undefined;
      const owner = await this.jobs.ownerOf(request);
      const abort = jobAbortController(request as Record<symbol, unknown>);
      const id = await this.jobs.start(owner, clientKey, job, chunks, abort, {
        format: AI_SDK_JOB_FORMAT,
        onEnd,
      });
      const replaced = await this.jobs.chatTurns
        .replace(owner, chatId, id, this.jobs.recordTtlMs)
        .catch((error: Error) => {
          // The turn runs and streams; only resume and stop by chat id cannot find it.
          this.logger.report(
            'job.log-failed',
            `Chat ${chatId}: turn not recorded: ${error.message}`,
          );
          return null;
        });
      // A newer turn supersedes the running one (a regenerate, a message sent after a reload).
      if (replaced && replaced !== id) await this.jobs.cancel(replaced).catch(() => false);
      this.open(request, response, clientKey, slot, id, 0);
      return undefined;
    } catch (error) {
      job.release();
      slot.release();
      if (error instanceof ServiceUnavailableException) this.refusals.retryAfter(response);
      throw error;
    }
  }

  private async resume(request: SseRequest, response: PlatformResponse): Promise<undefined> {
    const id = await this.currentTurn(request);
    const after = parseJobEventId(readLastEventId(request));
    if (!id) return this.noContent(response);
    // Ended: the client loads the finished message from the app (onFinish stored it), as the AI
    // SDK's resumable chats do; a client with an id it has not seen the end of gets the rest.
    const meta = await this.jobs.find(id, request).catch(() => undefined);
    if (!meta) return this.noContent(response);
    if (meta.state !== 'running' && (after === 0 || after >= (await this.jobs.lastEventOf(id))))
      return this.noContent(response);
    const { clientKey, slot } = await this.refusals.admitStream(request, response);
    try {
      this.jobs.stats.resumed++;
      this.open(request, response, clientKey, slot, id, after);
    } catch (error) {
      slot.release();
      throw error;
    }
    return undefined;
  }

  private async stop(request: SseRequest, response: PlatformResponse): Promise<undefined> {
    const id = await this.currentTurn(request);
    const meta = id ? await this.jobs.find(id, request).catch(() => undefined) : undefined;
    if (!id || meta?.state !== 'running' || !(await this.jobs.cancel(id)))
      return this.noContent(response);
    this.platforms.platform.send(
      response,
      202,
      { 'Content-Type': 'application/json' },
      JSON.stringify({ status: 'stopping' }),
    );
    return undefined;
  }

  /** The job of the chat in the URL, for the principal of `request`. */
  private async currentTurn(request: SseRequest): Promise<string | null> {
    const chatId = checkChatId(request.params?.[CHAT_ID_PARAM], 'path');
    const owner = await this.jobs.ownerOf(request);
    try {
      return await this.jobs.chatTurns.current(owner, chatId);
    } catch (error) {
      throw new ServiceUnavailableException(
        `The chat's turn could not be looked up: ${(error as Error).message}`,
      );
    }
  }

  private open(
    request: SseRequest,
    response: PlatformResponse,
    clientKey: string,
    slot: { release(): void },
    id: string,
    after: number,
  ): void {
    this.streamer.open(
      request,
      response,
      clientKey,
      slot,
      {
        kind: 'attach',
        attach: (c) => {
          if (!this.jobs.attach(id, c, after)) this.jobs.follow(id, c, after, AI_SDK_JOB_FORMAT);
        },
      },
      AI_SDK_JOB_FORMAT.headers,
    );
  }

  private noContent(response: PlatformResponse): undefined {
    this.platforms.platform.send(response, 204, {}, '');
    return undefined;
  }
}

/** Observable, async iterable (a Node ReadableStream is one) or web ReadableStream → Observable. */
function toObservable(chunks: unknown): Observable<unknown> | undefined {
  if (isObservable(chunks)) return chunks;
  if (chunks && typeof (chunks as AsyncIterable<unknown>)[Symbol.asyncIterator] === 'function')
    return from(chunks as AsyncIterable<unknown>);
  if (chunks && typeof (chunks as ReadableStream<unknown>).getReader === 'function')
    return from(chunks as unknown as Parameters<typeof from>[0]);
  return undefined;
}

function checkChatId(value: unknown, where: 'body' | 'path'): string {
  if (typeof value === 'string' && value.length > 0 && value.length <= MAX_CHAT_ID_LENGTH)
    return value;
  throw new BadRequestException(
    where === 'body'
      ? `The chat's id is the request body's \`id\` (a string of 1 to ${MAX_CHAT_ID_LENGTH} characters, as the AI SDK's DefaultChatTransport sends it)`
      : `The chat id in the path must be 1 to ${MAX_CHAT_ID_LENGTH} characters`,
  );
}
