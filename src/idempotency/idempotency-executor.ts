import { HttpException, Injectable, OnModuleInit } from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA, GUARDS_METADATA } from '@nestjs/common/constants';
import { HttpAdapterHost, ModulesContainer, Reflector } from '@nestjs/core';
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { headerLines, parseIdempotencyKey } from './idempotency-key';
import { IdempotencyProblem, IdempotencyProblemFilter } from './idempotency-problem';
import { IdempotentReplay } from './idempotency-replay';
import { AcquireResult, StoredResponse } from './idempotency-store';
import { IdempotencyService } from './idempotency.service';
import { LeaseRenewer } from './lease-renewer';
import { IDEMPOTENT_METADATA, IdempotentOptions } from './idempotent.options';

export type IdempotentRequest = IncomingMessage & Record<string | symbol, any>;

/** Response headers replayed by default (with `Content-Type`); `Set-Cookie` and hop-by-hop headers never are. */
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
const NOTHING_THROWN = Symbol('nothing thrown');

/** The executor of each Nest application, by its Express app (`req.app`). */
const executors = new WeakMap<object, IdempotencyExecutor>();
/** Every handler `@Idempotent()` wrapped, in any application; see {@link moveIdempotencyFiltersLast}. */
const idempotentHandlers = new Set<object>();

export function registerIdempotentHandler(handler: object): void {
  idempotentHandlers.add(handler);
}

/**
 * Nest checks a route's own exception filters last-declared first. The filter that writes
 * replays and problems must come first, or a filter declared above `@Idempotent()` (one for
 * `HttpException`, or a catch-all) would answer them instead. Runs before Nest builds the routes.
 */
export function moveIdempotencyFiltersLast(): void {
  for (const handler of idempotentHandlers) {
    const filters: unknown[] | undefined = Reflect.getMetadata(EXCEPTION_FILTERS_METADATA, handler);
    const at = filters?.indexOf(IdempotencyProblemFilter) ?? -1;
    if (!filters || at < 0 || at === filters.length - 1) continue;
    Reflect.defineMetadata(
      EXCEPTION_FILTERS_METADATA,
      [
        ...filters.filter((filter) => filter !== IdempotencyProblemFilter),
        IdempotencyProblemFilter,
      ],
      handler,
    );
  }
}

/** What a route's metadata resolves to; computed once per handler and class, not per request. */
interface Route {
  name: string;
  options: IdempotentOptions;
  required: boolean;
  /** The lease taken at acquire, renewed while the request runs. */
  leaseMs: number;
  ttlMs: number;
  storeIf: (status: number, error?: unknown) => boolean;
  /** Lower-cased response headers to store (Content-Type, defaults, module, route; minus the never-stored). */
  storedHeaders: string[];
  guarded: boolean;
}

interface Execution {
  recordKey: string;
  owner: string;
  route: Route;
}

type EndArgs = [chunk?: unknown, encoding?: unknown, callback?: unknown];

/**
 * Behind `@Idempotent()`. It runs inside the route handler (after guards, interceptors and
 * pipes) rather than as an interceptor: any interceptor moves a request onto Nest's RxJS path,
 * which costs more per request than all of idempotency's own work (bench/README.md). A first
 * request with a key runs the handler and stores the response that goes out, as it is written
 * (after every interceptor, serializer and exception filter), before it is sent; a repeat is
 * answered with those bytes without running the handler. See docs/idempotency.md.
 */
@Injectable()
export class IdempotencyExecutor implements OnModuleInit {
  private readonly warned = new Set<string>();
  /** Per handler, then per controller class: a base-class handler may serve several classes. */
  private readonly routes = new WeakMap<object, Map<object, Route | null>>();
  private readonly renewer: LeaseRenewer;

  constructor(
    private readonly reflector: Reflector,
    private readonly service: IdempotencyService,
    private readonly adapterHost: HttpAdapterHost,
    private readonly modules: ModulesContainer,
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
    if (this.hasIdempotentRoutes()) this.service.assertUsable();
    const app: unknown = this.adapterHost.httpAdapter?.getInstance?.();
    if (typeof app === 'function') executors.set(app, this);
  }

  private hasIdempotentRoutes(): boolean {
    for (const module of this.modules.values()) {
      for (const { metatype } of module.controllers.values()) {
        for (let proto = metatype?.prototype; proto && proto !== Object.prototype;) {
          for (const name of Object.getOwnPropertyNames(proto)) {
            const method = Object.getOwnPropertyDescriptor(proto, name)?.value;
            if (idempotentHandlers.has(method)) return true;
          }
          proto = Object.getPrototypeOf(proto);
        }
      }
    }
    return false;
  }

  /** The executor of the application serving `request`, if `SseModule` is part of it. */
  static of(request: IdempotentRequest): IdempotencyExecutor | undefined {
    const app: unknown = request.app;
    return typeof app === 'function' ? executors.get(app) : undefined;
  }

  /**
   * Runs `call` (the user's handler, for an HTTP `request`) idempotently when the method is
   * unsafe and the route `@Idempotent()`; otherwise just runs it.
   */
  run(request: IdempotentRequest, instance: object, handler: object, call: () => unknown): unknown {
    if (SAFE_METHODS.has(request.method!)) return call();
    const route = this.routeOf(handler, instance.constructor);
    if (!route) return call();
    return this.runRoute(route, request, call);
  }

  private async runRoute(
    route: Route,
    request: IdempotentRequest,
    call: () => unknown,
  ): Promise<unknown> {
    const response = request.res as ServerResponse;
    const plan = await this.begin(route, request, response);
    if (plan.kind === 'bypass') return call();
    if (plan.kind === 'replay') throw IdempotentReplay.of(plan.stored);
    return this.execute(plan.execution, response, call);
  }

  private routeOf(handler: object, type: object): Route | undefined {
    let byType = this.routes.get(handler);
    if (!byType) this.routes.set(handler, (byType = new Map()));
    let route = byType.get(type);
    if (route === undefined) {
      const options =
        (Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotentOptions | undefined) ??
        (Reflect.getMetadata(IDEMPOTENT_METADATA, type) as IdempotentOptions | undefined);
      route = options ? this.resolveRoute(handler, type, options) : null;
      byType.set(type, route);
    }
    return route ?? undefined;
  }

  private resolveRoute(handler: object, type: object, options: IdempotentOptions): Route {
    const { idempotency } = this.service.options;
    const names = new Set(
      [
        'content-type',
        ...DEFAULT_STORED_HEADERS,
        ...idempotency.storedHeaders,
        ...(options.storedHeaders ?? []),
      ].map((h) => h.toLowerCase()),
    );
    const guards = this.reflector.getAllAndMerge<unknown[]>(GUARDS_METADATA, [
      handler as () => void,
      type as new () => unknown,
    ]);
    return {
      name: `${(type as { name?: string }).name}.${(handler as { name?: string }).name}`,
      options,
      required: options.required ?? idempotency.required,
      leaseMs: 1000 * (options.inFlightTtlSeconds ?? idempotency.inFlightTtlSeconds),
      ttlMs: 1000 * (options.ttlSeconds ?? idempotency.ttlSeconds),
      storeIf: options.storeIf ?? storeBelow500,
      storedHeaders: [...names].filter((name) => !NEVER_STORED.has(name)),
      guarded: guards.length > 0,
    };
  }

  private async begin(
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
      headerLines(request, idempotency.header.toLowerCase()),
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

    const scope = await this.scopeOf(route, request);
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
        return { kind: 'execute', execution: { recordKey, owner, route } };
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

  private async scopeOf(route: Route, request: IdempotentRequest): Promise<string> {
    const option = route.options.scope;
    if (option === false) return '';
    const scope = await (option ? option(request) : this.service.scopes.resolve(request));
    if (scope === undefined && route.guarded) {
      this.warnOnce(
        route,
        'it is guarded but its idempotency keys have no scope (no req.user.id/sub): clients ' +
          'share one key space. Set @Idempotent({ scope }) or scope: false to silence this.',
      );
    }
    return scope ?? '';
  }

  /**
   * Runs the handler with the lease held, and stores the response when it is ended: the
   * response's `end` is wrapped for this request, so what is stored is exactly what is sent,
   * and it is sent only once it is stored.
   */
  private async execute(
    execution: Execution,
    response: ServerResponse,
    call: () => unknown,
  ): Promise<unknown> {
    const stopRenewing = this.renewer.hold(
      execution.recordKey,
      execution.owner,
      execution.route.leaseMs,
    );
    let thrown: unknown = NOTHING_THROWN;
    let handlerDone = false;
    let closed = false;
    let ended = false;
    const ownEnd = Object.prototype.hasOwnProperty.call(response, 'end');
    const end = response.end;
    // The client left and the handler is done, with no response written (Nest writes none to a
    // client that is gone in some cases): stop renewing, and the lease simply expires. Checked
    // when either of the two happens, whichever is last.
    const stopIfAbandoned = () => {
      if (closed && handlerDone && !ended) stopRenewing();
    };
    const onClose = () => {
      closed = true;
      stopIfAbandoned();
    };
    response.once('close', onClose);
    response.end = ((...args: EndArgs) => {
      if (ownEnd) response.end = end;
      else delete (response as Partial<ServerResponse>).end;
      ended = true;
      stopRenewing();
      response.removeListener('close', onClose);
      void this.record(execution, response, thrown, args)
        // A throwing storeIf, say: the response still goes out; the key expires with its lease.
        .catch((error: Error) =>
          this.service.logger.error(
            `Could not record the response of ${execution.recordKey}: ${error.message}`,
          ),
        )
        .finally(() => end.apply(response, args as Parameters<ServerResponse['end']>));
      return response;
    }) as ServerResponse['end'];

    try {
      return await call();
    } catch (error) {
      thrown = error;
      throw error;
    } finally {
      handlerDone = true;
      stopIfAbandoned();
    }
  }

  /** Stores the response being ended, or releases the key when it must not be replayed. */
  private async record(
    execution: Execution,
    response: ServerResponse,
    thrown: unknown,
    [chunk, encoding]: EndArgs,
  ): Promise<void> {
    const { route } = execution;
    // Crashed (not an HTTP error the handler chose): nothing known happened, so a retry runs.
    if (thrown !== NOTHING_THROWN && !(thrown instanceof HttpException))
      return this.release(execution);
    const status = response.statusCode;
    const error = thrown === NOTHING_THROWN ? undefined : thrown;
    if (!route.storeIf(status, error)) return this.release(execution);
    const body = bodyOf(chunk, encoding);
    if (response.headersSent || body === undefined) {
      this.warnOnce(
        route,
        'its response was written in parts (streamed, or headers sent first), so it cannot be ' +
          'stored; the key was released',
      );
      return this.release(execution);
    }
    const { maxResponseBytes } = this.service.options.idempotency;
    if (Buffer.byteLength(body) > maxResponseBytes) {
      this.warnOnce(
        route,
        `a response exceeded idempotency.maxResponseBytes (${maxResponseBytes}); the key was released`,
      );
      return this.release(execution);
    }
    const text = typeof body === 'string' ? body : isUtf8(body) ? body.toString('utf8') : undefined;
    await this.complete(execution, {
      status,
      headers: storedHeaders(response, route),
      kind: text === undefined ? 'base64' : 'utf8',
      body: text ?? (body as Buffer).toString('base64'),
    });
  }

  private async complete(execution: Execution, stored: StoredResponse): Promise<void> {
    const { recordKey, owner, route } = execution;
    try {
      const done = await this.service.store.complete(recordKey, owner, stored, route.ttlMs);
      if (!done)
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

  private warnOnce(route: Route, message: string): void {
    const key = `${route.name}\n${message}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.service.logger.warn(`${route.name}: ${message}`);
  }
}

/** The body passed to `end()`, as a string or bytes; `undefined` if it is not one we can store. */
function bodyOf(chunk: unknown, encoding: unknown): string | Buffer | undefined {
  if (chunk === undefined || chunk === null || typeof chunk === 'function') return '';
  if (typeof chunk === 'string') {
    return typeof encoding !== 'string' || /^utf-?8$/i.test(encoding)
      ? chunk
      : Buffer.from(chunk, encoding as BufferEncoding);
  }
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
  return undefined;
}

function storedHeaders(response: ServerResponse, route: Route): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of route.storedHeaders) {
    const value = response.getHeader(name);
    if (value !== undefined)
      headers[name] = Array.isArray(value) ? value.join(', ') : String(value);
  }
  return headers;
}
