import { Injectable } from '@nestjs/common';
import { EXCEPTION_FILTERS_METADATA, GUARDS_METADATA } from '@nestjs/common/constants';
import { Reflector } from '@nestjs/core';
import { ControllerMethods } from '../common/controller-methods';
import { HttpPlatformHost } from '../platform/http-platform.host';
import type { OutgoingResponse } from '../platform/http-platform';
import { IdempotencyProblemFilter } from './idempotency-problem';
import { IdempotencyService } from './idempotency.service';
import { IDEMPOTENT_METADATA, IdempotentOptions } from './idempotent.options';

/** Response headers replayed by default (with `Content-Type`); `Set-Cookie` and hop-by-hop headers never are. */
const DEFAULT_STORED_HEADERS = ['location', 'content-location', 'etag', 'last-modified'];
const NEVER_STORED = new Set([
  'set-cookie',
  'connection',
  'transfer-encoding',
  'content-length',
  'date',
]);
/** Default `storeIf`: a 5xx (or a crash) means nothing happened, so the key is released. */
const storeBelow500 = (status: number) => status < 500;
/** Marks the handlers `@Idempotent()` wrapped (a property of the wrapper function itself). */
const IDEMPOTENT_HANDLER = Symbol('nestjs-durable-sse:idempotent-handler');

export function markIdempotentHandler(handler: object): void {
  Object.defineProperty(handler, IDEMPOTENT_HANDLER, { value: true });
}

function isIdempotentHandler(value: unknown): value is object {
  return typeof value === 'function' && IDEMPOTENT_HANDLER in value;
}

/** What a route's metadata resolves to; computed once per handler and class, not per request. */
export interface Route {
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

/**
 * The `@Idempotent()` routes of this application: found once among its controllers, readied
 * before Nest builds them, and each resolved once (per handler and controller class) from its
 * metadata and the module's options.
 */
@Injectable()
export class IdempotentRoutes {
  /** Per handler, then per controller class: a base-class handler may serve several classes. */
  private readonly routes = new WeakMap<object, Map<object, Route | null>>();
  private found?: Set<object>;

  constructor(
    private readonly reflector: Reflector,
    private readonly service: IdempotencyService,
    private readonly platforms: HttpPlatformHost,
    private readonly methods: ControllerMethods,
  ) {}

  /**
   * Called by `SseModule.configure()`, before Nest builds this application's routes: finds the
   * `@Idempotent()` handlers of its controllers and readies them. Nest checks a route's own
   * exception filters last-declared first; the filter that writes replays and problems must come
   * first, or a filter declared above `@Idempotent()` (one for `HttpException`, or a catch-all)
   * would answer them instead.
   */
  prepare(): void {
    const handlers = this.handlers();
    for (const handler of handlers) {
      const filters: unknown[] | undefined = Reflect.getMetadata(
        EXCEPTION_FILTERS_METADATA,
        handler,
      );
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
    if (handlers.size > 0 && this.platforms.available) this.platforms.platform.enableCapture();
  }

  /** The `@Idempotent()` handlers of this application's controllers (found once). */
  handlers(): Set<object> {
    this.found ??= new Set(this.methods.find(isIdempotentHandler).map(({ method }) => method));
    return this.found;
  }

  /** The route of `handler` on controller class `type`, when it is `@Idempotent()`. */
  of(handler: object, type: object): Route | undefined {
    let byType = this.routes.get(handler);
    if (!byType) this.routes.set(handler, (byType = new Map()));
    let route = byType.get(type);
    if (route === undefined) {
      const options =
        (Reflect.getMetadata(IDEMPOTENT_METADATA, handler) as IdempotentOptions | undefined) ??
        (Reflect.getMetadata(IDEMPOTENT_METADATA, type) as IdempotentOptions | undefined);
      route = options ? this.resolve(handler, type, options) : null;
      byType.set(type, route);
    }
    return route ?? undefined;
  }

  private resolve(handler: object, type: object, options: IdempotentOptions): Route {
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
}

/** The response headers of `outgoing` that `route` stores. */
export function storedHeaders(outgoing: OutgoingResponse, route: Route): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const name of route.storedHeaders) {
    const value = outgoing.header(name);
    if (value !== undefined) headers[name] = value;
  }
  return headers;
}
