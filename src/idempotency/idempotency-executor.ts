import { HttpException, Injectable, OnModuleInit } from '@nestjs/common';
import { isUtf8 } from 'node:buffer';
import { randomUUID } from 'node:crypto';
import { HttpPlatformHost } from '../platform/http-platform.host';
import type { HttpPlatform, OutgoingResponse, PlatformResponse } from '../platform/http-platform';
import { headerLines, parseIdempotencyKey } from './idempotency-key';
import { IdempotencyProblem } from './idempotency-problem';
import { IdempotentReplay } from './idempotency-replay';
import { AcquireResult, StoredResponse } from './idempotency-store';
import { IdempotencyService } from './idempotency.service';
import { idempotentEffects, IdempotentEffects } from './idempotent-effects';
import { LeaseRenewer } from './lease-renewer';
import type { IdempotentRequest } from './idempotent.options';
import { IdempotentRoutes, Route, storedHeaders } from './idempotent-routes';

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
const NOTHING_THROWN = Symbol('nothing thrown');
/**
 * Set on the request while its `@Idempotent()` execution runs. A route whose response is not a
 * single body (a job stream) calls it to complete the key's record at once with `stored` (for a
 * job: where to attach); the response it then writes is not recorded.
 */
export const SETTLE_IDEMPOTENT = Symbol('nestjs-durable-sse:settle-idempotent');
export type SettleIdempotent = (stored: StoredResponse) => Promise<void>;

interface Execution {
  recordKey: string;
  owner: string;
  route: Route;
  /** What outbox transactions of the request record with their result. */
  effects: Omit<IdempotentEffects, 'transactions'>;
}

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
  private readonly renewer: LeaseRenewer;

  constructor(
    private readonly service: IdempotencyService,
    private readonly platforms: HttpPlatformHost,
    private readonly routes: IdempotentRoutes,
  ) {
    this.renewer = new LeaseRenewer(
      (recordKey, owner, leaseMs) => this.service.store.extend(recordKey, owner, leaseMs),
      (recordKey) =>
        this.service.logger.report(
          'idempotency.lease-lost',
          `Lost the idempotency lease of ${recordKey}: another request may run`,
        ),
    );
  }

  /** Called by `SseModule.configure()`, before Nest builds this application's routes. */
  prepareRoutes(): void {
    this.routes.prepare();
  }

  onModuleInit(): void {
    if (this.routes.handlers().size > 0) this.service.assertUsable();
  }

  /**
   * Runs `call` (the user's handler, for an HTTP `request`) idempotently when the method is
   * unsafe and the route `@Idempotent()`; otherwise just runs it.
   */
  run(
    http: { request: IdempotentRequest; response: PlatformResponse },
    instance: object,
    handler: object,
    call: () => unknown,
  ): unknown {
    if (SAFE_METHODS.has(http.request.method)) return call();
    const route = this.routes.of(handler, instance.constructor);
    if (!route) return call();
    return this.runRoute(route, http.request, http.response, call);
  }

  private async runRoute(
    route: Route,
    request: IdempotentRequest,
    response: PlatformResponse,
    call: () => unknown,
  ): Promise<unknown> {
    const plan = await this.begin(route, request);
    if (plan.kind === 'bypass') return call();
    if (plan.kind === 'replay') throw IdempotentReplay.of(plan.stored);
    return this.execute(plan.execution, request, response, call);
  }

  private async begin(
    route: Route,
    request: IdempotentRequest,
  ): Promise<
    | { kind: 'bypass' }
    | { kind: 'replay'; stored: StoredResponse }
    | { kind: 'execute'; execution: Execution }
  > {
    const { idempotency } = this.service.options;
    const parsed = parseIdempotencyKey(
      headerLines(this.platform.rawRequest(request), idempotency.header.toLowerCase()),
      idempotency.keyMaxLength,
    );
    if (!parsed.ok) {
      if (parsed.reason === 'missing') {
        if (!route.required) return { kind: 'bypass' };
        throw new IdempotencyProblem(
          'key-required',
          `This operation requires an ${idempotency.header} header.`,
        );
      }
      throw new IdempotencyProblem(
        'key-invalid',
        `${idempotency.header} must be 1 to ${idempotency.keyMaxLength} printable ASCII characters, ` +
          'as a bare token or a quoted string.',
      );
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
      return this.storeFailed(error, route);
    }
    switch (acquired.state) {
      case 'acquired':
        this.service.count('first', route.name);
        return {
          kind: 'execute',
          execution: {
            recordKey,
            owner,
            route,
            effects: { scope, key: parsed.key, fingerprint, ttlMs: route.ttlMs },
          },
        };
      case 'mismatch':
        this.service.count('mismatch', route.name);
        throw new IdempotencyProblem(
          'key-reused',
          `This ${idempotency.header} was already used for a different request (method, URL or body).`,
        );
      case 'running':
        this.service.count('conflict', route.name);
        throw new IdempotencyProblem(
          'in-progress',
          `A request with this ${idempotency.header} is still being processed; retry later.`,
          Math.max(
            idempotency.retryAfterSeconds,
            Math.ceil(Math.min(acquired.retryAfterMs, 1000) / 1000),
          ),
        );
      case 'done':
        this.service.count('replay', route.name);
        return { kind: 'replay', stored: acquired.response };
    }
  }

  private storeFailed(error: unknown, route: Route): { kind: 'bypass' } {
    const { idempotency } = this.service.options;
    this.service.count('error', route.name);
    if (idempotency.failMode === 'open') {
      this.service.logger.report(
        'idempotency.bypass',
        `Idempotency store unavailable, running without idempotency: ${(error as Error).message}`,
      );
      this.service.count('bypass', route.name);
      return { kind: 'bypass' };
    }
    this.service.logger.report(
      'idempotency.store-unavailable',
      `Idempotency store unavailable: ${(error as Error).message}`,
    );
    throw new IdempotencyProblem(
      'store-unavailable',
      'Idempotency cannot be guaranteed right now; retry later with the same key.',
      idempotency.retryAfterSeconds,
    );
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
   * Runs the handler with the lease held, and stores the response as the platform sends it
   * (captured after every interceptor, serializer and exception filter), so what is stored is
   * exactly what is sent, and it is sent only once it is stored.
   */
  private async execute(
    execution: Execution,
    request: IdempotentRequest,
    response: PlatformResponse,
    call: () => unknown,
  ): Promise<unknown> {
    const { recordKey, owner, route } = execution;
    const stopRenewing = this.renewer.hold(recordKey, owner, route.leaseMs);
    let thrown: unknown = NOTHING_THROWN;
    let handlerDone = false;
    let closed = false;
    let sent = false;
    let settled = false;
    (request as Record<symbol, SettleIdempotent>)[SETTLE_IDEMPOTENT] = async (stored) => {
      settled = true;
      stopRenewing();
      await this.complete(execution, stored);
    };
    // The client left and the handler is done, with no response written (Nest writes none to a
    // client that is gone in some cases): stop renewing, and the lease simply expires. Checked
    // when either of the two happens, whichever is last.
    const stopIfAbandoned = () => {
      if (closed && handlerDone && !sent) stopRenewing();
    };
    this.platform.capture(request, response, {
      sending: (outgoing) => {
        sent = true;
        if (settled) return Promise.resolve();
        stopRenewing();
        return (
          this.record(execution, outgoing, thrown)
            // A throwing storeIf, say: the response still goes out; the key expires with its lease.
            .catch((error: Error) =>
              this.service.logger.report(
                'idempotency.record-failed',
                `Could not record the response of ${recordKey}: ${error.message}`,
              ),
            )
        );
      },
      closed: (written) => {
        closed = true;
        if (settled) return;
        if (written) {
          // A response went out around the platform's reply path (a raw write, say).
          sent = true;
          stopRenewing();
          this.warnOnce(
            route,
            'its response was written around the platform reply, so it cannot be stored; the ' +
              'key was released',
          );
          void this.release(execution);
          return;
        }
        stopIfAbandoned();
      },
    });

    try {
      return await idempotentEffects.run({ ...execution.effects, transactions: 0 }, call);
    } catch (error) {
      thrown = error;
      throw error;
    } finally {
      handlerDone = true;
      stopIfAbandoned();
    }
  }

  private get platform(): HttpPlatform {
    return this.platforms.platform;
  }

  /** Stores the response being sent, or releases the key when it must not be replayed. */
  private async record(
    execution: Execution,
    outgoing: OutgoingResponse,
    thrown: unknown,
  ): Promise<void> {
    const { route } = execution;
    // Crashed (not an HTTP error the handler chose): nothing known happened, so a retry runs.
    if (thrown !== NOTHING_THROWN && !(thrown instanceof HttpException))
      return this.release(execution);
    const { status, body } = outgoing;
    const error = thrown === NOTHING_THROWN ? undefined : thrown;
    if (!route.storeIf(status, error)) return this.release(execution);
    if (body === undefined) {
      this.warnOnce(
        route,
        `its response was ${outgoing.reason ?? 'not a single body'}, so it cannot be stored; ` +
          'the key was released',
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
      headers: storedHeaders(outgoing, route),
      kind: text === undefined ? 'base64' : 'utf8',
      body: text ?? body.toString('base64'),
    });
  }

  private async complete(execution: Execution, stored: StoredResponse): Promise<void> {
    const { recordKey, owner, route } = execution;
    try {
      const done = await this.service.store.complete(recordKey, owner, stored, route.ttlMs);
      if (!done)
        this.service.logger.report(
          'idempotency.lease-expired',
          `Could not store the response of ${recordKey}: its lease had expired`,
        );
    } catch (error) {
      // The response still goes out; a retry after the lease may run the handler again.
      this.service.logger.report(
        'idempotency.record-failed',
        `Could not store the response of ${recordKey}: ${(error as Error).message}`,
      );
    }
  }

  private async release({ recordKey, owner }: Execution): Promise<void> {
    try {
      await this.service.store.release(recordKey, owner);
    } catch (error) {
      this.service.logger.report(
        'idempotency.release-failed',
        `Could not release ${recordKey} (it expires with its lease): ${(error as Error).message}`,
      );
    }
  }

  private warnOnce(route: Route, message: string): void {
    const key = `${route.name}\n${message}`;
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.service.logger.report('idempotency.route', `${route.name}: ${message}`, { key });
  }
}
