import {
  applyDecorators,
  createParamDecorator,
  Delete,
  ExecutionContext,
  Get,
  RequestMethod,
  RequestMapping,
  Res,
  SetMetadata,
  UseInterceptors,
} from '@nestjs/common';
import { wrapWithHiddenArgument } from '../common/hidden-argument';
import { SseHandlerResult } from '../sse/sse-route-options';
import { SseJobInterceptor } from './sse-job.interceptor';
import { addCompanionRoute } from './job-routes';
import {
  JOB_ID_PARAM,
  jobAbortController,
  SSE_JOB_METADATA,
  SseJobRole,
  SseJobRouteOptions,
} from './sse-job.options';

export type { SseJobRouteOptions } from './sse-job.options';

/**
 * The job's `AbortSignal`: it fires on timeout (`jobs.timeoutMs`), cancel (`DELETE` on the resume
 * URL) and shutdown; its `reason` says which. The Observable is unsubscribed at the same moment.
 */
export const SseJobSignal = createParamDecorator(
  (_: unknown, context: ExecutionContext): AbortSignal =>
    jobAbortController(context.switchToHttp().getRequest()).signal,
);

/**
 * Declares a resumable job stream: the request (POST by default) starts the work the handler's
 * `Observable` describes, detached from the connection, and streams its events; every event is
 * kept in a per-job log in Redis. The response names the resume URL (`<path>/<job id>`) in
 * `Content-Location`: a `GET` there with `Last-Event-ID`, on any instance, replays the rest and
 * follows the job to its end (`event: done` or `event: error`); a `DELETE` there cancels it.
 * Only the principal that started a job can resume or cancel it. See docs/jobs.md.
 *
 * ```ts
 * @SseJob('generate')
 * generate(@Body() body: Prompt, @SseJobSignal() signal: AbortSignal) {
 *   return this.model.tokens(body.prompt, signal).pipe(map((token) => ({ data: token })));
 * }
 * ```
 *
 * Guards on the class, or on the method below `@SseJob()`, also guard resume and cancel.
 */
export function SseJob(path = '', options: SseJobRouteOptions = {}): MethodDecorator {
  return (target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
    if (typeof descriptor.value !== 'function') {
      throw new TypeError(`@SseJob() can only decorate methods (${String(key)})`);
    }
    const method = options.method ?? 'POST';
    // The response as a hidden argument: Nest then leaves the response to the route (the
    // stream), and the boxed result keeps Nest from flattening a returned Observable.
    wrapWithHiddenArgument(target, key, descriptor, Res(), (_response, call) =>
      SseHandlerResult.of(call),
    );
    applyDecorators(
      RequestMapping({ path, method: RequestMethod[method] }),
      SetMetadata(SSE_JOB_METADATA, 'start' satisfies SseJobRole),
      UseInterceptors(SseJobInterceptor),
    )(target, key, descriptor);

    const jobPath = `${path.replace(/\/+$/, '')}/:${JOB_ID_PARAM}`.replace(/^\/?/, '');
    addCompanionRoute(target, key, 'resume', Get(jobPath), SSE_JOB_METADATA, SseJobInterceptor);
    addCompanionRoute(target, key, 'cancel', Delete(jobPath), SSE_JOB_METADATA, SseJobInterceptor);
    return descriptor;
  };
}
