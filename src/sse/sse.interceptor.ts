import {
  CallHandler,
  ExecutionContext,
  HttpException,
  HttpStatus,
  Injectable,
  InternalServerErrorException,
  NestInterceptor,
  OnModuleInit,
  Optional,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { PlatformResponse } from '../platform/http-platform';
import { firstValueFrom, from, isObservable, Observable } from 'rxjs';
import { SseEventError } from './sse-event';
import {
  SSE_ROUTE_METADATA,
  SseHandlerResult,
  SseRequest,
  SseRouteOptions,
} from './sse-route-options';
import { SseSource, SseStreamer } from './sse-streamer';

const NO_RESULT = Symbol('no result');

const REFUSALS = {
  'instance-full': 'This instance has no room for another event stream',
  'client-limit': 'Too many open event streams for this client',
  'shutting-down': 'This instance is shutting down',
  'resume-rate': 'This instance is taking resuming streams back at its sse.resumesPerSecond',
} as const;

/**
 * Attached by `@Sse`. Runs after guards: reserves a connection slot, lets the handler (and its
 * pipes) run, and only then opens the stream, so every rejection before that point is an
 * ordinary HTTP error. Emits `undefined` once the stream is open; the response is the stream's.
 */
@Injectable()
export class SseInterceptor implements NestInterceptor, OnModuleInit {
  // Only module-internal services here: Nest instantiates this interceptor in the module of each
  // controller that uses @Sse and resolves its dependencies there first, so a user-overridable
  // token injected here could differ from the one the rest of the module uses.
  constructor(
    private readonly reflector: Reflector,
    // Optional so that a controller without the module gets the error below, not Nest's
    // "can't resolve dependencies of the SseInterceptor (Reflector, ?)".
    @Optional() private readonly streamer: SseStreamer,
  ) {}

  onModuleInit(): void {
    if (!this.streamer) {
      throw new Error(
        '@Sse() routes need SseModule.forRoot() in this application (and, with isGlobal: ' +
          'false, imported by the module of each controller that uses @Sse()). Nest’s own @Sse ' +
          "from '@nestjs/common' is a different decorator.",
      );
    }
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const http = context.switchToHttp();
    const request = http.getRequest<SseRequest>();
    const response = http.getResponse<PlatformResponse>();
    const route =
      this.reflector.get<SseRouteOptions>(SSE_ROUTE_METADATA, context.getHandler()) ?? {};
    // Emits once, as soon as the stream is open (or refused), so nothing of Nest's per-request
    // chain outlives the handshake of a stream that may stay open for hours.
    return from(this.handle(request, response, route, next));
  }

  private async handle(
    request: SseRequest,
    response: PlatformResponse,
    route: SseRouteOptions,
    next: CallHandler,
  ): Promise<undefined> {
    const { clientKey, admission } = await this.streamer.admit(request);
    if (!admission.admitted) {
      const mode = this.streamer.rejectModeOf(route);
      this.streamer.refuse(response, admission.reason, mode, admission.retryAfterMs);
      if (mode === 'status') throw new HttpException(REFUSALS[admission.reason], admission.status);
      return undefined;
    }
    try {
      // Runs the pipes and the handler (and any interceptors declared after this one).
      const result = await firstValueFrom(next.handle(), { defaultValue: NO_RESULT });
      const source = await this.sourceOf(route, request, result);
      this.streamer.open(request, response, clientKey, admission.slot, source);
    } catch (error) {
      admission.slot.release();
      throw error;
    }
    return undefined;
  }

  private async sourceOf(
    route: SseRouteOptions,
    request: SseRequest,
    result: unknown,
  ): Promise<SseSource> {
    if (result === NO_RESULT)
      throw new InternalServerErrorException('@Sse handler produced no result');
    if (!(result instanceof SseHandlerResult)) {
      throw new InternalServerErrorException(
        'A method interceptor declared above @Sse() replaced the stream handler result; declare ' +
          'it below @Sse() or at class level',
      );
    }
    if (route.topic !== undefined) {
      if (isObservable(result.value)) {
        throw new InternalServerErrorException('A topic @Sse route must not return an Observable');
      }
      try {
        return { kind: 'topics', topics: await this.streamer.resolveTopics(route.topic, request) };
      } catch (error) {
        // Topics are usually built from route params: bad ones are the client's input.
        if (error instanceof SseEventError) {
          throw new HttpException(error.message, HttpStatus.BAD_REQUEST);
        }
        throw error;
      }
    }
    if (isObservable(result.value)) return { kind: 'observable', events: result.value };
    throw new InternalServerErrorException(
      'An @Sse route without a topic must return an Observable',
    );
  }
}
