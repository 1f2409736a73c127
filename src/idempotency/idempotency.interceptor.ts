import {
  CallHandler,
  ExecutionContext,
  HttpException,
  Injectable,
  NestInterceptor,
  OnModuleInit,
  StreamableFile,
} from '@nestjs/common';
import {
  GUARDS_METADATA,
  RESPONSE_PASSTHROUGH_METADATA,
  ROUTE_ARGS_METADATA,
} from '@nestjs/common/constants';
import { RouteParamtypes } from '@nestjs/common/enums/route-paramtypes.enum';
import { Reflector } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { Observable, of, Subscription } from 'rxjs';
import { parseIdempotencyKey } from './idempotency-key';
import { IdempotencyProblem } from './idempotency-problem';
import { AcquireResult, StoredResponse } from './idempotency-store';
import { IdempotencyService } from './idempotency.service';
import { LeaseRenewer } from './lease-renewer';
import { HANDLER_ENTERED, IDEMPOTENT_METADATA, IdempotentOptions } from './idempotent.options';

type IdempotentRequest = IncomingMessage & Record<string | symbol, any>;

/** Response headers replayed by default; `Set-Cookie` and hop-by-hop headers never are. */
const DEFAULT_STORED_HEADERS = ['location', 'content-location', 'etag', 'last-modified'];
const NEVER_STORED = new Set([
  'set-cookie',
  'connection',
  'transfer-encoding',
  'content-length',
  'date',
]);
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** Default `storeIf`: a 5xx (or a crash) means nothing happened, so the key is released. */
const storeBelow500 = (status: number) => status < 500;

/** What a route's metadata resolves to; computed once per handler, not per request. */
interface Route {
  options: IdempotentOptions;
  required: boolean;
  /** The lease taken at acquire, renewed while the handler runs. */
  leaseMs: number;
  ttlMs: number;
  storeIf: (status: number, error?: unknown) => boolean;
  /** Lower-cased response headers to store (defaults + module + route, minus the never-stored). */
  storedHeaders: string[];
  guarded: boolean;
  /** `@Res()` / `@Next()` without passthrough: the handler writes the response, Nest does not. */
  writesOwnResponse: boolean;
}

interface Execution {
  recordKey: string;
  owner: string;
  route: Route;
  request: IdempotentRequest;
  response: ServerResponse;
  context: ExecutionContext;
}

/**
 * Behind `@Idempotent()`. A first request with a key runs the handler once and stores its
 * outcome before the response is sent; a repeat replays it without running the handler.
 * See docs/idempotency.md for the status codes.
 */
@Injectable()
export class IdempotencyInterceptor implements NestInterceptor, OnModuleInit {
  private readonly warned = new WeakSet<object>();
  /** Per controller class, then per handler: a base-class handler may serve several classes. */
  private readonly routes = new WeakMap<object, Map<object, Route | null>>();
  private readonly renewer: LeaseRenewer;

  constructor(
    private readonly reflector: Reflector,
    private readonly service: IdempotencyService,
  ) {
    this.renewer = new LeaseRenewer(
      (recordKey, owner, leaseMs) => this.service.store.extend(recordKey, owner, leaseMs),
      (recordKey) =>
        this.service.logger.warn(
          `Lost the idempotency lease of ${recordKey}: another request may run`,
        ),
    );
  }

  onModuleInit(): void {
    this.service.assertUsable();
  }

  intercept(context: ExecutionContext, next: CallHandler): Observable<unknown> {
    if (context.getType() !== 'http') return next.handle();
    const request = context.switchToHttp().getRequest<IdempotentRequest>();
    if (SAFE_METHODS.has(request.method ?? 'GET')) return next.handle();
    const route = this.routeOf(context);
    if (!route) return next.handle();
    const response = context.switchToHttp().getResponse<ServerResponse>();
    // Written out rather than from(promise).pipe(switchMap(…)): this runs on every idempotent
    // request, and the operator chain cost more than the rest of the interceptor's own work.
    return new Observable<unknown>((subscriber) => {
      let inner: Subscription | undefined;
      this.begin(context, route, request, response).then(
        (plan) => {
          if (subscriber.closed) {
            // The client is gone before the handler ran: free the key at once.
            if (plan.kind === 'execute') void this.release(plan.execution);
            return;
          }
          let source: Observable<unknown>;
          try {
            source =
              plan.kind === 'bypass'
                ? next.handle()
                : plan.kind === 'replay'
                  ? this.replay(plan.stored, response)
                  : this.execute(plan.execution, next);
          } catch (error) {
            subscriber.error(error);
            return;
          }
          inner = source.subscribe(subscriber);
        },
        (error) => subscriber.error(error),
      );
      return () => inner?.unsubscribe();
    });
  }

  private routeOf(context: ExecutionContext): Route | undefined {
    const type = context.getClass();
    const handler = context.getHandler();
    let byHandler = this.routes.get(type);
    if (!byHandler) this.routes.set(type, (byHandler = new Map()));
    let route = byHandler.get(handler);
    if (route === undefined) {
      const options = this.reflector.getAllAndOverride<IdempotentOptions | undefined>(
        IDEMPOTENT_METADATA,
        [handler, type],
      );
      route = options ? this.resolveRoute(context, options) : null;
      byHandler.set(handler, route);
    }
    return route ?? undefined;
  }

  private resolveRoute(context: ExecutionContext, options: IdempotentOptions): Route {
    const { idempotency } = this.service.options;
    const names = new Set(
      [
        ...DEFAULT_STORED_HEADERS,
        ...idempotency.storedHeaders,
        ...(options.storedHeaders ?? []),
      ].map((h) => h.toLowerCase()),
    );
    return {
      options,
      required: options.required ?? idempotency.required,
      leaseMs: 1000 * (options.inFlightTtlSeconds ?? idempotency.inFlightTtlSeconds),
      ttlMs: 1000 * (options.ttlSeconds ?? idempotency.ttlSeconds),
      storeIf: options.storeIf ?? storeBelow500,
      storedHeaders: [...names].filter((name) => !NEVER_STORED.has(name)),
      guarded: this.isGuarded(context),
      writesOwnResponse: this.writesOwnResponse(context),
    };
  }

  private async begin(
    context: ExecutionContext,
    route: Route,
    request: IdempotentRequest,
    response: ServerResponse,
  ): Promise<
    | { kind: 'bypass' }
    | { kind: 'replay'; stored: StoredResponse }
    | { kind: 'execute'; execution: Execution }
  > {
    const { idempotency } = this.service.options;
    const parsed = parseIdempotencyKey(
      request.headers[idempotency.header.toLowerCase()],
      idempotency.keyMaxLength,
    );
    if (!parsed.ok) {
      if (parsed.reason === 'missing') {
        if (!route.required) return { kind: 'bypass' };
        throw new IdempotencyProblem(
          'key-required',
          `This operation requires an ${idempotency.header} header.`,
        ).prepare(response);
      }
      throw new IdempotencyProblem(
        'key-invalid',
        `${idempotency.header} must be 1 to ${idempotency.keyMaxLength} printable ASCII characters, ` +
          'as a bare token or a quoted string.',
      ).prepare(response);
    }

    const scope = await this.scopeOf(context, route, request);
    const body = route.options.fingerprint
      ? route.options.fingerprint(request.body, request)
      : request.body;
    const fingerprint = await this.service.fingerprints.fingerprint({
      scope,
      method: request.method ?? '',
      url: request.originalUrl ?? request.url ?? '',
      body,
    });
    // Encoded parts: a key containing ':' or braces can neither forge another scope nor move the
    // record to another Redis Cluster slot (the braces are the hash tag).
    const recordKey = `idem:{${encodeURIComponent(scope)}:${encodeURIComponent(parsed.key)}}`;
    const owner = randomUUID();

    let acquired: AcquireResult;
    try {
      acquired = await this.service.store.acquire(recordKey, fingerprint, owner, route.leaseMs);
    } catch (error) {
      // The lock may have been taken before the reply was lost; it is owner-checked, so
      // releasing it is safe and spares a retry the wait for the lease.
      void this.service.store.release(recordKey, owner).catch(() => undefined);
      return this.storeFailed(error, response);
    }
    switch (acquired.state) {
      case 'acquired':
        this.service.count('first');
        return {
          kind: 'execute',
          execution: { recordKey, owner, route, request, response, context },
        };
      case 'mismatch':
        this.service.count('mismatch');
        throw new IdempotencyProblem(
          'key-reused',
          `This ${idempotency.header} was already used for a different request (method, URL or body).`,
        ).prepare(response);
      case 'running':
        this.service.count('conflict');
        throw new IdempotencyProblem(
          'in-progress',
          `A request with this ${idempotency.header} is still being processed; retry later.`,
        ).prepare(
          response,
          Math.max(
            idempotency.retryAfterSeconds,
            Math.ceil(Math.min(acquired.retryAfterMs, 1000) / 1000),
          ),
        );
      case 'done':
        this.service.count('replay');
        return { kind: 'replay', stored: acquired.response };
    }
  }

  private storeFailed(error: unknown, response: ServerResponse): { kind: 'bypass' } {
    const { idempotency } = this.service.options;
    this.service.count('error');
    if (idempotency.failMode === 'open') {
      this.service.logger.warn(
        `Idempotency store unavailable, running without idempotency: ${(error as Error).message}`,
      );
      this.service.count('bypass');
      return { kind: 'bypass' };
    }
    this.service.logger.error(`Idempotency store unavailable: ${(error as Error).message}`);
    throw new IdempotencyProblem(
      'store-unavailable',
      'Idempotency cannot be guaranteed right now; retry later with the same key.',
    ).prepare(response, idempotency.retryAfterSeconds);
  }

  private async scopeOf(
    context: ExecutionContext,
    route: Route,
    request: IdempotentRequest,
  ): Promise<string> {
    const option = route.options.scope;
    if (option === false) return '';
    const scope = await (option ? option(request) : this.service.scopes.resolve(request));
    if (scope === undefined && route.guarded && !this.warned.has(context.getHandler())) {
      this.warned.add(context.getHandler());
      this.service.logger.warn(
        `${context.getClass().name}.${context.getHandler().name} is guarded but its idempotency keys ` +
          'have no scope (no req.user.id/sub): clients share one key space. Set @Idempotent({ scope }) ' +
          'or scope: false to silence this.',
      );
    }
    return scope ?? '';
  }

  private isGuarded(context: ExecutionContext): boolean {
    const guards = this.reflector.getAllAndMerge<unknown[]>(GUARDS_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    return guards.length > 0;
  }

  private replay(stored: StoredResponse, response: ServerResponse): Observable<unknown> {
    for (const [name, value] of Object.entries(stored.headers)) response.setHeader(name, value);
    response.setHeader('Idempotent-Replayed', 'true');
    if (stored.kind === 'error') throw new HttpException(JSON.parse(stored.body), stored.status);
    return of(stored.body === '' ? undefined : JSON.parse(stored.body));
  }

  private execute(execution: Execution, next: CallHandler): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      const stopRenewing = this.renewer.hold(
        execution.recordKey,
        execution.owner,
        execution.route.leaseMs,
      );
      let result: { value: unknown } | undefined;
      const inner = next.handle().subscribe({
        next: (value) => (result = { value }),
        error: (error) => {
          stopRenewing();
          this.recordError(execution, error).finally(() => subscriber.error(error));
        },
        complete: () => {
          stopRenewing();
          this.recordResult(execution, result?.value).finally(() => {
            if (result) subscriber.next(result.value);
            subscriber.complete();
          });
        },
      });
      return () => inner.unsubscribe();
    });
  }

  private async recordResult(execution: Execution, value: unknown): Promise<void> {
    const { response, context, route } = execution;
    const status = response.statusCode;
    if (route.writesOwnResponse || value instanceof StreamableFile || value instanceof Readable) {
      this.warnOnce(
        context,
        'its response is streamed or written with @Res(), so it cannot be stored; the key was released',
      );
      return this.release(execution);
    }
    if (!route.storeIf(status)) return this.release(execution);
    const body = value === undefined ? '' : JSON.stringify(value);
    await this.complete(execution, {
      status,
      headers: this.storedHeaders(execution),
      kind: 'value',
      body,
    });
  }

  private async recordError(execution: Execution, error: unknown): Promise<void> {
    const { request, route } = execution;
    // Rejected before the handler ran (a validation pipe): nothing happened, nothing to remember.
    if (!request[HANDLER_ENTERED] || !(error instanceof HttpException))
      return this.release(execution);
    const status = error.getStatus();
    if (!route.storeIf(status, error)) return this.release(execution);
    const errorBody = error.getResponse();
    const body = JSON.stringify(errorBody);
    await this.complete(execution, {
      status,
      headers: this.storedHeaders(execution),
      kind: 'error',
      body,
    });
  }

  private async complete(execution: Execution, stored: StoredResponse): Promise<void> {
    const { recordKey, owner, route, context } = execution;
    const { idempotency } = this.service.options;
    if (Buffer.byteLength(stored.body) > idempotency.maxResponseBytes) {
      this.warnOnce(
        context,
        `a response exceeded idempotency.maxResponseBytes (${idempotency.maxResponseBytes}); the key was released`,
      );
      return this.release(execution);
    }
    try {
      const stored_ = await this.service.store.complete(recordKey, owner, stored, route.ttlMs);
      if (!stored_)
        this.service.logger.warn(
          `Could not store the response of ${recordKey}: its lease had expired`,
        );
    } catch (error) {
      // The response still goes out; a retry after the lease may run the handler again.
      this.service.logger.error(
        `Could not store the response of ${recordKey}: ${(error as Error).message}`,
      );
    }
  }

  private async release({ recordKey, owner }: Execution): Promise<void> {
    try {
      await this.service.store.release(recordKey, owner);
    } catch (error) {
      this.service.logger.error(
        `Could not release ${recordKey} (it expires with its lease): ${(error as Error).message}`,
      );
    }
  }

  private storedHeaders({ response, route }: Execution): Record<string, string> {
    const headers: Record<string, string> = {};
    for (const name of route.storedHeaders) {
      const value = response.getHeader(name);
      if (value !== undefined)
        headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
    }
    return headers;
  }

  /** `@Res()` / `@Next()` without `passthrough`: the handler writes the response, Nest does not. */
  private writesOwnResponse(context: ExecutionContext): boolean {
    const name = context.getHandler().name;
    if (Reflect.getMetadata(RESPONSE_PASSTHROUGH_METADATA, context.getClass(), name)) return false;
    const args: Record<string, unknown> =
      Reflect.getMetadata(ROUTE_ARGS_METADATA, context.getClass(), name) ?? {};
    return Object.keys(args).some((key) => {
      const type = Number(key.split(':')[0]);
      return type === RouteParamtypes.RESPONSE || type === RouteParamtypes.NEXT;
    });
  }

  private warnOnce(context: ExecutionContext, message: string): void {
    if (this.warned.has(context.getHandler())) return;
    this.warned.add(context.getHandler());
    this.service.logger.warn(`${context.getClass().name}.${context.getHandler().name}: ${message}`);
  }
}
